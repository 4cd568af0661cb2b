#include "bg_jobs/core/timestamp.hpp"

#include <cstdio>

namespace bg_jobs {

using namespace std::chrono;

timestamp utc_now() {
  return time_point_cast<milliseconds>(system_clock::now());
}

std::string to_iso8601(timestamp t) {
  auto day = floor<days>(t);
  year_month_day ymd{day};
  hh_mm_ss<milliseconds> hms{t - day};
  char buf[40];
  std::snprintf(
      buf, sizeof(buf), "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ",
      static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
      static_cast<unsigned>(ymd.day()), static_cast<int>(hms.hours().count()),
      static_cast<int>(hms.minutes().count()),
      static_cast<int>(hms.seconds().count()),
      static_cast<int>(hms.subseconds().count()));
  return buf;
}

namespace {

bool digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size())
    return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

} // namespace

std::optional<timestamp> parse_iso8601(std::string_view s) {
  int y, mo, d, h, mi, sec, ms = 0;
  if (!digits(s, 0, 4, y) || s.size() < 20 || s[4] != '-' ||
      !digits(s, 5, 2, mo) || s[7] != '-' || !digits(s, 8, 2, d) ||
      (s[10] != 'T' && s[10] != ' ') || !digits(s, 11, 2, h) || s[13] != ':' ||
      !digits(s, 14, 2, mi) || s[16] != ':' || !digits(s, 17, 2, sec))
    return std::nullopt;
  size_t pos = 19;
  if (s[pos] == '.') {
    if (!digits(s, pos + 1, 3, ms))
      return std::nullopt;
    pos += 4;
  }
  if (pos + 1 != s.size() || s[pos] != 'Z')
    return std::nullopt;
  year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)},
                     day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || sec > 59)
    return std::nullopt;
  return timestamp{sys_days{ymd}} + hours{h} + minutes{mi} + seconds{sec} +
         milliseconds{ms};
}

} // namespace bg_jobs
