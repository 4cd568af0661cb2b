// Cron schedules on a zone's wall clock, with cronie's daylight-saving
// rule. Every expected instant below was worked out by hand from the
// transitions `zdump -v` prints for the zone (times in UTC).
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/scheduling/cron_schedule.hpp"
#include "bg_jobs/scheduling/schedule.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

struct zone_case {
  const char* zone;
  const char* expr;
  const char* from;
  std::vector<const char*> runs;
  const char* why;
};

timestamp at(const char* text) {
  auto t = parse_iso8601(text);
  REQUIRE_MESSAGE(t, text);
  return *t;
}

const zone_case cases[] = {
    // New York: EST -5 / EDT -4; 2026-03-08 02:00 -> 03:00, 2026-11-01
    // 02:00 -> 01:00.
    {"America/New_York",
     "30 2 * * *",
     "2026-03-07T12:00:00Z",
     {"2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"},
     "fixed time in the gap runs at 03:00 EDT"},
    {"America/New_York",
     "15,45 2 * * *",
     "2026-03-08T05:00:00Z",
     {"2026-03-08T07:00:00Z", "2026-03-09T06:15:00Z"},
     "two fixed slots inside the gap are one run after it"},
    {"America/New_York",
     "30 1 * * *",
     "2026-10-31T12:00:00Z",
     {"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"},
     "fixed time in the repeated hour runs once, at 01:30 EDT"},
    {"America/New_York",
     "30 1 * * *",
     "2026-11-01T05:45:00Z",
     {"2026-11-02T06:30:00Z"},
     "from inside the repeated hour, the second 01:30 is not a run"},
    {"America/New_York",
     "*/30 * * * *",
     "2026-11-01T04:00:00Z",
     {"2026-11-01T04:30:00Z", "2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z",
      "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"},
     "an interval job runs both occurrences of the repeated hour"},
    {"America/New_York",
     "*/15 * * * *",
     "2026-11-01T05:45:00Z",
     {"2026-11-01T06:00:00Z", "2026-11-01T06:15:00Z", "2026-11-01T06:30:00Z",
      "2026-11-01T06:45:00Z", "2026-11-01T07:00:00Z"},
     "from inside the repeated hour, the second occurrences follow"},
    {"America/New_York",
     "*/30 * * * *",
     "2026-03-08T06:00:00Z",
     {"2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"},
     "an interval job skips the slots inside the gap"},
    {"America/New_York",
     "*/20 0 2 * * *",
     "2026-03-08T06:00:00Z",
     {"2026-03-09T06:00:00Z", "2026-03-09T06:00:20Z"},
     "seconds of an interval job inside the gap are skipped"},
    {"America/New_York",
     "30 59 1 * * *",
     "2026-10-31T12:00:00Z",
     {"2026-11-01T05:59:30Z", "2026-11-02T06:59:30Z"},
     "a 6-field fixed time in the repeated hour runs once"},
    {"America/New_York",
     "0 9 * * 1-5",
     "2026-03-06T15:00:00Z",
     {"2026-03-09T13:00:00Z", "2026-03-10T13:00:00Z"},
     "weekdays at 09:00 follow the clock change"},
    // London: GMT 0 / BST +1; 2026-03-29 01:00 -> 02:00, 2026-10-25
    // 02:00 -> 01:00.
    {"Europe/London",
     "30 1 * * *",
     "2026-03-28T12:00:00Z",
     {"2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"},
     "fixed time in the gap runs at 02:00 BST"},
    {"Europe/London",
     "30 1 * * *",
     "2026-10-24T12:00:00Z",
     {"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"},
     "fixed time in the repeated hour runs at 01:30 BST"},
    // Sydney (southern): AEST +10 / AEDT +11; 2026-04-05 03:00 -> 02:00,
    // 2026-10-04 02:00 -> 03:00.
    {"Australia/Sydney",
     "30 2 * * *",
     "2026-04-04T12:00:00Z",
     {"2026-04-04T15:30:00Z", "2026-04-05T16:30:00Z"},
     "fixed time in the repeated hour runs at 02:30 AEDT"},
    {"Australia/Sydney",
     "30 2 * * *",
     "2026-10-03T00:00:00Z",
     {"2026-10-03T16:00:00Z", "2026-10-04T15:30:00Z"},
     "fixed time in the gap runs at 03:00 AEDT"},
    // Lord Howe: +10:30 / +11, a 30-minute change; 2026-04-05 02:00 ->
    // 01:30, 2026-10-04 02:00 -> 02:30.
    {"Australia/Lord_Howe",
     "15 2 * * *",
     "2026-10-03T12:00:00Z",
     {"2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"},
     "fixed time inside the half-hour gap runs at 02:30 +11"},
    {"Australia/Lord_Howe",
     "*/15 * * * *",
     "2026-04-04T14:20:00Z",
     {"2026-04-04T14:30:00Z", "2026-04-04T14:45:00Z", "2026-04-04T15:00:00Z",
      "2026-04-04T15:15:00Z", "2026-04-04T15:30:00Z"},
     "an interval job keeps real spacing through the repeated half hour"},
    // Kathmandu: +05:45 all year.
    {"Asia/Kathmandu",
     "0 9 * * *",
     "2026-06-01T00:00:00Z",
     {"2026-06-01T03:15:00Z", "2026-06-02T03:15:00Z"},
     "a zone without daylight saving at +05:45"},
    // Chatham: +12:45 / +13:45; 2026-04-05 03:45 -> 02:45, 2026-09-27
    // 02:45 -> 03:45.
    {"Pacific/Chatham",
     "0 3 * * *",
     "2026-09-26T00:00:00Z",
     {"2026-09-26T14:00:00Z", "2026-09-27T13:15:00Z"},
     "fixed time inside the gap runs at 03:45 +13:45"},
    {"Pacific/Chatham",
     "0 3 * * *",
     "2026-04-04T00:00:00Z",
     {"2026-04-04T13:15:00Z", "2026-04-05T14:15:00Z"},
     "fixed time in the repeated hour runs at 03:00 +13:45"},
    // Santiago: -04 / -03, changes at midnight; 2026-04-05 00:00 -> 04-04
    // 23:00, 2026-09-06 00:00 -> 01:00.
    {"America/Santiago",
     "0 0 * * *",
     "2026-09-05T12:00:00Z",
     {"2026-09-06T04:00:00Z", "2026-09-07T03:00:00Z"},
     "midnight in a midnight gap runs at 01:00 -03"},
    {"America/Santiago",
     "30 23 * * *",
     "2026-04-04T12:00:00Z",
     {"2026-04-05T02:30:00Z", "2026-04-06T03:30:00Z"},
     "23:30 in the repeated hour before midnight runs once"},
    // Sao Paulo: daylight saving abolished in 2019.
    {"America/Sao_Paulo",
     "0 0 * * *",
     "2026-11-01T00:00:00Z",
     {"2026-11-01T03:00:00Z", "2026-11-02T03:00:00Z"},
     "no change any more: -03 all year"},
    {"America/Sao_Paulo",
     "30 0 * * *",
     "2018-11-03T12:00:00Z",
     {"2018-11-04T03:00:00Z", "2018-11-05T02:30:00Z"},
     "2018's midnight gap still applies to 2018"},
};

} // namespace

TEST_SUITE("time zones") {

  TEST_CASE("cron schedules follow the zone's wall clock and cronie's rule") {
    for (auto& c : cases) {
      CAPTURE(c.zone);
      CAPTURE(c.expr);
      CAPTURE(c.from);
      INFO(c.why);
      auto plain = cron_schedule::parse(c.expr);
      REQUIRE(plain);
      auto s = plain->in_time_zone(c.zone);
      REQUIRE_MESSAGE(s, describe(s.error()));
      auto t = at(c.from);
      for (auto expected : c.runs) {
        auto next = s->next_after(t);
        REQUIRE(next);
        CHECK(to_iso8601(*next) == to_iso8601(at(expected)));
        t = *next;
      }
    }
  }

  TEST_CASE("a CRON_TZ or TZ prefix names the zone") {
    for (auto prefix : {"CRON_TZ=", "TZ="}) {
      auto s = cron_schedule::parse(std::string{prefix} +
                                    "America/New_York 30 2 * * *");
      REQUIRE(s);
      CHECK(s->time_zone() == "America/New_York");
      CHECK(s->fixed_time());
      CHECK(to_iso8601(*s->next_after(at("2026-03-07T12:00:00Z"))) ==
            "2026-03-08T07:00:00.000Z");
    }
    CHECK(cron_schedule::parse("*/5 * * * *")->fixed_time() == false);
    CHECK(cron_schedule::parse("@hourly")->fixed_time() == false);
    CHECK(cron_schedule::parse("@daily")->fixed_time());
    CHECK(cron_schedule::parse("0 9-17 * * *")->fixed_time());
  }

  TEST_CASE("the builder vocabulary takes a zone") {
    auto s = new_schedule()
                 .on_minute(30)
                 .on_hour(2)
                 .in_time_zone("America/New_York")
                 .build();
    REQUIRE(s);
    CHECK(to_iso8601(*s->next_after(at("2026-03-07T12:00:00Z"))) ==
          "2026-03-08T07:00:00.000Z");
    CHECK(s->to_string().find("in America/New_York") != std::string::npos);
  }

  TEST_CASE("unknown or malformed zones are refused with the zone named") {
    for (auto zone :
         {"Mars/Olympus", "America/New York", "UTC+25", "", "../../etc/passwd",
          "/etc/localtime", "America//X", "Europe/Berlin\n"}) {
      CAPTURE(zone);
      auto s = cron_schedule::parse("0 0 * * *")->in_time_zone(zone);
      REQUIRE_FALSE(s);
      CHECK(code_of(s.error()) == errc::invalid_schedule);
      CHECK(describe(s.error()).find("time zone") != std::string::npos);
      CHECK(describe(s.error()).find('\n') == std::string::npos);
    }
    auto prefixed = cron_schedule::parse("CRON_TZ=Mars/Olympus 0 0 * * *");
    REQUIRE_FALSE(prefixed);
    CHECK(describe(prefixed.error()).find("Mars/Olympus") != std::string::npos);
    CHECK_FALSE(cron_schedule::parse("CRON_TZ=Europe/Berlin"));
    CHECK_FALSE(new_schedule().in_time_zone("Nowhere/Land").build());
    // UTC by name is UTC.
    auto utc = cron_schedule::parse("0 0 * * *")->in_time_zone("UTC");
    REQUIRE(utc);
    CHECK(utc->time_zone().empty());
  }

} // TEST_SUITE
