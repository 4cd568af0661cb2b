// Scheduled jobs in the runtime: intervals, cron schedules, restarts and
// several nodes sharing one store.
#include <mutex>
#include <set>
#include <thread>

#include <caf/scoped_actor.hpp>
#include <pqxx/pqxx>

#include "actors/runtime_fixture.hpp"
#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"
#include "support/pg.hpp"
#include "support/store_reads.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;
using test::runtime_fixture;
using test::sqlite_runtime_fixture;

namespace {

/// Records when each run of a scheduled job started and ended.
struct run_log {
  std::mutex mtx;
  std::vector<std::pair<timestamp, timestamp>> runs;
  std::vector<job> jobs;

  worker make(std::string name, std::chrono::milliseconds pause = 0ms) {
    return worker{std::move(name), [this, pause](const job& j) {
                    auto start = clock::system()->now();
                    std::this_thread::sleep_for(pause);
                    std::lock_guard<std::mutex> guard{mtx};
                    runs.emplace_back(start, clock::system()->now());
                    jobs.push_back(j);
                  }};
  }

  size_t size() {
    std::lock_guard<std::mutex> guard{mtx};
    return runs.size();
  }
};

/// The number of runs in `logs` and of distinct occurrences among them.
std::pair<size_t, size_t> runs_and_occurrences(std::vector<run_log*> logs) {
  std::set<timestamp> due;
  size_t total = 0;
  for (auto* r : logs) {
    std::lock_guard<std::mutex> guard{r->mtx};
    for (auto& j : r->jobs)
      due.insert(j.available_at);
    total += r->jobs.size();
  }
  return {total, due.size()};
}

} // namespace

TEST_SUITE("scheduler") {

  BG_JOBS_RUNTIME_CASE(
      "an interval job runs again an interval after its last run "
      "ended") {
    run_log log_runs;
    auto bg =
        start(make_builder().with_scheduled_job(scheduled_job_spec{
            log_runs.make("tick", 30ms), new_interval_milliseconds(100)}
                                                    .with_poll_interval(50ms)));
    REQUIRE(test::eventually([&] { return log_runs.size() >= 4; }));
    REQUIRE(bg.shutdown());
    std::lock_guard<std::mutex> guard{log_runs.mtx};
    for (size_t i = 1; i < log_runs.runs.size(); ++i) {
      auto gap = log_runs.runs[i].first - log_runs.runs[i - 1].second;
      CAPTURE(i);
      CHECK(gap >= 99ms);
    }
  }

  BG_JOBS_RUNTIME_CASE("a cron job runs at its matching times") {
    // A manual clock: each occurrence falls due when the test moves time.
    auto clk = std::make_shared<manual_clock>(
        *parse_iso8601("2025-06-01T08:00:00.400Z"));
    std::mutex mtx;
    std::vector<std::pair<timestamp, timestamp>> runs; // due, started
    auto bg = start(make_builder(clk).with_scheduled_job(scheduled_job_spec{
        worker{"every_second",
               [&](const job& j) {
                 std::lock_guard<std::mutex> guard{mtx};
                 runs.emplace_back(j.available_at, clk->now());
               }},
        std::string{"*/2 * * * * *"}}.with_poll_interval(20ms)));
    auto count = [&] {
      std::lock_guard<std::mutex> guard{mtx};
      return runs.size();
    };
    REQUIRE(log.wait_for(event_kind::job_enqueued));
    for (size_t n = 1; n <= 3; ++n) {
      CHECK(count() == n - 1);
      clk->advance(2s);
      REQUIRE(test::eventually([&] { return count() == n; }));
      // The next occurrence is enqueued before the clock moves again.
      REQUIRE(log.wait_for(event_kind::job_enqueued, n + 1));
    }
    REQUIRE(bg.shutdown());
    std::lock_guard<std::mutex> guard{mtx};
    auto t0 = *parse_iso8601("2025-06-01T08:00:00Z");
    for (size_t i = 0; i < runs.size(); ++i) {
      CAPTURE(i);
      CHECK(runs[i].first == t0 + std::chrono::seconds{2 * (i + 1)});
      CHECK(runs[i].second >= runs[i].first);
      CHECK(runs[i].second - runs[i].first < 2s);
    }
  }

  BG_JOBS_RUNTIME_CASE(
      "a restart neither skips nor doubles the next occurrence") {
    auto spec = scheduled_job_spec{worker{"hourly", [](const job&) {}},
                                   new_interval_hours(1)};
    {
      auto bg = start(make_builder().with_scheduled_job(spec));
      REQUIRE(log.wait_for(event_kind::job_enqueued));
      REQUIRE(bg.shutdown());
    }
    auto pending = test::enqueued(*store(), "hourly");
    REQUIRE(pending);
    REQUIRE(pending->size() == 1);
    auto due = pending->front().available_at;
    auto first_id = pending->front().id;
    {
      auto bg = start(make_builder().with_scheduled_job(spec));
      // The scheduler has looked at the store once its queue polled.
      REQUIRE(log.wait_for(event_kind::queue_polling_started, 2));
      REQUIRE(test::eventually([&] {
        auto run = store()->last_scheduled_run("hourly");
        return run && *run && (*run)->scheduled_at == due;
      }));
      bg.flush_events();
      REQUIRE(bg.shutdown());
    }
    pending = test::enqueued(*store(), "hourly");
    REQUIRE(pending);
    if (pending->size() != 1) {
      // Where the occurrence went, for the failure below.
      auto where = store()->get_job(first_id);
      MESSAGE("job " << first_id << ": "
                     << (where ? std::string{to_string(where->state)} + " by " +
                                     where->reserved_by.value_or("-") +
                                     ", error " + where->error.value_or("-")
                               : test::why(where)));
      for (auto& e : log.events())
        if (e.job && e.job->id == first_id)
          MESSAGE(e.name() << " " << e.message);
    }
    REQUIRE(pending->size() == 1);
    CHECK(pending->front().available_at == due);
    CHECK(log.count(event_kind::job_enqueued) == 1);
  }

  TEST_CASE_FIXTURE(sqlite_runtime_fixture,
                    "two nodes on one SQLite file run each occurrence once") {
    run_log runs_a, runs_b;
    auto node = [&](const char* name, run_log& r) {
      return builder{sqlite_adapter::factory(options())}
          .with_node_name(name)
          .with_scheduled_job(scheduled_job_spec{r.make("shared", 5ms),
                                                 new_interval_milliseconds(50)}
                                  .with_poll_interval(20ms));
    };
    caf::actor_system_config cfg_b;
    cfg_b.set("scheduler.max-threads", 2);
    caf::actor_system sys_b{cfg_b};
    auto a = node("node-a", runs_a).build(*sys);
    auto b = node("node-b", runs_b).build(sys_b);
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(
        test::eventually([&] { return runs_a.size() + runs_b.size() >= 12; }));
    REQUIRE(a->shutdown());
    REQUIRE(b->shutdown());
    auto [total, occurrences] = runs_and_occurrences({&runs_a, &runs_b});
    MESSAGE("node-a ran " << runs_a.size() << ", node-b ran " << runs_b.size());
    CHECK(occurrences == total);
  }

  TEST_CASE("two nodes on PostgreSQL run each cron occurrence once") {
    test::pg_schema schema;
    {
      auto db = postgres_adapter::open({schema.url()});
      REQUIRE(db);
      REQUIRE((*db)->migrate_up());
    }
    run_log runs_a, runs_b;
    caf::actor_system_config cfg_a, cfg_b;
    cfg_a.set("scheduler.max-threads", 2);
    cfg_b.set("scheduler.max-threads", 2);
    caf::actor_system sys_a{cfg_a};
    caf::actor_system sys_b{cfg_b};
    auto node = [&](const char* name, run_log& r) {
      return builder{postgres_adapter::factory({schema.url()})}
          .with_node_name(name)
          .with_scheduled_job(scheduled_job_spec{r.make("pg_shared"),
                                                 std::string{"* * * * * *"}}
                                  .with_poll_interval(100ms));
    };
    auto a = node("node-a", runs_a).build(sys_a);
    auto b = node("node-b", runs_b).build(sys_b);
    REQUIRE_MESSAGE(a, test::why(a));
    REQUIRE_MESSAGE(b, test::why(b));
    REQUIRE(
        test::eventually([&] { return runs_a.size() + runs_b.size() >= 3; }));
    REQUIRE(a->shutdown());
    REQUIRE(b->shutdown());
    auto [total, occurrences] = runs_and_occurrences({&runs_a, &runs_b});
    CHECK(occurrences == total);
    pqxx::connection c{schema.url()};
    pqxx::work tx{c};
    auto dup = tx.exec("SELECT count(*) FROM (SELECT available_at FROM"
                       " (SELECT available_at FROM jobs UNION ALL"
                       "  SELECT available_at FROM jobs_succeeded) x"
                       " GROUP BY available_at HAVING count(*) > 1) d");
    CHECK(dup[0][0].as<int>() == 0);
  }

  BG_JOBS_RUNTIME_CASE("a scheduled job has its own listeners and is found by "
                       "name") {
    test::event_log mine;
    run_log runs;
    auto bg = start(make_builder().with_scheduled_job(
        scheduled_job_spec{runs.make("report"), new_interval_milliseconds(50)}
            .with_poll_interval(20ms)
            .with_event_listener(mine.listener())));
    REQUIRE(mine.wait_for(event_kind::job_succeeded));
    CHECK(mine.wait_for(event_kind::job_enqueued));
    for (auto& e : mine.events()) {
      REQUIRE(e.job);
      CHECK(e.job->name == "report");
    }
    for (auto& e : mine.of(event_kind::job_succeeded))
      CHECK(e.queue == scheduled_job_spec::default_queue);
    CHECK(bg.lookup(scheduled_job_spec::default_queue));
    CHECK(bg.lookup("scheduler"));
    CHECK(bg.lookup("report/scheduler") == bg.lookup("scheduler"));
    REQUIRE(bg.shutdown());
  }

  BG_JOBS_RUNTIME_CASE("scheduled jobs share the node's scheduler and a "
                       "queue, or run in the queue they name") {
    run_log a, b, c;
    auto every = [](worker w) {
      return scheduled_job_spec{std::move(w), new_interval_milliseconds(50)}
          .with_poll_interval(20ms);
    };
    auto bg = start(
        make_builder()
            .with_queue(queue_spec{"reports"}.with_poll_interval(20ms).with_worker(
                worker{"other", [](const job&) {}}))
            .with_scheduled_job(every(a.make("tick_a")))
            .with_scheduled_job(every(b.make("tick_b")))
            .with_scheduled_job(every(c.make("tick_c")).with_queue("reports")));
    REQUIRE(test::eventually(
        [&] { return a.size() >= 2 && b.size() >= 2 && c.size() >= 2; }));
    CHECK(bg.lookup("tick_a/scheduler") == bg.lookup("tick_c/scheduler"));
    CHECK(bg.lookup(scheduled_job_spec::default_queue));
    CHECK_FALSE(bg.lookup("tick_a"));
    REQUIRE(bg.shutdown());
    for (auto& e : log.of(event_kind::job_succeeded)) {
      REQUIRE(e.job);
      CAPTURE(e.job->name);
      CHECK(e.queue == (e.job->name == "tick_c"
                            ? std::string{"reports"}
                            : std::string{scheduled_job_spec::default_queue}));
    }
    auto unknown = make_builder()
                       .with_scheduled_job(every(a.make("x")).with_queue("nope"))
                       .validate();
    CHECK(code_of(unknown) == errc::invalid_config);
    CHECK(describe(unknown).find("'nope'") != std::string::npos);
  }

  BG_JOBS_RUNTIME_CASE("two occurrences of one scheduled job never run at "
                       "once, and one that fell due meanwhile runs late") {
    // Every second, for 1.2 s each, in the shared queue of two executors.
    run_log runs;
    auto bg = start(make_builder().with_scheduled_job(
        scheduled_job_spec{runs.make("long", 1200ms),
                           std::string{"* * * * * *"}}
            .with_poll_interval(20ms)));
    REQUIRE(test::eventually([&] { return runs.size() >= 3; }, 30s));
    REQUIRE(bg.shutdown());
    std::lock_guard<std::mutex> guard{runs.mtx};
    for (size_t i = 1; i < runs.runs.size(); ++i) {
      CAPTURE(i);
      CHECK(runs.runs[i].first >= runs.runs[i - 1].second);
      // The next second's occurrence, not one skipped to.
      CHECK(runs.jobs[i].available_at - runs.jobs[i - 1].available_at == 1s);
    }
  }

  BG_JOBS_RUNTIME_CASE("an invalid schedule fails the build") {
    auto w = worker{"job", [](const job&) {}};
    auto bad = make_builder()
                   .with_scheduled_job(
                       scheduled_job_spec{w, std::string{"0 0 30 2 *"}})
                   .build(*sys);
    REQUIRE_FALSE(bad);
    CHECK(code_of(bad.error()) == errc::invalid_schedule);
    CHECK(describe(bad.error()).find("scheduled job 'job'") !=
          std::string::npos);
    // The zones the command-line program refuses fail the build too.
    for (auto zone : {"Mars/Olympus", "America/New York", "UTC+25", "",
                      "../../etc/passwd"}) {
      CAPTURE(zone);
      auto zoned = make_builder()
                       .with_scheduled_job(scheduled_job_spec{
                           w, new_schedule().on_hour(9).in_time_zone(zone)})
                       .build(*sys);
      REQUIRE_FALSE(zoned);
      CHECK(code_of(zoned.error()) == errc::invalid_schedule);
      CHECK(describe(zoned.error()).find("time zone") != std::string::npos);
      auto prefixed = make_builder()
                          .with_scheduled_job(scheduled_job_spec{
                              w, "CRON_TZ=" + std::string{zone} + " 0 9 * * *"})
                          .validate();
      CHECK(code_of(prefixed) == errc::invalid_schedule);
    }
    auto range = make_builder()
                     .with_scheduled_job(scheduled_job_spec{
                         w, new_schedule().between_hours(5, 2)})
                     .validate();
    CHECK(code_of(range) == errc::invalid_schedule);
    auto zero =
        make_builder()
            .with_scheduled_job(scheduled_job_spec{w, new_interval_seconds(0)})
            .validate();
    CHECK(code_of(zero) == errc::invalid_schedule);
    auto clash =
        make_builder()
            .with_queue(queue_spec{"job"}.with_worker(w))
            .with_scheduled_job(scheduled_job_spec{w, new_interval_seconds(1)})
            .validate();
    CHECK(code_of(clash) == errc::invalid_config);
  }

  BG_JOBS_RUNTIME_CASE("a fixed-time job runs once across a fall-back night") {
    // 01:30 in New York happens twice on 2026-11-01: 05:30Z (EDT) and
    // 06:30Z (EST). A fixed-time job runs at the first only.
    auto clk =
        std::make_shared<manual_clock>(*parse_iso8601("2026-11-01T05:00:00Z"));
    std::mutex mtx;
    std::vector<timestamp> due;
    auto bg = start(make_builder(clk).with_scheduled_job(scheduled_job_spec{
        worker{"nightly",
               [&](const job& j) {
                 std::lock_guard<std::mutex> guard{mtx};
                 due.push_back(j.available_at);
               }},
        std::string{
            "CRON_TZ=America/New_York 30 1 * * *"}}.with_poll_interval(20ms)));
    auto runs = [&] {
      std::lock_guard<std::mutex> guard{mtx};
      return due.size();
    };
    auto waiting = [&] {
      auto js = test::enqueued(*store(), "nightly");
      REQUIRE(js);
      return js->size() == 1 ? to_iso8601(js->front().available_at)
                             : std::to_string(js->size()) + " jobs";
    };
    REQUIRE(log.wait_for(event_kind::job_enqueued));
    CHECK(waiting() == "2026-11-01T05:30:00.000Z");
    clk->set(*parse_iso8601("2026-11-01T05:30:00Z"));
    REQUIRE(test::eventually([&] { return runs() == 1; }));
    REQUIRE(log.wait_for(event_kind::job_enqueued, 2));
    // The next occurrence is the next night's, not the second 01:30.
    CHECK(waiting() == "2026-11-02T06:30:00.000Z");
    clk->set(*parse_iso8601("2026-11-01T06:30:00Z"));
    CHECK(waiting() == "2026-11-02T06:30:00.000Z");
    clk->set(*parse_iso8601("2026-11-02T06:30:00Z"));
    REQUIRE(test::eventually([&] { return runs() == 2; }));
    REQUIRE(bg.shutdown());
    std::lock_guard<std::mutex> guard{mtx};
    CHECK(to_iso8601(due[0]) == "2026-11-01T05:30:00.000Z");
    CHECK(to_iso8601(due[1]) == "2026-11-02T06:30:00.000Z");
  }

  BG_JOBS_RUNTIME_CASE("missed runs of a cron job: the latest runs once, or "
                       "none") {
    for (auto policy : {missed_runs::run_latest_once, missed_runs::skip}) {
      CAPTURE(static_cast<int>(policy));
      the_store->fresh(); // each policy on empty tables
      auto db = store();
      REQUIRE(db->migrate_down());
      REQUIRE(db->migrate_up());
      auto clk = std::make_shared<manual_clock>(
          *parse_iso8601("2026-05-04T09:59:59Z"));
      std::mutex mtx;
      std::vector<timestamp> due;
      auto spec =
          scheduled_job_spec{worker{"hourly",
                                    [&](const job& j) {
                                      std::lock_guard<std::mutex> guard{mtx};
                                      due.push_back(j.available_at);
                                    }},
                             std::string{"0 * * * *"}}
              .with_poll_interval(20ms)
              .with_missed_runs(policy);
      {
        auto bg = start(make_builder(clk).with_scheduled_job(spec));
        REQUIRE(test::eventually(
            [&] { return test::enqueued(*store(), "hourly")->size() == 1; }));
        REQUIRE(bg.shutdown());
      }
      // The node was down from 09:59:59 to 12:30: 10:00, 11:00 and 12:00
      // were missed; 10:00 still waits in the table.
      clk->set(*parse_iso8601("2026-05-04T12:30:00Z"));
      auto bg = start(make_builder(clk).with_scheduled_job(spec));
      REQUIRE(test::eventually([&] {
        auto js = test::enqueued(*store(), "hourly");
        return js->size() == 1 && to_iso8601(js->front().available_at) ==
                                      "2026-05-04T13:00:00.000Z";
      }));
      if (policy == missed_runs::run_latest_once)
        REQUIRE(test::eventually([&] {
          std::lock_guard<std::mutex> guard{mtx};
          return due.size() == 1;
        }));
      REQUIRE(bg.shutdown());
      std::lock_guard<std::mutex> guard{mtx};
      if (policy == missed_runs::run_latest_once) {
        REQUIRE(due.size() == 1);
        CHECK(to_iso8601(due[0]) == "2026-05-04T12:00:00.000Z");
      } else {
        CHECK(due.empty());
      }
      CHECK(store()->stats()->succeeded == (due.empty() ? 0 : 1));
      // The waiting 10:00 occurrence was deleted, and reported so: not as a
      // cancel of a job nobody can find.
      auto deleted_events = policy == missed_runs::run_latest_once ? 1 : 2;
      REQUIRE(log.wait_for(event_kind::job_deleted, deleted_events));
      auto gone = log.of(event_kind::job_deleted).back();
      REQUIRE(gone.job);
      CHECK(code_of(store()->get_job(gone.job->id).error()) ==
            errc::job_not_found);
      CHECK(log.count(event_kind::job_cancelled) == 0);
    }
  }

  BG_JOBS_RUNTIME_CASE("a schedule added at run time on one node runs on "
                       "another, changes, pauses and stops when removed") {
    // Node A runs no worker for "tick"; node B does.
    run_log runs;
    caf::actor_system_config cfg_b;
    cfg_b.set("scheduler.max-threads", 2);
    caf::actor_system sys_b{cfg_b};
    auto a = start(make_builder().with_queue(
        queue_spec{"other"}.with_worker(worker{"other", [](const job&) {}})));
    auto b_built = builder{the_store->factory()}
                       .with_node_name("node-b")
                       .with_queue(queue_spec{"ticks"}
                                       .with_poll_interval(50ms)
                                       .with_worker(runs.make("tick")))
                       .build(sys_b);
    REQUIRE_MESSAGE(b_built, test::why(b_built));
    auto& b = *b_built;
    schedule_definition d;
    d.name = "tick-fast";
    d.job = "tick";
    d.every = 100ms;
    d.payload = {{"v", 1}};
    auto added = a.put_schedule(d);
    REQUIRE_MESSAGE(added, test::why(added));
    CHECK(*added);
    REQUIRE(log.wait_for(event_kind::schedule_changed));
    REQUIRE(test::eventually([&] { return runs.size() >= 3; }));
    // Changed: the next runs carry the new payload.
    d.payload = {{"v", 2}};
    auto changed = a.put_schedule(d);
    REQUIRE(changed);
    CHECK_FALSE(*changed);
    REQUIRE(test::eventually([&] {
      std::lock_guard<std::mutex> guard{runs.mtx};
      return runs.jobs.back().payload == nlohmann::json{{"v", 2}};
    }));
    auto listed = a.schedules();
    REQUIRE_MESSAGE(listed, test::why(listed));
    REQUIRE(listed->size() == 1);
    CHECK(listed->front().definition.name == "tick-fast");
    CHECK_FALSE(listed->front().declared);
    CHECK(listed->front().last_at);
    // Paused on A: B enqueues nothing more.
    REQUIRE(a.pause_schedule("tick-fast"));
    auto ran = runs.size();
    auto settled = [&] {
      auto js = test::enqueued(*store(), "tick");
      auto running = test::running(*store());
      return js && running && js->empty() && running->empty();
    };
    REQUIRE(test::eventually(settled));
    ran = runs.size();
    auto quiet = [&](std::chrono::milliseconds for_) {
      // Nothing may appear for a while: absence has no event to await.
      auto until = std::chrono::steady_clock::now() + for_;
      while (std::chrono::steady_clock::now() < until) {
        auto js = test::enqueued(*store(), "tick");
        REQUIRE(js);
        if (!js->empty())
          return false;
        std::this_thread::sleep_for(50ms);
      }
      return true;
    };
    CHECK(quiet(1500ms));
    REQUIRE(a.resume_schedule("tick-fast"));
    REQUIRE(test::eventually([&] { return runs.size() >= ran + 2; }));
    // Removed on A: its waiting run is cancelled and B schedules no more.
    REQUIRE(a.remove_schedule("tick-fast"));
    REQUIRE(log.wait_for(event_kind::schedule_removed));
    REQUIRE(test::eventually([&] { return test::running(*store())->empty(); }));
    ran = runs.size();
    CHECK(quiet(1500ms));
    CHECK(runs.size() == ran);
    CHECK(a.schedules()->empty());
    CHECK(code_of(a.remove_schedule("tick-fast").error()) ==
          errc::invalid_argument);
    REQUIRE(a.shutdown());
    REQUIRE(b.shutdown());
    // Every run was a distinct occurrence.
    auto [total, occurrences] = runs_and_occurrences({&runs});
    CHECK(occurrences == total);
  }

  BG_JOBS_RUNTIME_CASE("overlap skip never has two runs of a schedule at "
                       "once on two nodes, and allow has") {
    for (auto overlap : {overlap_policy::skip, overlap_policy::allow}) {
      CAPTURE(to_string(overlap));
      std::atomic<int> now_running{0}, most{0}, started{0};
      auto slow = worker{"slow", [&](const job&) {
                           int n = ++now_running;
                           for (int m = most; n > m;)
                             most.compare_exchange_weak(m, n);
                           ++started;
                           std::this_thread::sleep_for(1500ms);
                           --now_running;
                         }};
      auto node = [&](const char* name, caf::actor_system& in) {
        auto b = builder{the_store->factory()}
                     .with_node_name(name)
                     .with_queue(queue_spec{"slow"}
                                     .with_max_concurrent_jobs(3)
                                     .with_poll_interval(50ms)
                                     .with_worker(slow))
                     .build(in);
        REQUIRE_MESSAGE(b, test::why(b));
        return std::move(*b);
      };
      caf::actor_system_config cfg_b;
      cfg_b.set("scheduler.max-threads", 2);
      caf::actor_system sys_b{cfg_b};
      auto a = node("node-a", *sys);
      auto b = node("node-b", sys_b);
      schedule_definition d;
      d.name = std::string{"every-second-"} + to_string(overlap);
      d.job = "slow";
      d.cron = "* * * * * *";
      d.overlap = overlap;
      REQUIRE(a.put_schedule(d));
      if (overlap == overlap_policy::skip) {
        REQUIRE(test::eventually([&] { return started >= 3; }, 30s));
        CHECK(most == 1);
      } else {
        REQUIRE(test::eventually([&] { return most >= 2; }, 30s));
      }
      REQUIRE(a.remove_schedule(d.name));
      REQUIRE(a.shutdown());
      REQUIRE(b.shutdown());
      if (overlap == overlap_policy::skip)
        CHECK(most == 1);
    }
  }

  BG_JOBS_RUNTIME_CASE("a catch-up of 100 missed runs with a cap of 10 runs "
                       "10, the oldest first") {
    auto clk = std::make_shared<manual_clock>(
        *parse_iso8601("2026-01-01T08:00:30Z"));
    std::mutex mtx;
    std::vector<timestamp> due;
    auto spec = scheduled_job_spec{worker{"minutely",
                                          [&](const job& j) {
                                            std::lock_guard<std::mutex> guard{
                                                mtx};
                                            due.push_back(j.available_at);
                                          }},
                                   std::string{"0 * * * * *"}}
                    .with_poll_interval(20ms)
                    .with_catch_up(10, std::chrono::hours{24});
    auto runs = [&] {
      std::lock_guard<std::mutex> guard{mtx};
      return due.size();
    };
    auto latest_is = [&](const char* iso) {
      auto run = store()->last_scheduled_run("minutely");
      return run && *run && to_iso8601((*run)->scheduled_at) == iso;
    };
    {
      auto bg = start(make_builder(clk).with_scheduled_job(spec));
      REQUIRE(test::eventually(
          [&] { return latest_is("2026-01-01T08:01:00.000Z"); }));
      clk->set(*parse_iso8601("2026-01-01T08:01:00Z"));
      REQUIRE(test::eventually([&] { return runs() == 1; }));
      REQUIRE(test::eventually(
          [&] { return latest_is("2026-01-01T08:02:00.000Z"); }));
      REQUIRE(bg.shutdown());
    }
    // Down for 100 minutes: 08:02 to 09:41 were missed.
    clk->set(*parse_iso8601("2026-01-01T09:41:30Z"));
    auto bg = start(make_builder(clk).with_scheduled_job(spec));
    REQUIRE(test::eventually(
        [&] { return latest_is("2026-01-01T09:42:00.000Z"); }, 60s));
    REQUIRE(bg.shutdown());
    std::lock_guard<std::mutex> guard{mtx};
    REQUIRE(due.size() == 11);
    for (size_t i = 1; i < due.size(); ++i) {
      CAPTURE(i);
      CHECK(due[i] == *parse_iso8601("2026-01-01T08:01:00Z") +
                          std::chrono::minutes{i});
    }
    // The next waits for its time.
    auto js = test::enqueued(*store(), "minutely");
    REQUIRE(js);
    REQUIRE(js->size() == 1);
    CHECK(to_iso8601(js->front().available_at) == "2026-01-01T09:42:00.000Z");
  }

  BG_JOBS_RUNTIME_CASE("a schedule no node declares any more stops") {
    run_log runs;
    auto spec = scheduled_job_spec{runs.make("retired"), new_interval_hours(1)};
    {
      auto bg = start(make_builder().with_scheduled_job(spec));
      REQUIRE(test::eventually(
          [&] { return test::enqueued(*store(), "retired")->size() == 1; }));
      REQUIRE(bg.shutdown());
    }
    auto listed = store()->list_schedules();
    REQUIRE(listed);
    REQUIRE(listed->size() == 1);
    CHECK(listed->front().declared);
    // The next version of the code no longer declares it.
    auto bg = start(make_builder()
                        .with_schedule_stale_after(300ms)
                        .with_queue(queue_spec{"q"}.with_worker(
                            worker{"other", [](const job&) {}})));
    REQUIRE(log.wait_for(event_kind::schedule_removed, 1, 20s));
    auto removed = log.of(event_kind::schedule_removed).front();
    CHECK(removed.queue == "retired");
    CHECK(removed.message.find("was cancelled") != std::string::npos);
    CHECK(store()->list_schedules()->empty());
    CHECK(test::enqueued(*store(), "retired")->empty());
    REQUIRE(bg.shutdown());
    CHECK(runs.size() == 0);
  }

  BG_JOBS_RUNTIME_CASE("hostile schedule messages from another process "
                       "change nothing") {
    auto bg = start(make_builder().with_queue(
        queue_spec{"q"}.with_worker(worker{"tick", [](const job&) {}})));
    caf::scoped_actor self{*sys};
    // Each refusal is an invalid_argument error, not a reply.
    auto check = [&](std::optional<caf::error> err) {
      REQUIRE(err);
      CAPTURE(describe(*err));
      CHECK(code_of(*err) == errc::invalid_argument);
    };
    auto put = [&](std::string definition) {
      std::optional<caf::error> err;
      self->request(bg.actor(), 10s, schedule_atom::value, definition)
          .receive([&](bool) { err = caf::error{}; },
                   [&](caf::error& e) { err = std::move(e); });
      check(err);
    };
    put(std::string(100000, '{'));
    put("not json");
    put(R"({"name":"x","job":"tick","every_ms":-1})");
    put(R"({"name":"x","job":"tick","cron":"* * * * *","shell":"rm -rf /"})");
    put("{\"name\":\"x\\u0007\",\"job\":\"tick\",\"every_ms\":1000}");
    std::optional<caf::error> err;
    self->request(bg.actor(), 10s, unschedule_atom::value, std::string{"ghost"})
        .receive([&] { err = caf::error{}; },
                 [&](caf::error& e) { err = std::move(e); });
    check(err);
    err.reset();
    self->request(bg.actor(), 10s, trigger_atom::value, std::string{"ghost"})
        .receive([&](const job&) { err = caf::error{}; },
                 [&](caf::error& e) { err = std::move(e); });
    check(err);
    auto listed = bg.schedules();
    REQUIRE(listed);
    CHECK(listed->empty());
    CHECK(store()->list_schedules()->empty());
    REQUIRE(bg.shutdown());
  }

} // TEST_SUITE
