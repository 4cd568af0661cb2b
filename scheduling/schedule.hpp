#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "bg_jobs/core/timestamp.hpp"
#include "bg_jobs/scheduling/cron_schedule.hpp"

namespace bg_jobs {

/// When a scheduled job runs: every interval (counted from the end of the
/// previous run, as in the original bg_jobs) or on a cron schedule.
class schedule {
public:
  /// Every `d`, counted from the end of the previous run; `d` must be
  /// positive.
  static caf::expected<schedule> every(std::chrono::milliseconds d);

  /// A cron expression (see `cron_schedule`).
  static caf::expected<schedule> cron(std::string_view expr);

  static schedule from(cron_schedule c) { return schedule{std::move(c)}; }

  bool is_interval() const { return !cron_; }

  std::chrono::milliseconds interval() const { return interval_; }

  const std::optional<cron_schedule>& cron_spec() const { return cron_; }

  /// The run after a previous one that ended (intervals) or was due
  /// (cron) at `t`.
  std::optional<timestamp> next_after(timestamp t) const;

  /// `"every 500 ms"` or the cron expression (with ` in <zone>` for a
  /// zone given apart from it).
  std::string to_string() const;

private:
  explicit schedule(std::chrono::milliseconds d) : interval_(d) {}
  explicit schedule(cron_schedule c) : cron_(std::move(c)) {}

  std::chrono::milliseconds interval_{0};
  std::optional<cron_schedule> cron_;
};

/// The original bg_jobs builder vocabulary for cron-like schedules.
/// `new_schedule()` fires at second 0 of every minute. The first `on_*` or
/// `between_*` call on a field replaces its default; later calls add to it
/// (the original appended to the default, so `on_second(10)` also fired at
/// second 0). Ranges include both ends.
class schedule_builder {
public:
  /// An interval of whole milliseconds, seconds, ... weeks.
  static schedule_builder interval(std::chrono::milliseconds d);

  schedule_builder& every_second();
  schedule_builder& on_second(int s);
  schedule_builder& between_seconds(int from, int to);
  schedule_builder& on_minute(int m);
  schedule_builder& between_minutes(int from, int to);
  schedule_builder& on_hour(int h);
  schedule_builder& between_hours(int from, int to);
  schedule_builder& on_day_of_month(int d);
  schedule_builder& between_day_of_months(int from, int to);
  schedule_builder& on_month(int m);
  schedule_builder& between_months(int from, int to);
  /// 1 = Monday ... 7 = Sunday (0 is Sunday too).
  schedule_builder& on_day_of_week(int d);
  schedule_builder& between_day_of_weeks(int from, int to);

  schedule_builder& on_mondays() { return on_day_of_week(1); }
  schedule_builder& on_tuesdays() { return on_day_of_week(2); }
  schedule_builder& on_wednesdays() { return on_day_of_week(3); }
  schedule_builder& on_thursdays() { return on_day_of_week(4); }
  schedule_builder& on_fridays() { return on_day_of_week(5); }
  schedule_builder& on_saturdays() { return on_day_of_week(6); }
  schedule_builder& on_sundays() { return on_day_of_week(7); }
  schedule_builder& on_weekdays();
  schedule_builder& on_weekends();

  schedule_builder& on_januaries() { return on_month(1); }
  schedule_builder& on_februaries() { return on_month(2); }
  schedule_builder& on_marches() { return on_month(3); }
  schedule_builder& on_aprils() { return on_month(4); }
  schedule_builder& on_mays() { return on_month(5); }
  schedule_builder& on_junes() { return on_month(6); }
  schedule_builder& on_julies() { return on_month(7); }
  schedule_builder& on_augusts() { return on_month(8); }
  schedule_builder& on_septembers() { return on_month(9); }
  schedule_builder& on_octobers() { return on_month(10); }
  schedule_builder& on_novembers() { return on_month(11); }
  schedule_builder& on_decembers() { return on_month(12); }

  /// Matches the wall clock of `zone` (an IANA name, e.g.
  /// `"Europe/Berlin"`) with cron's daylight-saving rule (see
  /// `cron_schedule`); UTC by default. Intervals are elapsed time and
  /// ignore it.
  schedule_builder& in_time_zone(std::string zone);

  /// The fields as a 6-field cron expression, e.g. `"0 30 9 * * 1-5"`.
  std::string to_cron() const;

  /// Validates every field (naming the one at fault) and that the schedule
  /// can fire at all.
  caf::expected<schedule> build() const;

private:
  friend schedule_builder new_schedule();

  struct field {
    /// Inclusive ranges; empty means every value.
    std::vector<std::pair<int, int>> items;
    /// Whether the user set this field (the first setter replaces).
    bool set = false;
  };

  schedule_builder& add(int index, int from, int to);

  std::optional<std::chrono::milliseconds> interval_;
  field fields_[6];
  std::optional<std::string> zone_;
};

/// Second 0 of every minute.
schedule_builder new_schedule();

schedule_builder new_interval_milliseconds(int64_t n);
schedule_builder new_interval_seconds(int64_t n);
schedule_builder new_interval_minutes(int64_t n);
schedule_builder new_interval_hours(int64_t n);
schedule_builder new_interval_days(int64_t n);
schedule_builder new_interval_weeks(int64_t n);

} // namespace bg_jobs
