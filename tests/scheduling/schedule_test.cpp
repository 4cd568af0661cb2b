// Cron semantics (Vixie cron, UTC) and the original bg_jobs schedule
// vocabulary, with the original's bugs corrected.
#include <chrono>

#include <doctest/doctest.h>

#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/scheduling/schedule.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

timestamp at(const char* iso) {
  auto t = parse_iso8601(iso);
  REQUIRE_MESSAGE(t, iso);
  return *t;
}

std::string next_of(const char* expr, const char* from) {
  auto c = cron_schedule::parse(expr);
  REQUIRE_MESSAGE(c, expr << ": " << (c ? "" : describe(c.error())));
  auto n = c->next_after(at(from));
  REQUIRE_MESSAGE(n, expr << " has no run after " << from);
  return to_iso8601(*n).substr(0, 19) + "Z";
}

std::string next_of(const schedule_builder& b, const char* from) {
  auto s = b.build();
  REQUIRE_MESSAGE(s, b.to_cron() << ": " << (s ? "" : describe(s.error())));
  return to_iso8601(*s->next_after(at(from))).substr(0, 19) + "Z";
}

struct row {
  const char* expr;
  const char* from;
  const char* next;
};

// Worked out by hand from the Vixie cron rules: 2024-01-01 is a Monday,
// 2024 and 2096 are leap years, 2100 is not.
const row table[] = {
    {"* * * * *", "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"},
    {"* * * * *", "2024-01-01T00:00:30Z", "2024-01-01T00:01:00Z"},
    {"*/15 * * * *", "2024-01-01T00:07:00Z", "2024-01-01T00:15:00Z"},
    {"*/15 * * * *", "2024-01-01T00:45:00Z", "2024-01-01T01:00:00Z"},
    {"0 * * * *", "2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z"},
    {"30 9 * * *", "2024-01-01T09:30:00Z", "2024-01-02T09:30:00Z"},
    {"30 9 * * *", "2024-01-01T09:29:59Z", "2024-01-01T09:30:00Z"},
    {"0 0 1 * *", "2024-01-31T12:00:00Z", "2024-02-01T00:00:00Z"},
    {"0 0 31 * *", "2024-01-31T00:00:00Z", "2024-03-31T00:00:00Z"},
    {"0 0 31 * *", "2024-04-01T00:00:00Z", "2024-05-31T00:00:00Z"},
    {"0 0 30 * *", "2024-01-30T00:00:00Z", "2024-03-30T00:00:00Z"},
    {"0 0 29 2 *", "2024-03-01T00:00:00Z", "2028-02-29T00:00:00Z"},
    {"0 0 29 2 *", "2023-01-01T00:00:00Z", "2024-02-29T00:00:00Z"},
    {"0 0 29 2 *", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z"},
    {"0 0 28-31 2 *", "2023-02-28T00:00:00Z", "2024-02-28T00:00:00Z"},
    {"0 0 28-31 2 *", "2024-02-28T00:00:00Z", "2024-02-29T00:00:00Z"},
    {"0 0 * * 0", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
    {"0 0 * * 7", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
    {"0 0 * * SUN", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
    {"5 4 * * sun", "2024-01-07T04:05:00Z", "2024-01-14T04:05:00Z"},
    {"0 0 * * mon-fri", "2024-01-05T12:00:00Z", "2024-01-08T00:00:00Z"},
    {"0 0 * * 1-5", "2024-01-06T00:00:00Z", "2024-01-08T00:00:00Z"},
    {"0 0 * * 6,0", "2024-01-01T00:00:00Z", "2024-01-06T00:00:00Z"},
    {"0 0 * * 5-7", "2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z"},
    {"0 12 13 * 5", "2024-01-01T00:00:00Z", "2024-01-05T12:00:00Z"},
    {"0 12 13 * 5", "2024-09-07T00:00:00Z", "2024-09-13T12:00:00Z"},
    {"0 0 13 * 5", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},
    {"0 0 1 * 1", "2024-01-02T00:00:00Z", "2024-01-08T00:00:00Z"},
    {"0 0 1 * 1", "2024-01-30T00:00:00Z", "2024-02-01T00:00:00Z"},
    {"0 0 */2 * *", "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z"},
    {"0 0 */2 * 1", "2024-01-01T00:00:00Z", "2024-01-15T00:00:00Z"},
    {"0 0 1,15 * *", "2024-01-02T00:00:00Z", "2024-01-15T00:00:00Z"},
    {"0 0 1,15 * *", "2024-01-15T00:00:00Z", "2024-02-01T00:00:00Z"},
    {"0 0 1 1 *", "2024-06-01T00:00:00Z", "2025-01-01T00:00:00Z"},
    {"0 0 1 JAN *", "2024-06-01T00:00:00Z", "2025-01-01T00:00:00Z"},
    {"0 0 * FEB *", "2024-03-01T00:00:00Z", "2025-02-01T00:00:00Z"},
    {"0 0,12 1 */2 *", "2024-01-01T12:00:00Z", "2024-03-01T00:00:00Z"},
    {"0 4 8-14 * *", "2024-01-14T04:00:00Z", "2024-02-08T04:00:00Z"},
    {"59 23 31 12 *", "2024-12-31T23:59:00Z", "2025-12-31T23:59:00Z"},
    {"59 23 31 12 *", "2024-12-31T23:58:59Z", "2024-12-31T23:59:00Z"},
    {"0 9-17 * * 1-5", "2024-01-05T17:00:00Z", "2024-01-08T09:00:00Z"},
    {"0 9-17 * * 1-5", "2024-01-05T16:00:00Z", "2024-01-05T17:00:00Z"},
    {"15 14 1 * *", "2024-01-01T14:15:00Z", "2024-02-01T14:15:00Z"},
    {"0 22 * * 1-5", "2024-01-01T22:00:00Z", "2024-01-02T22:00:00Z"},
    {"23 0-20/2 * * *", "2024-01-01T20:23:00Z", "2024-01-02T00:23:00Z"},
    {"10-30/5 * * * *", "2024-01-01T00:31:00Z", "2024-01-01T01:10:00Z"},
    {"10-30/5 * * * *", "2024-01-01T00:12:00Z", "2024-01-01T00:15:00Z"},
    {"5/15 * * * *", "2024-01-01T00:51:00Z", "2024-01-01T01:05:00Z"},
    {"5/15 * * * *", "2024-01-01T00:36:00Z", "2024-01-01T00:50:00Z"},
    {"* * * * * *", "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z"},
    {"* * * * * *", "2024-01-01T00:00:00.500Z", "2024-01-01T00:00:01Z"},
    {"*/10 * * * * *", "2024-01-01T00:00:05Z", "2024-01-01T00:00:10Z"},
    {"30 * * * * *", "2024-01-01T00:00:30Z", "2024-01-01T00:01:30Z"},
    {"0,30 * * * * *", "2024-01-01T00:00:29Z", "2024-01-01T00:00:30Z"},
    {"59 59 23 31 12 *", "2024-06-01T00:00:00Z", "2024-12-31T23:59:59Z"},
    {"@yearly", "2024-06-01T00:00:00Z", "2025-01-01T00:00:00Z"},
    {"@annually", "2024-12-31T23:59:59Z", "2025-01-01T00:00:00Z"},
    {"@monthly", "2024-01-15T00:00:00Z", "2024-02-01T00:00:00Z"},
    {"@weekly", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
    {"@daily", "2024-02-28T13:00:00Z", "2024-02-29T00:00:00Z"},
    {"@midnight", "2023-02-28T13:00:00Z", "2023-03-01T00:00:00Z"},
    {"@hourly", "2024-01-01T23:30:00Z", "2024-01-02T00:00:00Z"},
    {"0 0 1 1 *", "9998-06-01T00:00:00Z", "9999-01-01T00:00:00Z"},
};

} // namespace

TEST_SUITE("scheduling") {

  TEST_CASE("cron expressions give the standard next run") {
    for (auto& r : table) {
      CAPTURE(r.expr);
      CAPTURE(r.from);
      CHECK(next_of(r.expr, r.from) == r.next);
    }
  }

  TEST_CASE("each next run is strictly after the one before") {
    auto c = cron_schedule::parse("*/20 9-10 * * 1-5");
    REQUIRE(c);
    auto t = at("2024-01-05T09:55:00Z");
    std::vector<std::string> got;
    for (int i = 0; i < 5; ++i) {
      auto n = c->next_after(t);
      REQUIRE(n);
      CHECK(*n > t);
      t = *n;
      got.push_back(to_iso8601(t));
    }
    CHECK(got == std::vector<std::string>{
                     "2024-01-05T10:00:00.000Z", "2024-01-05T10:20:00.000Z",
                     "2024-01-05T10:40:00.000Z", "2024-01-08T09:00:00.000Z",
                     "2024-01-08T09:20:00.000Z"});
  }

  TEST_CASE("invalid cron expressions are refused with the field named") {
    struct bad {
      const char* expr;
      const char* says;
    };
    const bad cases[] = {
        {"60 * * * *", "minute field: 60 is out of range 0-59"},
        {"* 24 * * *", "hour field: 24 is out of range 0-23"},
        {"* * 0 * *", "day-of-month field: 0 is out of range 1-31"},
        {"* * 32 * *", "day-of-month field: 32 is out of range 1-31"},
        {"* * * 13 *", "month field: 13 is out of range 1-12"},
        {"* * * * 8", "day-of-week field: 8 is out of range 0-7"},
        {"61 * * * * *", "second field: 61 is out of range 0-59"},
        {"* * * *", "expected 5 or 6 fields, got 4"},
        {"* * * * * * *", "expected 5 or 6 fields, got 7"},
        {"", "expected 5 or 6 fields, got 0"},
        {"*/0 * * * *", "minute field: step must be positive"},
        {"5-1 * * * *", "minute field: range 5-1 runs backwards"},
        {"a * * * *", "minute field: 'a' is not a valid value"},
        {"1,,2 * * * *", "minute field: empty list element"},
        {"* * * JANUARY *", "month field: 'JANUARY' is not a valid value"},
        {"* * * * 1-", "day-of-week field: empty value"},
        {"*/x * * * *", "minute field: step 'x' is not a number"},
        {"0 0 30 2 *", "never fires"},
        {"0 0 31 4,6,9,11 *", "never fires"},
        {"0 0 30 2 * ", "never fires"},
        {"@fortnightly", "unknown alias '@fortnightly'"},
    };
    for (auto& c : cases) {
      CAPTURE(c.expr);
      auto r = cron_schedule::parse(c.expr);
      REQUIRE_FALSE(r);
      CHECK(code_of(r.error()) == errc::invalid_schedule);
      CHECK_MESSAGE(describe(r.error()).find(c.says) != std::string::npos,
                    describe(r.error()));
    }
  }

  TEST_CASE("the builder vocabulary maps to cron fields") {
    CHECK(new_schedule().to_cron() == "0 * * * * *");
    CHECK(new_schedule().every_second().to_cron() == "* * * * * *");
    // The original appended to the default second 0 ("0,30 ..."); the first
    // call on a field now replaces its default.
    CHECK(new_schedule().on_second(30).to_cron() == "30 * * * * *");
    CHECK(new_schedule().on_second(30).on_second(45).to_cron() ==
          "30,45 * * * * *");
    CHECK(new_schedule().between_seconds(10, 20).to_cron() ==
          "10-20 * * * * *");
    CHECK(new_schedule().on_minute(30).to_cron() == "0 30 * * * *");
    CHECK(new_schedule().between_minutes(5, 10).to_cron() == "0 5-10 * * * *");
    CHECK(new_schedule().on_hour(9).to_cron() == "0 * 9 * * *");
    CHECK(new_schedule().between_hours(8, 12).to_cron() == "0 * 8-12 * * *");
    CHECK(new_schedule().on_day_of_month(15).to_cron() == "0 * * 15 * *");
    CHECK(new_schedule().between_day_of_months(1, 15).to_cron() ==
          "0 * * 1-15 * *");
    CHECK(new_schedule().on_month(5).to_cron() == "0 * * * 5 *");
    CHECK(new_schedule().between_months(3, 8).to_cron() == "0 * * * 3-8 *");
    CHECK(new_schedule().on_day_of_week(3).to_cron() == "0 * * * * 3");
    CHECK(new_schedule().between_day_of_weeks(1, 5).to_cron() ==
          "0 * * * * 1-5");
    CHECK(new_schedule().on_mondays().to_cron() == "0 * * * * 1");
    CHECK(new_schedule().on_sundays().to_cron() == "0 * * * * 7");
    CHECK(new_schedule().on_weekdays().to_cron() == "0 * * * * 1,2,3,4,5");
    CHECK(new_schedule().on_weekends().to_cron() == "0 * * * * 6,7");
    CHECK(new_schedule().on_januaries().on_decembers().to_cron() ==
          "0 * * * 1,12 *");
    CHECK(new_schedule()
              .every_second()
              .on_second(3)
              .between_seconds(3, 5)
              .to_cron() == "3,3-5 * * * * *");
  }

  TEST_CASE("builder schedules follow cron semantics") {
    CHECK(next_of(new_schedule(), "2024-01-01T01:01:00Z") ==
          "2024-01-01T01:02:00Z");
    // Lower fields restart when a higher one advances (the original kept the
    // minute: 08:21:00).
    CHECK(next_of(new_schedule().on_hour(8), "2024-06-15T10:20:30Z") ==
          "2024-06-16T08:00:00Z");
    CHECK(next_of(new_schedule().on_month(2), "2024-01-31T12:00:00Z") ==
          "2024-02-01T00:00:00Z");
    CHECK(next_of(new_schedule().on_day_of_month(15).on_fridays(),
                  "2024-01-01T00:00:00Z") == "2024-01-05T00:00:00Z");
    CHECK(next_of(new_schedule().on_mondays().on_month(5),
                  "2024-01-01T00:00:00Z") == "2024-05-06T00:00:00Z");
    // These hung the original: Sunday is 7 and 0; ranges include both ends.
    CHECK(next_of(new_schedule().on_sundays(), "2024-01-01T00:00:00Z") ==
          "2024-01-07T00:00:00Z");
    CHECK(next_of(new_schedule().between_hours(1, 2), "2024-01-01T03:00:00Z") ==
          "2024-01-02T01:00:00Z");
    CHECK(next_of(new_schedule().every_second().on_second(30),
                  "2024-01-01T01:01:31.009Z") == "2024-01-01T01:02:30Z");
    CHECK(next_of(new_schedule().on_day_of_month(29).on_februaries(),
                  "2024-03-01T00:00:00Z") == "2028-02-29T00:00:00Z");
  }

  TEST_CASE("invalid builder schedules are refused with the field named") {
    auto says = [](const schedule_builder& b, const char* text) {
      auto s = b.build();
      REQUIRE_FALSE(s);
      CHECK(code_of(s.error()) == errc::invalid_schedule);
      CHECK_MESSAGE(describe(s.error()).find(text) != std::string::npos,
                    describe(s.error()));
    };
    says(new_schedule().on_second(-1),
         "Seconds must be between 0 and 59, found: -1");
    says(new_schedule().on_second(60),
         "Seconds must be between 0 and 59, found: 60");
    says(new_schedule().on_minute(60),
         "Minutes must be between 0 and 59, found: 60");
    says(new_schedule().on_hour(24),
         "Hours must be between 0 and 23, found: 24");
    says(new_schedule().on_day_of_month(0),
         "Day of month must be between 1 and 31, found: 0");
    says(new_schedule().on_month(13),
         "Month must be between 1 and 12, found: 13");
    says(new_schedule().on_day_of_week(8),
         "Day of week must be between 0 and 7, found: 8");
    says(new_schedule().between_hours(3, 1),
         "Hours: range start must not be after its end, got start:3 end:1");
    says(new_schedule().on_day_of_month(31).on_aprils(), "never fires");
    says(new_schedule().on_day_of_month(30).on_februaries(), "never fires");
    CHECK(new_schedule().on_day_of_month(29).on_januaries().build());
    auto zero = new_interval_seconds(0).build();
    REQUIRE_FALSE(zero);
    CHECK(code_of(zero.error()) == errc::invalid_schedule);
    CHECK_FALSE(new_interval_milliseconds(-5).build());
  }

  TEST_CASE("intervals range from milliseconds to weeks") {
    CHECK(new_interval_milliseconds(500).build()->interval() == 500ms);
    CHECK(new_interval_seconds(10).build()->interval() == 10s);
    CHECK(new_interval_minutes(5).build()->interval() == 5min);
    CHECK(new_interval_hours(2).build()->interval() == 2h);
    CHECK(new_interval_days(1).build()->interval() == 24h);
    CHECK(new_interval_weeks(1).build()->interval() == 168h);
    auto s = new_interval_seconds(10).build();
    CHECK(s->next_after(at("2024-01-01T00:00:00.250Z")) ==
          at("2024-01-01T00:00:10.250Z"));
  }

  TEST_CASE("a schedule a year away is computed field by field") {
    auto c = cron_schedule::parse("0 0 29 2 1"); // Feb 29 or any Monday in Feb
    REQUIRE(c);
    auto rare = cron_schedule::parse("0 0 0 29 2 *");
    REQUIRE(rare);
    auto t0 = std::chrono::steady_clock::now();
    auto n = rare->next_after(at("2024-03-01T00:00:00Z"));
    auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE(n);
    CHECK(to_iso8601(*n) == "2028-02-29T00:00:00.000Z");
    MESSAGE(
        "next run four years away computed in "
        << std::chrono::duration_cast<std::chrono::microseconds>(took).count()
        << " us");
  }

} // TEST_SUITE
