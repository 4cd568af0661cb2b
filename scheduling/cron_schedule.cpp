#include "bg_jobs/scheduling/cron_schedule.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>
#include <vector>

#include <cctz/civil_time.h>
#include <cctz/time_zone.h>

#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/job_request.hpp"

namespace bg_jobs {

using namespace std::chrono;

namespace {

struct field_spec {
  const char* name;
  int min;
  int max;
  const char* const* names; // index 0 maps to `min`
};

const char* const month_names[] = {"jan", "feb", "mar",  "apr", "may",
                                   "jun", "jul", "aug",  "sep", "oct",
                                   "nov", "dec", nullptr};
const char* const weekday_names[] = {"sun", "mon", "tue", "wed",
                                     "thu", "fri", "sat", nullptr};

const field_spec field_specs[] = {
    {"second", 0, 59, nullptr},    {"minute", 0, 59, nullptr},
    {"hour", 0, 23, nullptr},      {"day-of-month", 1, 31, nullptr},
    {"month", 1, 12, month_names}, {"day-of-week", 0, 7, weekday_names},
};

caf::error field_error(const field_spec& f, const std::string& msg) {
  return make_error(errc::invalid_schedule,
                    std::string{f.name} + " field: " + msg);
}

/// Parses a number or a name of the field.
caf::expected<int> parse_value(const field_spec& f, std::string_view text) {
  if (text.empty())
    return field_error(f, "empty value");
  if (std::all_of(text.begin(), text.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c));
      })) {
    if (text.size() > 4)
      return field_error(f, std::string{text} + " is out of range " +
                                std::to_string(f.min) + "-" +
                                std::to_string(f.max));
    int v = std::stoi(std::string{text});
    if (v < f.min || v > f.max)
      return field_error(f, std::to_string(v) + " is out of range " +
                                std::to_string(f.min) + "-" +
                                std::to_string(f.max));
    return v;
  }
  if (f.names) {
    std::string lower;
    for (char c : text)
      lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (int i = 0; f.names[i]; ++i)
      if (lower == f.names[i])
        return f.min + i;
  }
  return field_error(f, "'" + std::string{text} + "' is not a valid value");
}

/// Parses one field into the set of allowed values (day-of-week 7 → 0).
caf::expected<std::vector<int>> parse_field(const field_spec& f,
                                            std::string_view text, bool& star) {
  std::vector<int> values;
  star = !text.empty() && text.front() == '*';
  if (text.empty())
    return field_error(f, "is empty");
  size_t pos = 0;
  while (pos <= text.size()) {
    auto comma = text.find(',', pos);
    auto item = text.substr(pos, comma == std::string_view::npos
                                     ? std::string_view::npos
                                     : comma - pos);
    if (item.empty())
      return field_error(f,
                         "empty list element in '" + std::string{text} + "'");
    int lo = f.min, hi = f.max, step = 1;
    auto slash = item.find('/');
    auto range = item.substr(0, slash);
    bool has_range = false;
    if (range == "*") {
      has_range = true;
      if (f.max == 7) // day-of-week: * means 0-6
        hi = 6;
    } else {
      auto dash = range.find('-');
      auto first = parse_value(f, range.substr(0, dash));
      if (!first)
        return std::move(first.error());
      lo = hi = *first;
      if (dash != std::string_view::npos) {
        auto last = parse_value(f, range.substr(dash + 1));
        if (!last)
          return std::move(last.error());
        hi = *last;
        has_range = true;
        if (lo > hi)
          return field_error(f,
                             "range " + std::string{range} + " runs backwards");
      }
    }
    if (slash != std::string_view::npos) {
      auto step_text = item.substr(slash + 1);
      if (step_text.empty() ||
          !std::all_of(step_text.begin(), step_text.end(),
                       [](char c) {
                         return std::isdigit(static_cast<unsigned char>(c));
                       }) ||
          step_text.size() > 4)
        return field_error(f, "step '" + std::string{step_text} +
                                  "' is not a number");
      step = std::stoi(std::string{step_text});
      if (step <= 0)
        return field_error(f, "step must be positive");
      if (!has_range) // "5/15" means 5 through the maximum
        hi = f.max == 7 ? 6 : f.max;
    }
    for (int v = lo; v <= hi; v += step)
      values.push_back(f.max == 7 && v == 7 ? 0 : v);
    if (comma == std::string_view::npos)
      break;
    pos = comma + 1;
  }
  return values;
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])))
      ++i;
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j])))
      ++j;
    if (j > i)
      out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

template <size_t N>
int next_set(const std::bitset<N>& bits, int from) {
  for (int i = std::max(from, 0); i < static_cast<int>(N); ++i)
    if (bits[static_cast<size_t>(i)])
      return i;
  return -1;
}

unsigned days_in(int year, unsigned month) {
  return static_cast<unsigned>(
      (year_month_day_last{std::chrono::year{year} / std::chrono::month{month} /
                           last})
          .day());
}

} // namespace

caf::expected<cron_schedule> cron_schedule::parse(std::string_view expr) {
  // cronie's `CRON_TZ=<zone> <expression>`; `TZ=` as well.
  for (std::string_view prefix : {"CRON_TZ=", "TZ="}) {
    if (expr.substr(0, prefix.size()) != prefix)
      continue;
    auto rest = expr.substr(prefix.size());
    auto end = rest.find_first_of(" \t");
    auto zone = rest.substr(0, end);
    if (end == std::string_view::npos)
      return make_error(errc::invalid_schedule,
                        "'" + std::string{expr} +
                            "' names a time zone but no schedule");
    auto plain = parse(rest.substr(end + 1));
    if (!plain)
      return plain;
    auto zoned = plain->in_time_zone(zone);
    if (zoned)
      zoned->expr_ = std::string{expr};
    return zoned;
  }
  std::string text{expr};
  auto parts = split(text);
  if (parts.size() == 1 && !parts[0].empty() && parts[0][0] == '@') {
    std::string alias{parts[0]};
    for (auto& c : alias)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const char* full = nullptr;
    if (alias == "@yearly" || alias == "@annually")
      full = "0 0 0 1 1 *";
    else if (alias == "@monthly")
      full = "0 0 0 1 * *";
    else if (alias == "@weekly")
      full = "0 0 0 * * 0";
    else if (alias == "@daily" || alias == "@midnight")
      full = "0 0 0 * * *";
    else if (alias == "@hourly")
      full = "0 0 * * * *";
    else
      return make_error(errc::invalid_schedule,
                        "unknown alias '" + std::string{parts[0]} + "'");
    auto result = parse(full);
    if (result)
      result->expr_ = text;
    return result;
  }
  if (parts.size() != 5 && parts.size() != 6)
    return make_error(errc::invalid_schedule, "expected 5 or 6 fields, got " +
                                                  std::to_string(parts.size()) +
                                                  " in '" + text + "'");
  if (parts.size() == 5)
    parts.insert(parts.begin(), std::string_view{"0"});
  fields f;
  for (size_t i = 0; i < 6; ++i) {
    bool star = false;
    auto values = parse_field(field_specs[i], parts[i], star);
    if (!values)
      return std::move(values.error());
    for (int v : *values) {
      auto b = static_cast<size_t>(v);
      switch (i) {
      case 0:
        f.seconds.set(b);
        break;
      case 1:
        f.minutes.set(b);
        break;
      case 2:
        f.hours.set(b);
        break;
      case 3:
        f.days.set(b);
        break;
      case 4:
        f.months.set(b);
        break;
      case 5:
        f.weekdays.set(b);
        break;
      }
    }
    if (i == 3)
      f.days_star = star;
    if (i == 5)
      f.weekdays_star = star;
  }
  return from_fields(f, text);
}

caf::expected<cron_schedule> cron_schedule::from_fields(fields f,
                                                        std::string expr) {
  cron_schedule result;
  result.f_ = f;
  result.expr_ = std::move(expr);
  // Fixed-time: no `*` and no `/` in the second, minute and hour fields.
  auto parts = split(result.expr_);
  if (parts.size() == 5)
    parts.insert(parts.begin(), std::string_view{"0"});
  for (size_t i = 0; i < 3 && i < parts.size(); ++i)
    if (parts[i].find_first_of("*/") != std::string_view::npos)
      result.fixed_time_ = false;
  auto empty = [&](const char* field) {
    return make_error(errc::invalid_schedule,
                      std::string{field} + " field allows no value");
  };
  if (f.seconds.none())
    return empty("second");
  if (f.minutes.none())
    return empty("minute");
  if (f.hours.none())
    return empty("hour");
  if (f.days.none())
    return empty("day-of-month");
  if (f.months.none())
    return empty("month");
  if (f.weekdays.none())
    return empty("day-of-week");
  // The Gregorian calendar repeats every 400 years, so a schedule without a
  // run in 400 years from any start never fires.
  auto probe = timestamp{sys_days{std::chrono::year{2000} / 1 / 1}};
  if (!result.next_after(probe))
    return make_error(errc::invalid_schedule,
                      "'" + result.expr_ +
                          "' never fires: no date matches its day-of-month, "
                          "month and day-of-week fields");
  return result;
}

bool cron_schedule::day_matches(int year, unsigned month, unsigned day) const {
  auto ymd = std::chrono::year{year} / std::chrono::month{month} /
             std::chrono::day{day};
  auto dow = weekday{sys_days{ymd}}.c_encoding();
  bool dom = f_.days[day];
  bool dw = f_.weekdays[dow];
  if (f_.days_star || f_.weekdays_star)
    return dom && dw;
  return dom || dw;
}

std::optional<timestamp> cron_schedule::next_wall_time(timestamp t) const {
  auto start = floor<seconds>(t) + seconds{1};
  auto day0 = floor<days>(start);
  year_month_day ymd{day0};
  hh_mm_ss<seconds> hms{start - day0};
  int y0 = static_cast<int>(ymd.year());
  auto m0 = static_cast<unsigned>(ymd.month());
  auto d0 = static_cast<unsigned>(ymd.day());
  int h0 = static_cast<int>(hms.hours().count());
  int mi0 = static_cast<int>(hms.minutes().count());
  int s0 = static_cast<int>(hms.seconds().count());
  for (int year = y0; year <= std::min(y0 + 400, 9999); ++year) {
    bool same_year = year == y0;
    for (unsigned month = same_year ? m0 : 1; month <= 12; ++month) {
      if (!f_.months[month])
        continue;
      bool same_month = same_year && month == m0;
      auto dim = days_in(year, month);
      for (unsigned d = same_month ? d0 : 1; d <= dim; ++d) {
        if (!day_matches(year, month, d))
          continue;
        bool same_day = same_month && d == d0;
        for (int h = next_set(f_.hours, same_day ? h0 : 0); h >= 0;
             h = next_set(f_.hours, h + 1)) {
          bool same_hour = same_day && h == h0;
          for (int mi = next_set(f_.minutes, same_hour ? mi0 : 0); mi >= 0;
               mi = next_set(f_.minutes, mi + 1)) {
            bool same_minute = same_hour && mi == mi0;
            int s = next_set(f_.seconds, same_minute ? s0 : 0);
            if (s < 0)
              continue;
            return timestamp{sys_days{std::chrono::year{year} /
                                      std::chrono::month{month} /
                                      std::chrono::day{d}}} +
                   hours{h} + minutes{mi} + seconds{s};
          }
        }
      }
    }
  }
  return std::nullopt;
}

// -- time zones
// ----------------------------------------------------------------

struct cron_schedule::zone {
  cctz::time_zone tz;
};

namespace {

/// Why `name` is not a zone name we look up; empty when it may be one.
std::string zone_name_problem(std::string_view name) {
  if (name.size() > 64)
    return "is too long";
  if (name.front() == '/' || name.back() == '/')
    return "is not a zone name";
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '/' && c != '_' &&
        c != '-' && c != '+')
      return "holds a character no zone name has";
  size_t start = 0;
  while (start <= name.size()) {
    auto end = std::min(name.find('/', start), name.size());
    auto part = name.substr(start, end - start);
    if (part.empty() || part == "." || part == "..")
      return "is not a zone name";
    start = end + 1;
  }
  return {};
}

cctz::civil_second civil_of(timestamp wall) {
  auto day = floor<days>(wall);
  year_month_day ymd{day};
  hh_mm_ss<seconds> hms{floor<seconds>(wall - day)};
  return cctz::civil_second(
      static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
      static_cast<unsigned>(ymd.day()), hms.hours().count(),
      hms.minutes().count(), hms.seconds().count());
}

timestamp wall_of(const cctz::civil_second& c) {
  return timestamp{
             sys_days{std::chrono::year{static_cast<int>(c.year())} /
                      std::chrono::month{static_cast<unsigned>(c.month())} /
                      std::chrono::day{static_cast<unsigned>(c.day())}}} +
         hours{c.hour()} + minutes{c.minute()} + seconds{c.second()};
}

timestamp instant_of(const cctz::time_point<cctz::seconds>& tp) {
  return timestamp{duration_cast<milliseconds>(tp.time_since_epoch())};
}

cctz::time_point<cctz::seconds> tp_of(timestamp t) {
  return cctz::time_point<cctz::seconds>{
      duration_cast<cctz::seconds>(t.time_since_epoch())};
}

/// The largest change of offset among the zone's transitions within a day
/// of `t` (zero when there is none): how far wall-clock order and real
/// order can disagree around `t`.
seconds offset_changes_near(const cctz::time_zone& tz, timestamp t) {
  seconds widest{0};
  auto tp = tp_of(t - hours{24});
  auto until = tp_of(t + hours{24});
  cctz::time_zone::civil_transition tr;
  while (tz.next_transition(tp, &tr)) {
    auto at = tz.lookup(tr.to).post;
    if (at > until || at <= tp)
      break;
    widest = std::max(widest, seconds{std::abs(tr.to - tr.from)});
    tp = at;
  }
  return widest;
}

} // namespace

caf::expected<cron_schedule>
cron_schedule::in_time_zone(std::string_view name) const {
  auto result = *this;
  if (name.empty())
    return make_error(errc::invalid_schedule, "the time zone name is empty");
  if (name == "UTC") {
    result.zone_name_.clear();
    result.zone_.reset();
    return result;
  }
  auto fail = [&](const std::string& why) {
    return make_error(errc::invalid_schedule,
                      "time zone '" + printable(name) + "' " + why);
  };
  if (auto why = zone_name_problem(name); !why.empty())
    return fail(why);
  auto z = std::make_shared<zone>();
  if (!cctz::load_time_zone(std::string{name}, &z->tz))
    return fail("is not in the system's time zone database");
  result.zone_name_ = std::string{name};
  result.zone_ = std::move(z);
  return result;
}

std::optional<timestamp> cron_schedule::next_after(timestamp t) const {
  if (!zone_)
    return next_wall_time(t);
  auto& tz = zone_->tz;
  // Wall-clock slots are visited in order; their instants are in order too,
  // except within the offset change of a nearby transition, so the scan
  // starts that much earlier and stops that much after the best run.
  auto near_t = offset_changes_near(tz, t);
  auto wall = wall_of(cctz::convert(tp_of(floor<seconds>(t)), tz)) - near_t;
  std::optional<timestamp> best;
  timestamp stop_after;
  for (;;) {
    auto slot = next_wall_time(wall);
    if (!slot)
      return best;
    if (best && *slot > stop_after)
      return best;
    wall = *slot;
    auto found = tz.lookup(civil_of(*slot));
    std::optional<timestamp> runs[2];
    switch (found.kind) {
    case cctz::time_zone::civil_lookup::UNIQUE:
      runs[0] = instant_of(found.pre);
      break;
    case cctz::time_zone::civil_lookup::SKIPPED:
      // In a gap: a fixed-time run moves to the first instant after it.
      if (fixed_time_)
        runs[0] = instant_of(found.trans);
      break;
    case cctz::time_zone::civil_lookup::REPEATED:
      // In a repeated hour: a fixed-time run at its first occurrence only.
      runs[0] = instant_of(found.pre);
      if (!fixed_time_)
        runs[1] = instant_of(found.post);
      break;
    }
    for (auto& r : runs)
      if (r && *r > t && (!best || *r < *best)) {
        best = r;
        stop_after = wall_of(cctz::convert(tp_of(*best), tz)) +
                     offset_changes_near(tz, *best);
      }
  }
}

} // namespace bg_jobs
