#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace bg_jobs {

/// A point in time in UTC with millisecond precision, the resolution that
/// every adapter stores and returns unchanged.
using timestamp = std::chrono::sys_time<std::chrono::milliseconds>;

/// Returns the current UTC time, truncated to milliseconds.
timestamp utc_now();

/// Formats `t` as ISO 8601 in UTC, e.g. `2024-01-01T00:00:00.000Z`.
std::string to_iso8601(timestamp t);

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (a space may replace the `T`).
/// Returns `std::nullopt` for anything else, including invalid dates.
std::optional<timestamp> parse_iso8601(std::string_view text);

/// Milliseconds since the UNIX epoch, the representation SQL stores use.
inline int64_t to_unix_ms(timestamp t) {
  return t.time_since_epoch().count();
}

/// The inverse of `to_unix_ms`.
inline timestamp from_unix_ms(int64_t ms) {
  return timestamp{std::chrono::milliseconds{ms}};
}

} // namespace bg_jobs
