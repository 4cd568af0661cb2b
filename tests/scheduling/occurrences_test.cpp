// What a schedule enqueues next: overlap policies, missed runs and bounded
// catch-up, decided on times given by the test (no clock, no store). And
// schedules as data: their definitions, checked strictly.
#include <chrono>
#include <vector>

#include <doctest/doctest.h>

#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/scheduling/detail/occurrences.hpp"
#include "bg_jobs/scheduling/schedule_definition.hpp"

using namespace bg_jobs;
using namespace bg_jobs::detail;
using namespace std::chrono_literals;

namespace {

timestamp at(const char* iso) {
  auto t = parse_iso8601(iso);
  REQUIRE_MESSAGE(t, iso);
  return *t;
}

schedule cron(const char* expr) {
  auto s = schedule::cron(expr);
  REQUIRE_MESSAGE(s, expr);
  return *s;
}

/// An occurrence at `t` that finished at `end`.
scheduled_run finished(timestamp t, timestamp end) {
  scheduled_run r;
  r.scheduled_at = t;
  r.job_id = 1;
  r.finished_at = end;
  return r;
}

/// Plays the scheduler: enqueues what `next_occurrence_after` gives, runs
/// each occurrence for `run_for` as soon as it is due (or at once when
/// late), until the next one lies ahead of the clock; returns the times
/// run. `now` moves with the runs.
std::vector<timestamp> play(const schedule& plan, const occurrence_rules& rules,
                            std::optional<scheduled_run> last, timestamp& now,
                            timestamp* ahead = nullptr,
                            std::chrono::milliseconds run_for = 1s) {
  std::vector<timestamp> ran;
  for (int i = 0; i < 10000; ++i) {
    auto next = next_occurrence_after(plan, rules, last, now);
    REQUIRE(next);
    if (next->at > now) {
      if (ahead)
        *ahead = next->at;
      return ran; // waits for its time
    }
    ran.push_back(next->at);
    now += run_for;
    scheduled_run r = finished(next->at, now);
    r.catch_up_left = next->catch_up_left;
    r.skip_until = next->skip_until;
    last = r;
  }
  FAIL("the schedule never settled");
  return ran;
}

} // namespace

TEST_SUITE("occurrences") {

  TEST_CASE("a new schedule starts with its next time and never backfills") {
    auto plan = cron("0 * * * * *");
    auto next = next_occurrence_after(plan, {}, std::nullopt,
                                      at("2026-01-01T08:00:30Z"));
    REQUIRE(next);
    CHECK(next->at == at("2026-01-01T08:01:00Z"));
    CHECK(next->catch_up_left == 0);
  }

  TEST_CASE("nothing while the previous run waits, and with allow the next "
            "once it runs") {
    auto plan = cron("0 * * * * *");
    scheduled_run waiting;
    waiting.scheduled_at = at("2026-01-01T08:01:00Z");
    waiting.pending = true;
    auto now = at("2026-01-01T08:01:10Z");
    for (auto o : {overlap_policy::skip, overlap_policy::one_waiting,
                   overlap_policy::allow}) {
      occurrence_rules rules;
      rules.overlap = o;
      CHECK_FALSE(next_occurrence_after(plan, rules, waiting, now));
      auto running = waiting;
      running.running = true;
      auto next = next_occurrence_after(plan, rules, running, now);
      if (o == overlap_policy::allow) {
        REQUIRE(next);
        CHECK(next->at == at("2026-01-01T08:02:00Z"));
      } else {
        CHECK_FALSE(next);
      }
    }
  }

  TEST_CASE("times that fell due during a run: skip drops them, one_waiting "
            "runs the latest once") {
    auto plan = cron("0 * * * * *");
    // The 08:01 run took until 08:04:30: 08:02, 08:03 and 08:04 fell due.
    auto last = finished(at("2026-01-01T08:01:00Z"), at("2026-01-01T08:04:30Z"));
    auto now = at("2026-01-01T08:04:31Z");
    occurrence_rules rules;
    rules.overlap = overlap_policy::skip;
    auto next = next_occurrence_after(plan, rules, last, now);
    REQUIRE(next);
    CHECK(next->at == at("2026-01-01T08:05:00Z"));
    rules.overlap = overlap_policy::one_waiting;
    next = next_occurrence_after(plan, rules, last, now);
    REQUIRE(next);
    CHECK(next->at == at("2026-01-01T08:04:00Z"));
    // That one run ends the overlap: the schedule goes on at its times.
    auto after = finished(next->at, at("2026-01-01T08:04:32Z"));
    next = next_occurrence_after(plan, rules, after, at("2026-01-01T08:04:32Z"));
    REQUIRE(next);
    CHECK(next->at == at("2026-01-01T08:05:00Z"));
  }

  TEST_CASE("a time late by less than late_after still runs") {
    auto plan = cron("0 * * * * *");
    auto last = finished(at("2026-01-01T08:01:00Z"), at("2026-01-01T08:01:01Z"));
    auto next = next_occurrence_after(plan, {}, last, at("2026-01-01T08:02:40Z"));
    REQUIRE(next);
    CHECK(next->at == at("2026-01-01T08:02:00Z"));
  }

  TEST_CASE("missed runs: skip resumes ahead, run_latest_once runs the "
            "latest") {
    auto plan = cron("0 * * * * *");
    auto last = finished(at("2026-01-01T08:01:00Z"), at("2026-01-01T08:01:01Z"));
    auto now = at("2026-01-01T09:41:30Z");
    occurrence_rules rules;
    rules.missed = missed_runs::skip;
    auto next = next_occurrence_after(plan, rules, last, now);
    REQUIRE(next);
    // 09:41 is 30 s late, less than late_after: not missed.
    CHECK(next->at == at("2026-01-01T09:41:00Z"));
    rules.late_after = 10s;
    next = next_occurrence_after(plan, rules, last, now);
    REQUIRE(next);
    CHECK(next->at == at("2026-01-01T09:42:00Z"));
    rules.late_after = 1min;
    rules.missed = missed_runs::run_latest_once;
    next = next_occurrence_after(plan, rules, last, now);
    REQUIRE(next);
    CHECK(next->at == at("2026-01-01T09:41:00Z"));
  }

  TEST_CASE("catch-up of 100 missed runs with a cap of 10 runs 10, the "
            "oldest first, then goes on at its times") {
    auto plan = cron("0 * * * * *");
    // The last run was 08:01; the nodes were down for 100 minutes.
    auto last = finished(at("2026-01-01T08:01:00Z"), at("2026-01-01T08:01:01Z"));
    auto now = at("2026-01-01T09:41:30Z");
    occurrence_rules rules;
    rules.missed = missed_runs::catch_up;
    rules.catch_up_max = 10;
    timestamp ahead;
    auto ran = play(plan, rules, last, now, &ahead);
    REQUIRE(ran.size() == 10);
    for (size_t i = 0; i < ran.size(); ++i) {
      CAPTURE(i);
      CHECK(ran[i] == at("2026-01-01T08:02:00Z") + std::chrono::minutes{i});
    }
    CHECK(ahead == at("2026-01-01T09:42:00Z"));
  }

  TEST_CASE("catch-up under the cap runs every missed time") {
    auto plan = cron("0 * * * * *");
    auto last = finished(at("2026-01-01T08:01:00Z"), at("2026-01-01T08:01:01Z"));
    auto now = at("2026-01-01T08:06:30Z");
    occurrence_rules rules;
    rules.missed = missed_runs::catch_up;
    rules.catch_up_max = 10;
    auto ran = play(plan, rules, last, now);
    // 08:02 to 08:06 were missed; the next time, 08:07, lies ahead.
    REQUIRE(ran.size() == 5);
    CHECK(ran.front() == at("2026-01-01T08:02:00Z"));
    CHECK(ran.back() == at("2026-01-01T08:06:00Z"));
  }

  TEST_CASE("catch-up takes none older than its window") {
    auto plan = cron("0 * * * * *");
    auto last = finished(at("2026-01-01T08:01:00Z"), at("2026-01-01T08:01:01Z"));
    auto now = at("2026-01-01T09:41:30Z");
    occurrence_rules rules;
    rules.missed = missed_runs::catch_up;
    rules.catch_up_max = 1000;
    rules.catch_up_window = 5min;
    auto ran = play(plan, rules, last, now);
    REQUIRE(ran.size() == 5);
    CHECK(ran.front() == at("2026-01-01T09:37:00Z"));
    CHECK(ran.back() == at("2026-01-01T09:41:00Z"));
  }

  TEST_CASE("a catch-up far back stays bounded in work") {
    // Every second, a year missed, a cap of 3.
    auto plan = cron("* * * * * *");
    auto last =
        finished(at("2025-01-01T00:00:00Z"), at("2025-01-01T00:00:00.500Z"));
    auto now = at("2026-01-01T00:00:00.500Z");
    occurrence_rules rules;
    rules.missed = missed_runs::catch_up;
    rules.catch_up_max = 3;
    rules.catch_up_window = std::chrono::hours{24 * 366};
    auto next = next_occurrence_after(plan, rules, last, now);
    REQUIRE(next);
    CHECK(next->at == at("2025-01-01T00:00:01Z"));
    CHECK(next->catch_up_left == 2);
    REQUIRE(next->skip_until);
    CHECK(*next->skip_until == at("2026-01-01T00:00:00Z"));
  }

  TEST_CASE("intervals count from the end of a run, and with allow from its "
            "time") {
    auto plan = schedule::every(10s);
    REQUIRE(plan);
    auto last = finished(at("2026-01-01T08:00:00Z"), at("2026-01-01T08:00:25Z"));
    auto now = at("2026-01-01T08:00:26Z");
    auto next = next_occurrence_after(*plan, {}, last, now);
    REQUIRE(next);
    CHECK(next->at == at("2026-01-01T08:00:35Z"));
    occurrence_rules allow;
    allow.overlap = overlap_policy::allow;
    scheduled_run running;
    running.scheduled_at = at("2026-01-01T08:00:00Z");
    running.pending = running.running = true;
    next = next_occurrence_after(*plan, allow, running,
                                 at("2026-01-01T08:00:05Z"));
    REQUIRE(next);
    CHECK(next->at == at("2026-01-01T08:00:10Z"));
  }

  TEST_CASE("latest_at_or_before finds sparse and dense times") {
    auto yearly = cron("0 0 0 1 1 *");
    auto t = latest_at_or_before(yearly, at("2026-06-01T00:00:00Z"),
                                 at("2020-01-01T00:00:00Z"));
    REQUIRE(t);
    CHECK(*t == at("2026-01-01T00:00:00Z"));
    CHECK_FALSE(latest_at_or_before(yearly, at("2026-06-01T00:00:00Z"),
                                    at("2026-01-01T00:00:00Z")));
  }
}

TEST_SUITE("schedule definitions") {

  schedule_definition valid() {
    schedule_definition d;
    d.name = "nightly-report";
    d.job = "report";
    d.cron = "0 30 2 * * *";
    d.time_zone = "Europe/Berlin";
    d.payload = {{"tenant", 42}};
    d.missed = missed_runs::catch_up;
    d.catch_up_max = 5;
    return d;
  }

  TEST_CASE("a definition round-trips through JSON") {
    auto d = valid();
    REQUIRE_FALSE(d.validate());
    auto back = schedule_definition::from_json(d.to_json());
    REQUIRE_MESSAGE(back, (back ? "" : describe(back.error())));
    CHECK(back->to_json() == d.to_json());
    CHECK(back->request().payload() == d.payload);
  }

  TEST_CASE("bad definitions are refused, naming the fault") {
    auto refused = [](schedule_definition d, const char* part) {
      auto err = d.validate();
      REQUIRE_MESSAGE(err, part);
      CHECK_MESSAGE(message_of(err).find(part) != std::string::npos,
                    message_of(err));
    };
    auto d = valid();
    d.name = "bad\nname";
    refused(d, "schedule name");
    d = valid();
    d.job = "";
    refused(d, "job name");
    d = valid();
    d.every = 5s;
    refused(d, "either a cron expression or a positive interval");
    d = valid();
    d.cron.clear();
    refused(d, "either a cron expression or a positive interval");
    d = valid();
    d.cron = "61 * * * * *";
    refused(d, "nightly-report");
    d = valid();
    d.time_zone = "Mars/Olympus";
    refused(d, "nightly-report");
    d = valid();
    d.catch_up_max = 0;
    refused(d, "catch_up_max");
    d = valid();
    d.catch_up_max = 1001;
    refused(d, "catch_up_max");
    d = valid();
    d.catch_up_window = -1s;
    refused(d, "catch_up_window");
    d = valid();
    d.late_after = 0s;
    refused(d, "late_after");
    d = valid();
    d.priority = 10;
    refused(d, "priority");
    d = valid();
    d.cron.clear();
    d.time_zone.clear();
    d.every = 1min;
    refused(d, "catch_up applies to cron schedules");
  }

  TEST_CASE("JSON with unknown fields, wrong types or out of range numbers "
            "is refused") {
    auto base = valid().to_json();
    auto refused = [](nlohmann::json j, const char* part) {
      auto d = schedule_definition::from_json(j);
      REQUIRE_FALSE_MESSAGE(d, j.dump());
      CHECK_MESSAGE(message_of(d.error()).find(part) != std::string::npos,
                    message_of(d.error()));
    };
    auto j = base;
    j["extra"] = 1;
    refused(j, "unknown field");
    j = base;
    j["catch_up_max"] = "10";
    refused(j, "must be an integer");
    j = base;
    j["catch_up_max"] = 1.5;
    refused(j, "must be an integer");
    j = base;
    j["catch_up_max"] = 18446744073709551615ull;
    refused(j, "out of range");
    j = base;
    j["late_after_ms"] = -5;
    refused(j, "late_after_ms");
    j = base;
    j["overlap"] = "sometimes";
    refused(j, "overlap must be");
    j = base;
    j["missed"] = 3;
    refused(j, "must be a string");
    refused(nlohmann::json::array(), "JSON object");
  }

  TEST_CASE("definitions as text: too long, too deep or not JSON are "
            "refused") {
    auto ok = schedule_definition::parse(valid().to_json().dump());
    REQUIRE_MESSAGE(ok, (ok ? "" : describe(ok.error())));
    auto refused = [](const std::string& text, const char* part) {
      auto d = schedule_definition::parse(text);
      REQUIRE_FALSE(d);
      CHECK(code_of(d.error()) == errc::invalid_argument);
      CHECK_MESSAGE(message_of(d.error()).find(part) != std::string::npos,
                    message_of(d.error()));
    };
    refused(std::string(200000, '[') + std::string(200000, ']'),
            "nests too deeply");
    refused(std::string(2 * 1024 * 1024, ' '), "bytes long");
    refused("{\"name\": ", "not JSON");
    refused("[]", "JSON object");
  }
}
