#pragma once

#include <bitset>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

#include "bg_jobs/core/timestamp.hpp"

namespace bg_jobs {

/// A cron schedule with standard (Vixie cron) semantics, in UTC, with an
/// optional seconds field. Accepts 5 fields (minute hour day-of-month month
/// day-of-week) or 6 (seconds first); lists, ranges and steps (`*/15`,
/// `10-30/5`, `5/15`); month and weekday names (`JAN`, `mon`); Sunday as 0
/// or 7; and `@yearly @annually @monthly @weekly @daily @midnight @hourly`.
/// When both day fields are restricted a day matches if either does; a
/// field that starts with `*` counts as unrestricted.
///
/// A schedule may run in a time zone (an IANA name resolved against the
/// system's tz database): given as a `CRON_TZ=<zone> ` (or `TZ=<zone> `)
/// prefix, or with `in_time_zone`. It then matches the zone's wall clock,
/// with cronie's daylight-saving rule: a *fixed-time* schedule (no `*` and
/// no `/` in its second, minute and hour fields) runs a slot that falls in a
/// gap once, at the first instant after the gap, and a slot in a repeated
/// hour once, at its first occurrence; any other schedule skips slots in a
/// gap and runs both occurrences of a repeated slot. Runs that land on the
/// same instant are one run.
class cron_schedule {
public:
  /// Parses `expr`; an invalid field, an unknown time zone or a schedule
  /// that can never fire is an `errc::invalid_schedule` error naming it.
  static caf::expected<cron_schedule> parse(std::string_view expr);

  /// The same schedule on the wall clock of `zone` (an IANA name such as
  /// `"America/New_York"`, or `"UTC"`); an empty, unknown or malformed name
  /// is an `errc::invalid_schedule` error naming it.
  caf::expected<cron_schedule> in_time_zone(std::string_view zone) const;

  /// The earliest run strictly after `t` (whole seconds), or none before
  /// the year 10000.
  std::optional<timestamp> next_after(timestamp t) const;

  /// The zone's name, empty for UTC.
  const std::string& time_zone() const { return zone_name_; }

  /// Whether its second, minute and hour fields hold no `*` and no `/`.
  bool fixed_time() const { return fixed_time_; }

  /// The expression as given.
  const std::string& expression() const { return expr_; }

  /// The fields as sets of allowed values, for the builder vocabulary.
  struct fields {
    std::bitset<60> seconds;
    std::bitset<60> minutes;
    std::bitset<24> hours;
    std::bitset<32> days;    // 1..31
    std::bitset<13> months;  // 1..12
    std::bitset<7> weekdays; // 0 = Sunday
    bool days_star = true;
    bool weekdays_star = true;
  };

  /// Makes a schedule from field sets; fails when it can never fire.
  static caf::expected<cron_schedule> from_fields(fields f, std::string expr);

  struct zone;

private:
  bool day_matches(int year, unsigned month, unsigned day) const;

  /// The next matching time after `t`, reading `t` and the result as UTC
  /// (or as wall-clock times, for a zone).
  std::optional<timestamp> next_wall_time(timestamp t) const;

  fields f_;
  std::string expr_;
  bool fixed_time_ = true;
  std::string zone_name_;
  std::shared_ptr<const zone> zone_;
};

} // namespace bg_jobs
