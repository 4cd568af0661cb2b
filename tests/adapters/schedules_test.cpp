// Schedules kept as data on every store: stored, listed, declared or added
// at run time, removed with their waiting run, triggered now, and the
// catch-up an occurrence records. Bad input changes nothing.
#include <set>

#include <doctest/doctest.h>

#include "adapters/stores.hpp"
#include "bg_jobs/control/detail/control_plane.hpp"
#include "bg_jobs/core/clock.hpp"
#include "support/expect.hpp"
#include "support/store_reads.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

using test::error_of;
using test::require_ok;
using test::value_of;

const timestamp t0 = *parse_iso8601("2026-03-01T10:00:00Z");

std::shared_ptr<manual_clock> pinned() {
  return std::make_shared<manual_clock>(t0);
}

stored_schedule row(std::string name, bool declared,
                    std::string definition = R"({"job":"tick"})") {
  stored_schedule s;
  s.name = std::move(name);
  s.declared = declared;
  s.definition = std::move(definition);
  return s;
}

schedule_definition every_minute(std::string name, std::string job = "tick") {
  schedule_definition d;
  d.name = std::move(name);
  d.job = std::move(job);
  d.cron = "0 * * * * *";
  d.payload = {{"from", "schedule"}};
  return d;
}

/// Enqueues the occurrence of `schedule` at `at` for job `job`.
job occurrence(db_adapter& db, const std::string& schedule,
               const std::string& job_name, timestamp at,
               std::optional<timestamp> previous = std::nullopt) {
  scheduled_params p{job_request{job_name}, at, previous};
  p.schedule = schedule;
  auto j = value_of(db.enqueue_scheduled(p));
  REQUIRE(j);
  return *j;
}

} // namespace

TEST_SUITE("schedules") {

  TEST_CASE_TEMPLATE("a schedule is stored, listed, changed and removed", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    CHECK(value_of(db->list_schedules()).empty());
    CHECK(value_of(db->put_schedule(row("b", false))));
    CHECK(value_of(db->put_schedule(row("a", true))));
    auto all = value_of(db->list_schedules());
    REQUIRE(all.size() == 2);
    CHECK(all[0].name == "a");
    CHECK(all[0].declared);
    CHECK(all[0].seen_at == t0);
    CHECK(all[1].name == "b");
    CHECK_FALSE(all[1].declared);
    // A change is not an addition; the time of the change is kept.
    clk->advance(5s);
    CHECK_FALSE(value_of(db->put_schedule(row("b", false, R"({"job":"x"})"))));
    all = value_of(db->list_schedules());
    CHECK(all[1].definition == R"({"job":"x"})");
    CHECK(all[1].updated_at == t0 + 5s);
    // Declaring again unchanged marks it seen, not changed.
    clk->advance(5s);
    CHECK_FALSE(value_of(db->put_schedule(row("a", true))));
    all = value_of(db->list_schedules());
    CHECK(all[0].seen_at == t0 + 10s);
    CHECK(all[0].updated_at == t0);
    auto gone = value_of(db->remove_schedule("b"));
    CHECK(gone.removed);
    CHECK_FALSE(gone.cancelled_job);
    CHECK(value_of(db->list_schedules()).size() == 1);
    CHECK_FALSE(value_of(db->remove_schedule("b")).removed);
  }

  TEST_CASE_TEMPLATE("a declared schedule cannot be replaced or removed at "
                     "run time",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    (void) value_of(db->put_schedule(row("nightly", true)));
    CHECK(error_of(db->put_schedule(row("nightly", false, R"({"job":"y"})"))) ==
          errc::invalid_state);
    CHECK(error_of(db->remove_schedule("nightly")) == errc::invalid_state);
    auto all = value_of(db->list_schedules());
    REQUIRE(all.size() == 1);
    CHECK(all[0].definition == R"({"job":"tick"})");
    // Code wins: a declaration replaces a schedule added at run time.
    (void) value_of(db->put_schedule(row("added", false)));
    CHECK_FALSE(value_of(db->put_schedule(row("added", true))));
    CHECK(value_of(db->list_schedules())[0].declared);
  }

  TEST_CASE_TEMPLATE("removing a schedule cancels its waiting run and "
                     "forgets its occurrences and pause",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    (void) value_of(db->put_schedule(row("tick-1", false)));
    auto first = occurrence(*db, "tick-1", "tick", t0 + 1min);
    auto second = occurrence(*db, "tick-1", "tick", t0 + 2min, t0 + 1min);
    auto gone = value_of(db->remove_schedule("tick-1"));
    CHECK(gone.removed);
    REQUIRE(gone.cancelled_job);
    // A scheduler keeps one ahead; here two waited, and both go.
    CHECK((*gone.cancelled_job == first.id || *gone.cancelled_job == second.id));
    for (auto& j : {first, second}) {
      auto rec = value_of(db->get_job(j.id));
      CHECK(rec.state == job_state::cancelled);
      CHECK(rec.error.value_or("") == "the schedule was removed");
    }
    CHECK_FALSE(value_of(db->last_scheduled_run("tick-1")));
    // Added again, it starts afresh; removed while paused, its pause goes.
    CHECK(value_of(db->put_schedule(row("tick-1", false))));
    CHECK_FALSE(value_of(db->last_scheduled_run("tick-1")));
    require_ok(db->pause(pause_kind::schedule, "tick-1"));
    CHECK(value_of(db->remove_schedule("tick-1")).removed);
    CHECK(value_of(db->pauses()).empty());
  }

  TEST_CASE_TEMPLATE("a running occurrence survives its schedule's removal",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    (void) value_of(db->put_schedule(row("tick-1", false)));
    auto j = occurrence(*db, "tick-1", "tick", t0);
    auto r = value_of(db->reserve_jobs({{"tick"}, 1, "n/q/1", "q"}));
    REQUIRE(r.size() == 1);
    auto gone = value_of(db->remove_schedule("tick-1"));
    CHECK(gone.removed);
    CHECK_FALSE(gone.cancelled_job);
    require_ok(db->move_job_to_succeeded(r[0]));
    CHECK(value_of(db->get_job(j.id)).state == job_state::succeeded);
  }

  TEST_CASE_TEMPLATE("a stale declared schedule is removed only while it "
                     "stays unseen",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    (void) value_of(db->put_schedule(row("gone-from-code", true)));
    (void) value_of(db->put_schedule(row("added", false)));
    auto waiting = occurrence(*db, "gone-from-code", "tick", t0 + 1min);
    clk->advance(2min);
    // Seen since the cutoff: kept.
    CHECK_FALSE(value_of(db->remove_schedule("gone-from-code", t0 - 1s)).removed);
    // Added at run time: never removed as stale.
    CHECK_FALSE(value_of(db->remove_schedule("added", t0 + 1min)).removed);
    auto gone = value_of(db->remove_schedule("gone-from-code", t0 + 1min));
    CHECK(gone.removed);
    REQUIRE(gone.cancelled_job);
    CHECK(*gone.cancelled_job == waiting.id);
    CHECK(value_of(db->list_schedules()).size() == 1);
  }

  TEST_CASE_TEMPLATE("an occurrence is recorded under its schedule's name "
                     "with its catch-up",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    scheduled_params p{job_request{"report", {{"tenant", 7}}}, t0 - 10min,
                       std::nullopt};
    p.schedule = "report-tenant-7";
    p.catch_up_left = 4;
    p.skip_until = t0 - 1min;
    auto j = value_of(db->enqueue_scheduled(p));
    REQUIRE(j);
    CHECK(j->name == "report");
    CHECK_FALSE(value_of(db->last_scheduled_run("report")));
    auto run = value_of(db->last_scheduled_run("report-tenant-7"));
    REQUIRE(run);
    CHECK(run->job_id == j->id);
    CHECK(run->pending);
    CHECK_FALSE(run->running);
    CHECK(run->catch_up_left == 4);
    CHECK(run->skip_until == t0 - 1min);
    CHECK(run->enqueued_at == t0);
    // A catch-up marked on a waiting occurrence, not on a running one.
    CHECK(value_of(
        db->mark_scheduled_run("report-tenant-7", t0 - 10min, 9, t0)));
    run = value_of(db->last_scheduled_run("report-tenant-7"));
    CHECK(run->catch_up_left == 9);
    CHECK(run->skip_until == t0);
    auto r = value_of(db->reserve_jobs({{"report"}, 1, "n/q/1", "q"}));
    REQUIRE(r.size() == 1);
    run = value_of(db->last_scheduled_run("report-tenant-7"));
    CHECK(run->running);
    CHECK_FALSE(value_of(
        db->mark_scheduled_run("report-tenant-7", t0 - 10min, 1, t0)));
    CHECK(value_of(db->last_scheduled_run("report-tenant-7"))->catch_up_left ==
          9);
  }

  TEST_CASE_TEMPLATE("a trigger replaces the waiting run, and waits for a "
                     "running one unless the schedule allows overlap",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    detail::control_plane cp{*db};
    auto def = every_minute("minutely");
    REQUIRE(value_of(cp.put_schedule(def)));
    auto waiting = occurrence(*db, "minutely", "tick", t0 + 1min);
    clk->advance(10s);
    auto now_run = value_of(cp.trigger_schedule("minutely"));
    CHECK(now_run.available_at == t0 + 10s);
    CHECK(now_run.payload == def.payload);
    CHECK(error_of(db->get_job(waiting.id)) == errc::job_not_found);
    auto last = value_of(db->last_scheduled_run("minutely"));
    REQUIRE(last);
    CHECK(last->scheduled_at == t0 + 10s);
    CHECK(last->job_id == now_run.id);
    // It runs; another trigger is refused while it does.
    auto r = value_of(db->reserve_jobs({{"tick"}, 1, "n/q/1", "q"}));
    REQUIRE(r.size() == 1);
    CHECK(error_of(cp.trigger_schedule("minutely")) == errc::invalid_state);
    CHECK(value_of(test::enqueued(*db, "tick")).empty());
    def.overlap = overlap_policy::allow;
    CHECK_FALSE(value_of(cp.put_schedule(def)));
    clk->advance(1s);
    auto beside = value_of(cp.trigger_schedule("minutely"));
    CHECK(beside.id != now_run.id);
    CHECK(value_of(test::enqueued(*db, "tick")).size() == 1);
    // A paused schedule is triggered all the same.
    require_ok(cp.set_paused(pause_kind::schedule, "minutely", true));
    clk->advance(1s);
    require_ok(db->move_job_to_succeeded(r[0]));
    CHECK(value_of(cp.trigger_schedule("minutely")).available_at ==
          t0 + 12s);
    auto fx = cp.take_effects();
    CHECK(std::count(fx.wake.begin(), fx.wake.end(), "tick") == 3);
  }

  TEST_CASE_TEMPLATE("bad schedules change nothing", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    detail::control_plane cp{*db};
    auto refused = [&](schedule_definition d, errc code) {
      CAPTURE(d.to_json().dump());
      CHECK(error_of(cp.put_schedule(d)) == code);
    };
    auto d = every_minute("");
    refused(d, errc::invalid_argument);
    d = every_minute(std::string(300, 'x'));
    refused(d, errc::invalid_argument);
    d = every_minute("bad\xff");
    refused(d, errc::invalid_argument);
    d = every_minute("ok", "");
    refused(d, errc::invalid_argument);
    d = every_minute("ok");
    d.cron = "0 0 30 2 *";
    refused(d, errc::invalid_schedule);
    d = every_minute("ok");
    d.time_zone = "../../etc/passwd";
    refused(d, errc::invalid_schedule);
    d = every_minute("ok");
    d.catch_up_max = -1;
    refused(d, errc::invalid_argument);
    CHECK(error_of(db->put_schedule(row("\x01", false))) ==
          errc::invalid_argument);
    CHECK(value_of(db->list_schedules()).empty());
    CHECK(error_of(cp.remove_schedule("nothing")) == errc::invalid_argument);
    CHECK(error_of(cp.trigger_schedule("nothing")) == errc::invalid_argument);
    CHECK(value_of(test::enqueued(*db, "tick")).empty());
    CHECK(cp.take_effects().events.empty());
  }

  TEST_CASE_TEMPLATE("operators see each schedule with its pause and last "
                     "run",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    detail::control_plane cp{*db};
    REQUIRE(value_of(cp.put_schedule(every_minute("a"))));
    (void) value_of(db->put_schedule(row("broken", false, "{not json")));
    auto j = occurrence(*db, "a", "tick", t0 + 1min);
    require_ok(cp.set_paused(pause_kind::schedule, "a", true));
    auto all = value_of(cp.schedules());
    REQUIRE(all.size() == 2);
    CHECK(all[0].definition.name == "a");
    CHECK(all[0].definition.cron == "0 * * * * *");
    CHECK(all[0].paused);
    REQUIRE(all[0].last_at);
    CHECK(*all[0].last_at == t0 + 1min);
    CHECK(all[0].last_job == j.id);
    // The pause skipped the waiting run.
    CHECK(all[0].last_state == "finished");
    CHECK(all[1].definition.name == "broken");
    CHECK_FALSE(all[1].problem.empty());
    auto back = schedule_info::from_json(all[0].to_json());
    REQUIRE(back);
    CHECK(back->to_json() == all[0].to_json());
  }

  TEST_CASE_TEMPLATE("a change of the schedules wakes other processes' "
                     "listeners, and a declaration unchanged does not",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto listener = store.fresh();
    REQUIRE(listener->caps().supports_listen_notify);
    value_of(listener->await_wakeups(0ms)); // starts listening
    auto other = store.connect();
    // What the listener hears within `wait`.
    auto heard = [&](std::chrono::milliseconds wait) {
      std::set<std::string> names;
      auto until = std::chrono::steady_clock::now() + wait;
      while (std::chrono::steady_clock::now() < until &&
             names.count(schedules_changed) == 0)
        for (auto& n : value_of(listener->await_wakeups(50ms)))
          names.insert(n);
      return names.count(schedules_changed) > 0;
    };
    (void) value_of(other->put_schedule(row("declared", true)));
    CHECK(heard(5s));
    (void) value_of(other->put_schedule(row("declared", true)));
    CHECK_FALSE(heard(300ms));
    (void) value_of(other->put_schedule(row("added", false)));
    CHECK(heard(5s));
    CHECK(value_of(other->remove_schedule("added")).removed);
    CHECK(heard(5s));
  }
}
