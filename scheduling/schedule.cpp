#include "bg_jobs/scheduling/schedule.hpp"

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

using namespace std::chrono;

// -- schedule
// ------------------------------------------------------------------

caf::expected<schedule> schedule::every(milliseconds d) {
  if (d.count() <= 0)
    return make_error(errc::invalid_schedule,
                      "an interval must be positive, got " +
                          std::to_string(d.count()) + " ms");
  return schedule{d};
}

caf::expected<schedule> schedule::cron(std::string_view expr) {
  auto c = cron_schedule::parse(expr);
  if (!c)
    return std::move(c.error());
  return schedule{std::move(*c)};
}

std::optional<timestamp> schedule::next_after(timestamp t) const {
  if (cron_)
    return cron_->next_after(t);
  return t + interval_;
}

std::string schedule::to_string() const {
  if (cron_) {
    auto& expr = cron_->expression();
    auto& zone = cron_->time_zone();
    if (zone.empty() || expr.find("TZ=") == 0 || expr.find("CRON_TZ=") == 0)
      return expr;
    return expr + " in " + zone;
  }
  return "every " + std::to_string(interval_.count()) + " ms";
}

// -- schedule_builder
// ------------------------------------------------------------

namespace {

struct field_limits {
  const char* name;
  int min;
  int max;
};

const field_limits limits[] = {
    {"Seconds", 0, 59},      {"Minutes", 0, 59}, {"Hours", 0, 23},
    {"Day of month", 1, 31}, {"Month", 1, 12},   {"Day of week", 0, 7},
};

} // namespace

schedule_builder new_schedule() {
  schedule_builder b;
  b.fields_[0].items.emplace_back(0, 0);
  return b;
}

schedule_builder schedule_builder::interval(milliseconds d) {
  schedule_builder b;
  b.interval_ = d;
  return b;
}

schedule_builder new_interval_milliseconds(int64_t n) {
  return schedule_builder::interval(milliseconds{n});
}
schedule_builder new_interval_seconds(int64_t n) {
  return schedule_builder::interval(seconds{n});
}
schedule_builder new_interval_minutes(int64_t n) {
  return schedule_builder::interval(minutes{n});
}
schedule_builder new_interval_hours(int64_t n) {
  return schedule_builder::interval(hours{n});
}
schedule_builder new_interval_days(int64_t n) {
  return schedule_builder::interval(days{n});
}
schedule_builder new_interval_weeks(int64_t n) {
  return schedule_builder::interval(weeks{n});
}

schedule_builder& schedule_builder::add(int index, int from, int to) {
  auto& f = fields_[index];
  if (!f.set) {
    f.items.clear();
    f.set = true;
  }
  f.items.emplace_back(from, to);
  return *this;
}

schedule_builder& schedule_builder::every_second() {
  fields_[0] = field{};
  return *this;
}

schedule_builder& schedule_builder::on_second(int s) {
  return add(0, s, s);
}
schedule_builder& schedule_builder::between_seconds(int a, int b) {
  return add(0, a, b);
}
schedule_builder& schedule_builder::on_minute(int m) {
  return add(1, m, m);
}
schedule_builder& schedule_builder::between_minutes(int a, int b) {
  return add(1, a, b);
}
schedule_builder& schedule_builder::on_hour(int h) {
  return add(2, h, h);
}
schedule_builder& schedule_builder::between_hours(int a, int b) {
  return add(2, a, b);
}
schedule_builder& schedule_builder::on_day_of_month(int d) {
  return add(3, d, d);
}
schedule_builder& schedule_builder::between_day_of_months(int a, int b) {
  return add(3, a, b);
}
schedule_builder& schedule_builder::on_month(int m) {
  return add(4, m, m);
}
schedule_builder& schedule_builder::between_months(int a, int b) {
  return add(4, a, b);
}
schedule_builder& schedule_builder::on_day_of_week(int d) {
  return add(5, d, d);
}
schedule_builder& schedule_builder::between_day_of_weeks(int a, int b) {
  return add(5, a, b);
}

schedule_builder& schedule_builder::on_weekdays() {
  for (int d = 1; d <= 5; ++d)
    on_day_of_week(d);
  return *this;
}

schedule_builder& schedule_builder::on_weekends() {
  on_day_of_week(6);
  return on_day_of_week(7);
}

schedule_builder& schedule_builder::in_time_zone(std::string zone) {
  zone_ = std::move(zone);
  return *this;
}

std::string schedule_builder::to_cron() const {
  std::string out;
  for (int i = 0; i < 6; ++i) {
    if (i > 0)
      out += ' ';
    if (fields_[i].items.empty()) {
      out += '*';
      continue;
    }
    bool first = true;
    for (auto [a, b] : fields_[i].items) {
      if (!first)
        out += ',';
      first = false;
      out += std::to_string(a);
      if (b != a)
        out += '-' + std::to_string(b);
    }
  }
  return out;
}

caf::expected<schedule> schedule_builder::build() const {
  if (interval_)
    return schedule::every(*interval_);
  cron_schedule::fields f;
  for (int i = 0; i < 6; ++i) {
    auto& lim = limits[i];
    auto& items = fields_[i].items;
    if (items.empty()) {
      for (int v = lim.min; v <= (i == 5 ? 6 : lim.max); ++v)
        switch (i) {
        case 0:
          f.seconds.set(v);
          break;
        case 1:
          f.minutes.set(v);
          break;
        case 2:
          f.hours.set(v);
          break;
        case 3:
          f.days.set(v);
          break;
        case 4:
          f.months.set(v);
          break;
        case 5:
          f.weekdays.set(v);
          break;
        }
      continue;
    }
    for (auto [a, b] : items) {
      for (int v : {a, b})
        if (v < lim.min || v > lim.max)
          return make_error(errc::invalid_schedule,
                            std::string{lim.name} + " must be between " +
                                std::to_string(lim.min) + " and " +
                                std::to_string(lim.max) +
                                ", found: " + std::to_string(v));
      if (a > b)
        return make_error(errc::invalid_schedule,
                          std::string{lim.name} +
                              ": range start must not be after its end, got "
                              "start:" +
                              std::to_string(a) + " end:" + std::to_string(b));
      for (int v = a; v <= b; ++v) {
        auto bit = static_cast<size_t>(i == 5 && v == 7 ? 0 : v);
        switch (i) {
        case 0:
          f.seconds.set(bit);
          break;
        case 1:
          f.minutes.set(bit);
          break;
        case 2:
          f.hours.set(bit);
          break;
        case 3:
          f.days.set(bit);
          break;
        case 4:
          f.months.set(bit);
          break;
        case 5:
          f.weekdays.set(bit);
          break;
        }
      }
    }
  }
  f.days_star = fields_[3].items.empty();
  f.weekdays_star = fields_[5].items.empty();
  auto c = cron_schedule::from_fields(f, to_cron());
  if (!c)
    return std::move(c.error());
  if (zone_) {
    c = c->in_time_zone(*zone_);
    if (!c)
      return std::move(c.error());
  }
  return schedule::from(std::move(*c));
}

} // namespace bg_jobs
