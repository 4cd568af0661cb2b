#pragma once

#include <bitset>
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
class cron_schedule {
public:
  /// Parses `expr`; an invalid field or a schedule that can never fire is
  /// an `errc::invalid_schedule` error naming the field.
  static caf::expected<cron_schedule> parse(std::string_view expr);

  /// The earliest matching time strictly after `t` (whole seconds), or
  /// none before the year 10000.
  std::optional<timestamp> next_after(timestamp t) const;

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

private:
  bool day_matches(int year, unsigned month, unsigned day) const;

  fields f_;
  std::string expr_;
};

} // namespace bg_jobs
