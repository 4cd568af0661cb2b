// Job control through the runtime, on every store: priorities under load,
// cancel, retry, pause / resume / scale, scheduled-job pauses, inspection,
// and the same operations as messages to the bg_jobs actor.
#include <atomic>
#include <mutex>
#include <thread>

#include <caf/scoped_actor.hpp>

#include "actors/runtime_fixture.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "support/expect.hpp"
#include "support/process.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;
using test::runtime_fixture;

namespace {

queue_spec quick_queue(std::string name, int concurrency = 1) {
  return queue_spec{std::move(name)}
      .with_poll_interval(20ms)
      .with_max_concurrent_jobs(concurrency)
      .with_max_retries(0)
      .with_backoff(backoff::immediate());
}

using test::error_of;
using test::require_ok;
using test::value_of;

} // namespace

TEST_SUITE("job control") {

  BG_JOBS_RUNTIME_CASE("a high-priority job enqueued behind 1,000 waiting "
                       "ones starts next") {
    test::gate hold;
    std::mutex mtx;
    std::vector<int64_t> started;
    auto w = worker{"j", [&](const job& j) {
                      {
                        std::lock_guard<std::mutex> guard{mtx};
                        started.push_back(j.id);
                      }
                      if (j.payload.value("block", false))
                        hold.wait();
                    }};
    auto bg = start(make_builder().with_queue(quick_queue("q").with_worker(w)));
    auto blocker = value_of(bg.enqueue(job_request{"j", {{"block", true}}}));
    REQUIRE(log.wait_for(event_kind::job_started));
    std::vector<job_request> backlog;
    for (int i = 0; i < 1000; ++i)
      backlog.push_back(job_request{"j", {{"i", i}}}.with_priority(5));
    value_of(bg.enqueue_many(backlog));
    auto urgent = value_of(bg.enqueue(job_request{"j"}.with_priority(0)));
    hold.open();
    REQUIRE(log.wait_for(event_kind::job_started, 3));
    std::lock_guard<std::mutex> guard{mtx};
    REQUIRE(started.size() >= 2);
    CHECK(started[0] == blocker.id);
    CHECK(started[1] == urgent.id);
  }

  BG_JOBS_RUNTIME_CASE("cancel of a running job stops its handler and records "
                       "it cancelled, never retried") {
    std::atomic<bool> saw_cancel{false};
    auto w = worker{"long", [&](const job&, const job_context& ctx) {
                      auto until = std::chrono::steady_clock::now() + 20s;
                      while (!ctx.cancelled() &&
                             std::chrono::steady_clock::now() < until)
                        std::this_thread::sleep_for(1ms);
                      saw_cancel = ctx.cancelled();
                      return outcome::success();
                    }};
    auto bg = start(make_builder().with_queue(
        quick_queue("q").with_max_retries(3).with_worker(w)));
    auto j = value_of(bg.enqueue(job_request{"long"}));
    REQUIRE(log.wait_for(event_kind::job_started));
    auto asked = value_of(bg.cancel(j.id, "operator said so"));
    CHECK(asked.state == job_state::running);
    CHECK(asked.cancel_reason == "operator said so");
    REQUIRE(log.wait_for(event_kind::job_cancelled));
    CHECK(saw_cancel);
    auto rec = value_of(bg.get_job(j.id));
    CHECK(rec.state == job_state::cancelled);
    CHECK(rec.error == "operator said so");
    CHECK(rec.attempts == 1);
    CHECK(log.count(event_kind::job_cancel_requested) == 1);
    CHECK(log.count(event_kind::job_exception) == 0);
    CHECK(log.count(event_kind::job_succeeded) == 0);
    // Cancelling it again, or an unknown job, changes nothing.
    CHECK(error_of(bg.cancel(j.id)) == errc::invalid_state);
    CHECK(error_of(bg.cancel(99999999)) == errc::job_not_found);
  }

  BG_JOBS_RUNTIME_CASE("a cancel stored by another node reaches the running "
                       "handler") {
    std::atomic<bool> saw_cancel{false};
    auto w = worker{"long", [&](const job&, const job_context& ctx) {
                      auto until = std::chrono::steady_clock::now() + 20s;
                      while (!ctx.cancelled() &&
                             std::chrono::steady_clock::now() < until)
                        std::this_thread::sleep_for(1ms);
                      saw_cancel = ctx.cancelled();
                    }};
    auto bg = start(make_builder().with_queue(quick_queue("q").with_worker(w)));
    auto j = value_of(bg.enqueue(job_request{"long"}));
    REQUIRE(log.wait_for(event_kind::job_started));
    // Straight to the store, as a node that does not run the job would.
    value_of(store()->cancel_job(j.id, "from elsewhere"));
    REQUIRE(log.wait_for(event_kind::job_cancelled, 1, 10s));
    CHECK(saw_cancel);
    CHECK(value_of(bg.get_job(j.id)).state == job_state::cancelled);
  }

  BG_JOBS_RUNTIME_CASE("cancel of a waiting job is immediate") {
    auto w = worker{"j", [](const job&) {}};
    auto bg = start(make_builder().with_queue(quick_queue("q").with_worker(w)));
    auto later = value_of(bg.enqueue(job_request{"j"}.available_in(1h)));
    auto rec = value_of(bg.cancel(later.id, "no longer wanted"));
    CHECK(rec.state == job_state::cancelled);
    REQUIRE(log.wait_for(event_kind::job_cancelled));
    CHECK(value_of(bg.stats()).queues.at(0).counts.cancelled == 1);
  }

  BG_JOBS_RUNTIME_CASE("a failed job retried by hand runs again and "
                       "succeeds") {
    std::atomic<bool> fixed{false};
    auto w = worker{"flaky", [&](const job&) {
                      if (!fixed)
                        return outcome::failure("not yet");
                      return outcome::success();
                    }};
    auto bg = start(make_builder().with_queue(quick_queue("q").with_worker(w)));
    auto j = value_of(bg.enqueue(job_request{"flaky"}));
    auto k = value_of(bg.enqueue(job_request{"flaky"}));
    REQUIRE(log.wait_for(event_kind::job_failed, 2));
    CHECK(error_of(bg.retry(99999999)) == errc::job_not_found);
    fixed = true;
    auto back = value_of(bg.retry(j.id));
    CHECK(back.state == job_state::waiting);
    CHECK(back.attempts == 0);
    CHECK(back.error == "not yet");
    CHECK(back.errors.size() == 1);
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    auto rec = value_of(bg.get_job(j.id));
    CHECK(rec.state == job_state::succeeded);
    CHECK(rec.attempts == 1);
    CHECK(error_of(bg.retry(j.id)) == errc::invalid_state);
    CHECK(value_of(bg.retry_failed("flaky")) == 1);
    REQUIRE(log.wait_for(event_kind::job_succeeded, 2));
    CHECK(value_of(bg.get_job(k.id)).state == job_state::succeeded);
    CHECK(log.count(event_kind::job_retried) == 2);
    // Retry of a waiting job is refused.
    auto waiting = value_of(bg.enqueue(job_request{"flaky"}.available_in(1h)));
    CHECK(error_of(bg.retry(waiting.id)) == errc::invalid_state);
    require_ok(bg.delete_job(waiting.id));
    CHECK(error_of(bg.get_job(waiting.id)) == errc::job_not_found);
    CHECK(log.wait_for(event_kind::job_deleted));
  }

  BG_JOBS_RUNTIME_CASE("a paused queue runs nothing, lets its running job "
                       "finish, and survives a restart") {
    test::gate hold;
    std::atomic<int> runs{0};
    auto w = worker{"j", [&](const job& j) {
                      ++runs;
                      if (j.payload.value("block", false))
                        hold.wait();
                    }};
    auto spec = quick_queue("q").with_worker(w);
    {
      auto bg = start(make_builder().with_queue(spec));
      value_of(bg.enqueue(job_request{"j", {{"block", true}}}));
      REQUIRE(log.wait_for(event_kind::job_started));
      require_ok(bg.pause_queue("q"));
      value_of(bg.enqueue(job_request{"j"}));
      hold.open();
      REQUIRE(log.wait_for(event_kind::job_succeeded)); // the running one
      auto st = value_of(bg.stats());
      REQUIRE(st.queues.size() == 1);
      CHECK(st.queues[0].paused);
      CHECK(st.queues[0].counts.available == 1);
      CHECK(log.count(event_kind::queue_paused) == 1);
      CHECK(error_of(bg.pause_queue("nope")) == errc::unknown_queue);
      require_ok(bg.shutdown());
    }
    // A new node on the same store still sees the pause.
    auto bg = start(make_builder().with_queue(spec));
    auto pauses = value_of(bg.pauses());
    REQUIRE(pauses.size() == 1);
    CHECK(pauses[0].name == "q");
    // The waiting job stays put across several polls of the new queue.
    CHECK_FALSE(log.wait_for(event_kind::job_succeeded, 2, 300ms));
    CHECK(runs == 1);
    require_ok(bg.resume_queue("q"));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 2));
    CHECK(runs == 2);
    // The event comes from the node that resumed, the job from the queue
    // the store woke: either may reach the listener first.
    CHECK(log.wait_for(event_kind::queue_resumed));
    CHECK(log.count(event_kind::queue_resumed) == 1);
  }

  BG_JOBS_RUNTIME_CASE("a pause is seen by a second process within a "
                       "second") {
    constexpr int n = 40;
    value_of(store()->enqueue_jobs(
        std::vector<job_request>(n, job_request{"work"})));
    // An operator node: it runs nothing and may pause any queue.
    auto ops = start(make_builder().with_any_job_name());
    test::child_process node{{BG_JOBS_TEST_NODE, "--store",
                              the_store->location(), "--node", "worker-node",
                              "--concurrency", "1", "--sleep-ms", "50",
                              "--timeout-ms", "60000"}};
    REQUIRE(node.started());
    auto succeeded = [&] { return value_of(store()->stats()).succeeded; };
    REQUIRE(test::eventually([&] { return succeeded() >= 2; }, 20s));
    require_ok(ops.pause_queue("work"));
    auto paused_at = std::chrono::steady_clock::now();
    // Within a second the other process has stopped reserving: what it
    // runs after that is at most the one job it held.
    std::this_thread::sleep_for(1s);
    auto settled = succeeded();
    std::this_thread::sleep_for(500ms);
    CHECK(succeeded() == settled);
    CHECK(settled < n);
    auto resumed_at = std::chrono::steady_clock::now();
    require_ok(ops.resume_queue("work"));
    REQUIRE(test::eventually([&] { return succeeded() > settled; }, 5s));
    auto took = std::chrono::steady_clock::now() - resumed_at;
    MESSAGE(
        "resumed work started after "
        << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
        << " ms");
    CHECK(took < 1s);
    CHECK(node.wait(60s) == 0);
    CHECK(succeeded() == n);
    (void)paused_at;
  }

  BG_JOBS_RUNTIME_CASE("100 concurrent enqueues of one unique job from two "
                       "processes store one job") {
    std::vector<std::unique_ptr<test::child_process>> nodes;
    for (auto name : {"web-a", "web-b"})
      nodes.push_back(std::make_unique<test::child_process>(
          std::vector<std::string>{BG_JOBS_TEST_NODE, "--store",
                                   the_store->location(), "--node", name,
                                   "--enqueue-unique", "50"}));
    for (auto& p : nodes)
      REQUIRE(p->started());
    for (auto& p : nodes)
      CHECK(p->wait(60s) == 0);
    auto st = value_of(store()->stats());
    CHECK(st.available == 1);
    CHECK(st.total() == 1);
  }

  BG_JOBS_RUNTIME_CASE("scale changes a queue's concurrency at run time") {
    test::gate hold;
    std::atomic<int> active{0}, peak{0};
    auto w =
        worker{"j", [&](const job&) {
                 int now = ++active;
                 int seen = peak;
                 while (now > seen && !peak.compare_exchange_weak(seen, now))
                   ;
                 hold.wait();
                 --active;
               }};
    auto bg = start(make_builder().with_queue(quick_queue("q").with_worker(w)));
    value_of(bg.enqueue_many(std::vector<job_request>(6, job_request{"j"})));
    REQUIRE(log.wait_for(event_kind::job_started));
    require_ok(bg.scale_queue("q", 4));
    REQUIRE(log.wait_for(event_kind::job_started, 4));
    CHECK(test::eventually([&] { return active == 4; }));
    CHECK(value_of(bg.stats()).queues.at(0).max_concurrent_jobs == 4);
    require_ok(bg.scale_queue("q", 1));
    hold.open();
    REQUIRE(log.wait_for(event_kind::job_succeeded, 6));
    CHECK(peak == 4);
    CHECK(log.count(event_kind::queue_scaled) == 2);
    CHECK(error_of(bg.scale_queue("q", 0)) == errc::invalid_argument);
    CHECK(error_of(bg.scale_queue("nope", 2)) == errc::unknown_queue);
  }

  BG_JOBS_RUNTIME_CASE("a paused schedule skips its occurrences instead of "
                       "piling them up") {
    auto clk =
        std::make_shared<manual_clock>(*parse_iso8601("2026-01-01T00:00:30Z"));
    std::atomic<int> runs{0};
    auto spec = scheduled_job_spec{worker{"tick", [&](const job&) { ++runs; }},
                                   schedule_builder::interval(1min)}
                    .with_poll_interval(20ms)
                    .with_priority(2);
    auto bg = start(make_builder(clk).with_scheduled_job(spec));
    clk->advance(1min);
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    CHECK(runs == 1);
    // The next occurrence waits for its time; the pause skips it.
    REQUIRE(test::eventually(
        [&] { return value_of(store(clk)->stats()).scheduled == 1; }));
    require_ok(bg.pause_schedule("tick"));
    CHECK(value_of(store(clk)->stats()).cancelled == 1);
    clk->advance(5min);
    CHECK_FALSE(log.wait_for(event_kind::job_succeeded, 2, 300ms));
    require_ok(bg.resume_schedule("tick"));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 2));
    // One run after the pause, not five.
    CHECK_FALSE(log.wait_for(event_kind::job_succeeded, 3, 300ms));
    CHECK(runs == 2);
    auto page = value_of(bg.list_jobs([] {
      job_query q;
      q.state = job_state::succeeded;
      return q;
    }()));
    REQUIRE(page.jobs.size() == 2);
    CHECK(page.jobs[0].priority == 2);
    CHECK(log.count(event_kind::schedule_paused) == 1);
    CHECK(error_of(bg.pause_schedule("nope")) == errc::unknown_queue);
  }

  BG_JOBS_RUNTIME_CASE("stats report each queue's lag, lists go by queue") {
    auto clk =
        std::make_shared<manual_clock>(*parse_iso8601("2026-01-01T00:00:00Z"));
    auto w = worker{"a", [](const job&) {}};
    auto v = worker{"b", [](const job&) {}};
    auto bg = start(make_builder(clk)
                        .with_queue(quick_queue("qa").with_worker(w))
                        .with_queue(quick_queue("qb").with_worker(v)));
    require_ok(bg.pause_queue("qa"));
    value_of(bg.enqueue(job_request{"a"}));
    value_of(bg.enqueue(job_request{"a"}));
    value_of(bg.enqueue(job_request{"b"}));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    clk->advance(5s);
    auto st = value_of(bg.stats());
    REQUIRE(st.queues.size() == 2);
    CHECK(st.queues[0].queue == "qa");
    CHECK(st.queues[0].counts.available == 2);
    CHECK(st.queues[0].lag == 5s);
    CHECK(st.queues[0].paused);
    CHECK(st.queues[1].counts.succeeded == 1);
    CHECK(st.queues[1].lag == 0ms);
    REQUIRE(st.names.size() == 2);
    job_query q;
    q.queue = "qa";
    q.limit = 1;
    auto p1 = value_of(bg.list_jobs(q));
    REQUIRE(p1.jobs.size() == 1);
    CHECK(p1.jobs[0].name == "a");
    q.after = p1.next;
    CHECK(value_of(bg.list_jobs(q)).jobs.size() == 1);
    q = job_query{};
    q.queue = "nope";
    CHECK(error_of(bg.list_jobs(q)) == errc::unknown_queue);
  }

  BG_JOBS_RUNTIME_CASE("every control operation is a message to the bg_jobs "
                       "actor") {
    auto w = worker{"j", [](const job&) {}};
    auto bg = start(make_builder().with_queue(quick_queue("q").with_worker(w)));
    auto later = value_of(bg.enqueue(job_request{"j"}.available_in(1h)));
    caf::scoped_actor self{*sys};
    auto dest = bg.actor();
    bool replied = false;
    self->request(dest, 10s, cancel_atom::value, later.id, std::string{"x"})
        .receive(
            [&](job_record& r) {
              replied = true;
              CHECK(r.state == job_state::cancelled);
            },
            [&](caf::error& err) { FAIL(sys->render(err)); });
    CHECK(replied);
    replied = false;
    self->request(dest, 10s, pause_atom::value, pause_kind::queue,
                  std::string{"unknown"})
        .receive([&] { FAIL("paused an unknown queue"); },
                 [&](caf::error& err) {
                   replied = true;
                   CHECK(code_of(err) == errc::unknown_queue);
                 });
    CHECK(replied);
    replied = false;
    self->request(dest, 10s, stats_atom::value)
        .receive(
            [&](stats_report& r) {
              replied = true;
              CHECK(r.queues.size() == 1);
            },
            [&](caf::error& err) { FAIL(sys->render(err)); });
    CHECK(replied);
    CHECK(error_of(bg.enqueue(job_request{"j"}.with_priority(12))) ==
          errc::invalid_argument);
  }

  BG_JOBS_RUNTIME_CASE("a node name held by a live instance is refused, a "
                       "dead holder's name is taken over") {
    auto w = worker{"j", [](const job&) {}};
    auto config = make_builder().with_queue(quick_queue("q").with_worker(w));
    auto first = start(config);
    CHECK(first.node_name() == "test-node");
    auto second = config.build(*sys);
    REQUIRE_FALSE(second);
    CHECK(code_of(second.error()) == errc::invalid_config);
    INFO(describe(second.error()));
    CHECK(describe(second.error()).find("is held by a live process") !=
          std::string::npos);
    // A holder that died without shutting down (its tree killed) left the
    // name to be taken over, with what it held released.
    value_of(first.enqueue(job_request{"j"}));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    caf::anon_send_exit(first.supervisor(), caf::exit_reason::kill);
    first.await_exit(10s);
    auto third = config.build(*sys);
    REQUIRE_MESSAGE(third, "after a kill: " << test::why(third));
    CHECK(third->node_name() == "test-node");
    require_ok(third->shutdown());
    // A clean shutdown gives the name up.
    auto fourth = config.build(*sys);
    REQUIRE_MESSAGE(fourth, "after a shutdown: " << test::why(fourth));
    CHECK(fourth->node_name() == "test-node");
  }

  BG_JOBS_RUNTIME_CASE("publishing without CAF's middleman is a clear "
                       "error") {
    auto w = worker{"j", [](const job&) {}};
    auto bg = make_builder()
                  .with_queue(quick_queue("q").with_worker(w))
                  .with_remote(0)
                  .build(*sys);
    REQUIRE_FALSE(bg);
    CHECK(code_of(bg.error()) == errc::invalid_config);
    CHECK(describe(bg.error()).find("middleman") != std::string::npos);
    // Nothing of it is left running: the name is free again.
    auto again =
        start(make_builder().with_queue(quick_queue("q").with_worker(w)));
    CHECK(again.node_name() == "test-node");
  }

  BG_JOBS_RUNTIME_CASE("the default node name is unique per process") {
    auto w = worker{"j", [](const job&) {}};
    auto config = builder{the_store->factory()}.with_queue(
        quick_queue("q").with_worker(w));
    auto a = start(config);
    auto b = start(config);
    CHECK(a.node_name() != b.node_name());
    CHECK(b.node_name() == a.node_name() + "-2");
  }

} // TEST_SUITE

namespace {

/// Two applications on one database, apart by prefix or schema: each runs
/// its own jobs of the same name and sees none of the other's.
void two_applications(caf::actor_system& sys, adapter_factory a,
                      adapter_factory b) {
  test::event_log log_a, log_b;
  auto spec = [](std::atomic<int>& runs) {
    return quick_queue("q").with_worker(
        worker{"j", [&runs](const job&) { ++runs; }});
  };
  std::atomic<int> runs_a{0}, runs_b{0};
  auto bg_a = builder{a}
                  .with_node_name("app-a")
                  .with_migrations()
                  .with_event_listener(log_a.listener())
                  .with_queue(spec(runs_a))
                  .build(sys);
  REQUIRE_MESSAGE(bg_a, test::why(bg_a));
  auto bg_b = builder{b}
                  .with_node_name("app-b")
                  .with_migrations()
                  .with_event_listener(log_b.listener())
                  .with_queue(spec(runs_b))
                  .build(sys);
  REQUIRE_MESSAGE(bg_b, test::why(bg_b));
  for (int i = 0; i < 3; ++i)
    value_of(bg_a->enqueue(job_request{"j"}));
  for (int i = 0; i < 2; ++i)
    value_of(bg_b->enqueue(job_request{"j"}));
  REQUIRE(log_a.wait_for(event_kind::job_succeeded, 3));
  REQUIRE(log_b.wait_for(event_kind::job_succeeded, 2));
  CHECK(value_of(bg_a->stats()).queues.at(0).counts.succeeded == 3);
  CHECK(value_of(bg_b->stats()).queues.at(0).counts.succeeded == 2);
  CHECK(runs_a == 3);
  CHECK(runs_b == 2);
  // The same node name is free in the other application.
  auto again = builder{b}.with_node_name("app-a").build(sys);
  CHECK_MESSAGE(again, test::why(again));
}

} // namespace

TEST_SUITE("job control") {

  TEST_CASE("two applications share one SQLite file by table prefix") {
    caf::actor_system_config cfg;
    cfg.set("scheduler.max-threads", 2);
    caf::actor_system sys{cfg};
    test::temp_dir dir;
    sqlite_options a{dir.file("shared.db")}, b{dir.file("shared.db")};
    a.table_prefix = "billing_";
    b.table_prefix = "mail_";
    two_applications(sys, sqlite_adapter::factory(a),
                     sqlite_adapter::factory(b));
    sqlite_options plain{dir.file("shared.db")};
    auto db = sqlite_adapter::open(plain);
    REQUIRE(db);
    CHECK(value_of((*db)->schema_version()) == 0);
    sqlite_options bad{dir.file("shared.db")};
    bad.table_prefix = "x; DROP TABLE jobs";
    auto refused = sqlite_adapter::open(bad);
    REQUIRE_FALSE(refused);
    CHECK(code_of(refused.error()) == errc::invalid_argument);
  }

  TEST_CASE("two applications share one PostgreSQL database by schema") {
    caf::actor_system_config cfg;
    cfg.set("scheduler.max-threads", 2);
    caf::actor_system sys{cfg};
    test::pg_schema first, second;
    postgres_options a{first.base_url()}, b{second.base_url()};
    a.schema = first.name();
    b.schema = second.name();
    two_applications(sys, postgres_adapter::factory(a),
                     postgres_adapter::factory(b));
    postgres_options bad{first.base_url()};
    bad.schema = "public; DROP TABLE jobs";
    auto refused = postgres_adapter::open(bad);
    REQUIRE_FALSE(refused);
    CHECK(code_of(refused.error()) == errc::invalid_argument);
  }

} // TEST_SUITE
