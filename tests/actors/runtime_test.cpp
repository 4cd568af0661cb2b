// The actor runtime against a real SQLite file: the original bg_jobs
// runtime tests with corrected expectations, plus supervision, shutdown and
// concurrency.
#include <atomic>
#include <future>
#include <limits>
#include <set>
#include <thread>

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "actors/runtime_fixture.hpp"
#include "bg_jobs/maintenance/maintenance.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "support/expect.hpp"
#include "support/store_reads.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;
using test::runtime_fixture;
using test::sqlite_runtime_fixture;

namespace {

queue_spec test_queue(std::string name) {
  return queue_spec{std::move(name)}
      .with_poll_interval(20ms)
      .with_max_concurrent_jobs(4)
      .with_max_retries(3)
      .with_backoff(backoff::immediate());
}

worker log_worker(std::shared_ptr<std::vector<std::string>> out,
                  std::shared_ptr<std::mutex> mtx) {
  return worker{"LOG_JOB", [out, mtx](const job& j) {
                  std::lock_guard<std::mutex> guard{*mtx};
                  out->push_back(j.payload.value("message", ""));
                }};
}

/// The reason a crashed actor dies with; unlike `kill`, a supervisor can
/// trap it.
caf::exit_reason crash() {
  return caf::exit_reason::unhandled_exception;
}

struct thumbnail {
  static constexpr const char* job_name = "thumbnail";
  std::string path;
  int size = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(thumbnail, path, size)

} // namespace

TEST_SUITE("runtime") {

  BG_JOBS_RUNTIME_CASE("a typed job runs with its decoded arguments, and one "
                       "that does not decode fails at once, naming the field") {
    auto seen = std::make_shared<std::vector<std::string>>();
    auto mtx = std::make_shared<std::mutex>();
    auto bg = start(make_builder().with_queue(
        test_queue("default_queue")
            .with_max_retries(20)
            .with_worker(typed_worker<thumbnail>(
                [seen, mtx](const thumbnail& t) {
                  std::lock_guard<std::mutex> guard{*mtx};
                  seen->push_back(t.path + "@" + std::to_string(t.size));
                }))));
    auto good = bg.enqueue(thumbnail{"cat.png", 128});
    REQUIRE_MESSAGE(good, bg_jobs::test::why(good));
    CHECK(good->name == "thumbnail");
    auto bad = bg.enqueue(job_request{"thumbnail", {{"path", "dog.png"}}});
    REQUIRE_MESSAGE(bad, bg_jobs::test::why(bad));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    REQUIRE(log.wait_for(event_kind::job_failed));
    auto failed = test::value_of(store()->get_job(bad->id));
    CHECK(failed.state == job_state::failed);
    CHECK(failed.attempts == 1);
    CHECK(failed.error ==
          "payload does not decode as thumbnail arguments: field 'size' is "
          "missing");
    std::lock_guard<std::mutex> guard{*mtx};
    CHECK(*seen == std::vector<std::string>{"cat.png@128"});
  }

  BG_JOBS_RUNTIME_CASE("a job runs and moves to succeeded") {
    auto out = std::make_shared<std::vector<std::string>>();
    auto mtx = std::make_shared<std::mutex>();
    auto bg = start(make_builder().with_queue(
        test_queue("default_queue").with_worker(log_worker(out, mtx))));
    auto j =
        bg.enqueue(job_request{"LOG_JOB", {{"message", "test message 1"}}});
    REQUIRE_MESSAGE(j, bg_jobs::test::why(j));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    {
      std::lock_guard<std::mutex> guard{*mtx};
      CHECK(*out == std::vector<std::string>{"test message 1"});
    }
    auto done = test::succeeded(*store(), 10);
    REQUIRE(done);
    REQUIRE(done->size() == 1);
    CHECK(done->front().id == j->id);
    CHECK(done->front().name == "LOG_JOB");
    CHECK(done->front().payload ==
          nlohmann::json{{"message", "test message 1"}});
    CHECK(done->front().attempts == 1);
    CHECK(store()->stats()->pending() == 0);
  }

  BG_JOBS_RUNTIME_CASE("several jobs all run") {
    auto out = std::make_shared<std::vector<std::string>>();
    auto mtx = std::make_shared<std::mutex>();
    auto bg = start(make_builder().with_queue(
        test_queue("default_queue").with_worker(log_worker(out, mtx))));
    std::vector<std::string> expected;
    for (int i = 1; i <= 5; ++i) {
      expected.push_back("test message " + std::to_string(i));
      REQUIRE(
          bg.enqueue(job_request{"LOG_JOB", {{"message", expected.back()}}}));
    }
    REQUIRE(log.wait_for(event_kind::job_succeeded, 5));
    std::lock_guard<std::mutex> guard{*mtx};
    std::sort(out->begin(), out->end());
    CHECK(*out == expected);
  }

  BG_JOBS_RUNTIME_CASE(
      "a failing job is retried max_retries times then failed") {
    std::vector<int> attempts_seen;
    std::mutex mtx;
    auto bg = start(make_builder().with_queue(
        test_queue("default_queue")
            .with_max_retries(3)
            .with_worker(worker{"FAILING_JOB", [&](const job& j) {
                                  std::lock_guard<std::mutex> guard{mtx};
                                  attempts_seen.push_back(j.attempts);
                                  return outcome::failure(
                                      "I'm always failing (attempt " +
                                      std::to_string(j.attempts) + ")");
                                }})));
    REQUIRE(bg.enqueue(job_request{"FAILING_JOB", {{"message", "Failing"}}}));
    REQUIRE(log.wait_for(event_kind::job_failed));
    auto failed = test::failed(*store(), 10);
    REQUIRE(failed);
    REQUIRE(failed->size() == 1);
    CHECK(failed->front().attempts == 4);
    CHECK(failed->front().error == "I'm always failing (attempt 4)");
    std::lock_guard<std::mutex> guard{mtx};
    CHECK(attempts_seen == std::vector<int>{1, 2, 3, 4});
    CHECK(log.count(event_kind::job_exception) == 3);
    CHECK(log.count(event_kind::job_started) == 4);
  }

  BG_JOBS_RUNTIME_CASE("a worker's own retries replace its queue's") {
    auto fail = [](const job& j) {
      return outcome::failure("attempt " + std::to_string(j.attempts));
    };
    auto bg = start(make_builder().with_queue(
        test_queue("q")
            .with_max_retries(3)
            .with_worker(worker{"queue_retries", fail})
            .with_worker(worker{"own_retries", fail}.with_retries(
                1, backoff::immediate()))));
    REQUIRE(bg.enqueue(job_request{"queue_retries"}));
    REQUIRE(bg.enqueue(job_request{"own_retries"}));
    REQUIRE(log.wait_for(event_kind::job_failed, 2));
    auto failed = test::failed(*store(), 10);
    REQUIRE(failed);
    REQUIRE(failed->size() == 2);
    std::map<std::string, int> attempts;
    for (auto& f : *failed)
      attempts[f.name] = f.attempts;
    CHECK(attempts["queue_retries"] == 4);
    CHECK(attempts["own_retries"] == 2);
    CHECK(code_of(make_builder()
                      .with_queue(test_queue("q").with_worker(
                          worker{"w", fail}.with_retries(-1)))
                      .validate()) == errc::invalid_config);
  }

  BG_JOBS_RUNTIME_CASE("a retry waits in the table for its backoff") {
    // Time moves only when the test moves it: no real backoff is waited for.
    auto clk =
        std::make_shared<manual_clock>(*parse_iso8601("2025-06-01T08:00:00Z"));
    std::vector<timestamp> starts;
    std::mutex mtx;
    auto bg = start(make_builder(clk).with_queue(
        test_queue("q")
            .with_max_retries(1)
            .with_backoff(backoff::constant(300ms))
            .with_worker(worker{"j", [&](const job& j) {
                                  std::lock_guard<std::mutex> guard{mtx};
                                  starts.push_back(clk->now());
                                  return j.attempts == 1
                                             ? outcome::failure("once")
                                             : outcome::success();
                                }})));
    REQUIRE(bg.enqueue(job_request{"j"}));
    REQUIRE(log.wait_for(event_kind::job_exception));
    auto db = store(clk);
    auto waiting = test::enqueued(*db, "j");
    REQUIRE(waiting);
    REQUIRE(waiting->size() == 1);
    CHECK(waiting->front().error == "once");
    CHECK_FALSE(waiting->front().reserved_by);
    CHECK(waiting->front().available_at == clk->now() + 300ms);
    // Just before its time, nobody can claim it.
    clk->advance(299ms);
    CHECK(db->reserve_jobs({{"j"}, 1, "probe/q/1", ""})->empty());
    clk->advance(1ms);
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    std::lock_guard<std::mutex> guard{mtx};
    REQUIRE(starts.size() == 2);
    CHECK(starts[1] - starts[0] == 300ms);
  }

  BG_JOBS_RUNTIME_CASE(
      "a throwing handler is retried then failed and its queue "
      "stays alive") {
    auto bg = start(make_builder().with_queue(
        test_queue("default_queue")
            .with_max_retries(1)
            .with_worker(worker{"THROWS",
                                [](const job&) -> outcome {
                                  throw std::runtime_error("disk on fire");
                                }})
            .with_worker(worker{"OK", [](const job&) {}})));
    auto q = bg.lookup("default_queue");
    REQUIRE(q);
    REQUIRE(bg.enqueue(job_request{"THROWS"}));
    REQUIRE(log.wait_for(event_kind::job_failed));
    auto failed = test::failed(*store(), 1);
    REQUIRE(failed);
    CHECK(failed->front().error == "disk on fire");
    CHECK(failed->front().attempts == 2);
    REQUIRE(bg.enqueue(job_request{"OK"}));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    CHECK(bg.lookup("default_queue") == q);
    CHECK(log.count(event_kind::supervisor_restart) == 0);
  }

  BG_JOBS_RUNTIME_CASE("a delayed job does not start early") {
    std::atomic<int64_t> started_at{0};
    auto bg = start(make_builder().with_queue(test_queue("q").with_worker(
        worker{"later", [&](const job&) {
                 started_at = to_unix_ms(clock::system()->now());
               }})));
    auto j = bg.enqueue(job_request{"later"}.available_in(300ms));
    REQUIRE(j);
    CHECK(j->available_at - j->created_at == 300ms);
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    // Reserved when due by the store's clock, the one the claim compares
    // with (PostgreSQL's, as this connection measured it).
    auto done = log.of(event_kind::job_succeeded);
    REQUIRE(done[0].job);
    REQUIRE(done[0].job->reserved_at);
    CHECK(*done[0].job->reserved_at >= j->available_at);
    // By this machine's clock, within what measuring the store's clock
    // over a connection can be off by.
    CHECK(started_at.load() >= to_unix_ms(j->available_at) - 5);
  }

  BG_JOBS_RUNTIME_CASE("each queue runs its own jobs") {
    auto bg = start(make_builder()
                        .with_queue(test_queue("first").with_worker(
                            worker{"a", [](const job&) {}}))
                        .with_queue(test_queue("second").with_worker(
                            worker{"b", [](const job&) {}})));
    REQUIRE(bg.enqueue(job_request{"a"}));
    REQUIRE(bg.enqueue(job_request{"b"}));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 2));
    std::set<std::pair<std::string, std::string>> seen;
    for (auto& e : log.of(event_kind::job_succeeded))
      seen.emplace(e.queue, e.job->name);
    CHECK(seen == std::set<std::pair<std::string, std::string>>{
                      {"first", "a"}, {"second", "b"}});
  }

  BG_JOBS_RUNTIME_CASE(
      "an unknown job name is refused with an event and nothing "
      "written") {
    auto bg = start(make_builder().with_queue(
        test_queue("q").with_worker(worker{"LOG_JOB", [](const job&) {}})));
    auto r = bg.enqueue(job_request{"DOES_NOT_EXIST", "payload"});
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::no_worker_for_job);
    CHECK(describe(r.error()).find("DOES_NOT_EXIST") != std::string::npos);
    REQUIRE(log.wait_for(event_kind::no_worker_for_job));
    CHECK(store()->stats()->total() == 0);
    REQUIRE(bg.enqueue(job_request{"LOG_JOB"}));
    CHECK(log.wait_for(event_kind::job_succeeded));
    auto bad = bg.enqueue(job_request{""});
    REQUIRE_FALSE(bad);
    CHECK(code_of(bad.error()) == errc::no_worker_for_job);
  }

  BG_JOBS_RUNTIME_CASE("any actor can enqueue by message") {
    auto bg = start(make_builder().with_queue(
        test_queue("q").with_worker(worker{"j", [](const job&) {}})));
    auto result = std::make_shared<std::promise<int64_t>>();
    auto fut = result->get_future();
    // The values go in as spawn arguments: CAF 0.17 spawns a function
    // without any by binding a reference to a null tuple, which the
    // sanitizer build reports.
    sys->spawn(
        [](caf::event_based_actor* self, caf::actor root,
           std::shared_ptr<std::promise<int64_t>> result) {
          self
              ->request(root, 5s, enqueue_atom::value,
                        job_request{"j", {{"k", 1}}})
              .then([result](const job& j) { result->set_value(j.id); },
                    [result](caf::error&) { result->set_value(-1); });
        },
        bg.actor(), result);
    REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    auto id = fut.get();
    CHECK(id > 0);
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    CHECK(log.of(event_kind::job_succeeded).front().job->id == id);
    std::vector<job_request> many(20, job_request{"j"});
    auto ids = bg.enqueue_many(many);
    REQUIRE(ids);
    CHECK(ids->size() == 20);
    CHECK(log.wait_for(event_kind::job_succeeded, 21));
  }

  BG_JOBS_RUNTIME_CASE(
      "an executor killed mid-job is detected and its job runs "
      "again") {
    auto gate = std::make_shared<test::gate>();
    auto bg = start(make_builder().with_queue(
        test_queue("default").with_max_concurrent_jobs(1).with_worker(
            worker{"slow", [gate](const job& j) {
                     if (j.attempts == 1)
                       gate->wait();
                   }})));
    REQUIRE(bg.enqueue(job_request{"slow"}));
    REQUIRE(log.wait_for(event_kind::job_started));
    auto executor = bg.lookup("default/executor/0");
    REQUIRE(executor);
    caf::anon_send_exit(executor, crash());
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    gate->open();
    auto released = log.of(event_kind::job_released);
    REQUIRE(released.size() == 1);
    CHECK(released.front().message.find("executor died") != std::string::npos);
    auto done = test::succeeded(*store(), 1);
    REQUIRE(done);
    CHECK(done->front().attempts == 2);
    CHECK(log.count(event_kind::job_started) == 2);
    CHECK(test::eventually([&] {
      auto e = bg.lookup("default/executor/0");
      return e && e != executor;
    }));
  }

  BG_JOBS_RUNTIME_CASE(
      "a killed queue is restarted and its jobs are released and "
      "finished") {
    auto gate = std::make_shared<test::gate>();
    auto bg = start(make_builder().with_queue(
        test_queue("default").with_max_concurrent_jobs(1).with_worker(
            worker{"FOREVER_JOB", [gate](const job& j) {
                     if (j.attempts == 1)
                       gate->wait();
                   }})));
    REQUIRE(bg.enqueue(job_request{"FOREVER_JOB"}));
    REQUIRE(log.wait_for(event_kind::job_started));
    auto old = bg.lookup("default");
    REQUIRE(old);
    auto running = test::running(*store());
    REQUIRE(running);
    REQUIRE(running->size() == 1);
    auto old_owner = *running->front().reserved_by;
    CHECK(old_owner.rfind("test-node/default/", 0) == 0);
    caf::anon_send_exit(old, crash());
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    gate->open();
    CHECK(log.count(event_kind::supervisor_restart) == 1);
    auto downs = log.of(event_kind::actor_down);
    REQUIRE(downs.size() >= 1);
    CHECK(downs.front().message.find("'default' died") != std::string::npos);
    CHECK(downs.front().message.find("1 reserved job(s) released") !=
          std::string::npos);
    auto fresh = bg.lookup("default");
    CHECK(fresh);
    CHECK(fresh != old);
    auto done = test::succeeded(*store(), 1);
    REQUIRE(done);
    CHECK(done->front().attempts == 2);
  }

  BG_JOBS_RUNTIME_CASE(
      "exceeding the restart intensity stops the supervisor with "
      "an error") {
    auto bg = start(make_builder()
                        .with_supervisor_max_frequency(2)
                        .with_supervisor_frequency_period(10s)
                        .with_queue(test_queue("default").with_worker(
                            worker{"j", [](const job&) {}})));
    auto previous = bg.lookup("default");
    for (int i = 0; i < 2; ++i) {
      REQUIRE(previous);
      caf::anon_send_exit(previous, crash());
      caf::actor next;
      REQUIRE(test::eventually([&] {
        next = bg.lookup("default");
        return next && next != previous;
      }));
      previous = next;
    }
    caf::anon_send_exit(previous, crash());
    auto reason = bg.await_exit(10s);
    CHECK(code_of(reason) == errc::restart_limit_exceeded);
    CHECK(describe(reason).find("restart intensity exceeded") !=
          std::string::npos);
    CHECK(log.wait_for(event_kind::supervisor_gave_up));
    CHECK(log.count(event_kind::supervisor_restart) == 2);
  }

  BG_JOBS_RUNTIME_CASE(
      "shutdown lets running jobs finish within the grace period") {
    std::atomic<int> started{0};
    auto bg = start(make_builder().with_shutdown_grace_period(10s).with_queue(
        test_queue("q").with_max_concurrent_jobs(3).with_worker(
            worker{"j", [&](const job&) {
                     ++started;
                     std::this_thread::sleep_for(300ms);
                   }})));
    for (int i = 0; i < 3; ++i)
      REQUIRE(bg.enqueue(job_request{"j"}));
    REQUIRE(test::eventually([&] { return started == 3; }));
    auto stopped = bg.shutdown(30s);
    REQUIRE_MESSAGE(stopped, bg_jobs::test::why(stopped));
    auto st = store()->stats();
    REQUIRE(st);
    CHECK(st->succeeded == 3);
    CHECK(st->reserved == 0);
    auto after = bg.enqueue(job_request{"j"});
    REQUIRE_FALSE(after);
    CHECK(code_of(after.error()) == errc::shutting_down);
  }

  BG_JOBS_RUNTIME_CASE("shutdown releases jobs still running after the grace "
                       "period") {
    auto gate = std::make_shared<test::gate>();
    auto bg = start(make_builder().with_shutdown_grace_period(200ms).with_queue(
        test_queue("q").with_worker(
            worker{"stuck", [gate](const job&) { gate->wait(); }})));
    REQUIRE(bg.enqueue(job_request{"stuck"}));
    REQUIRE(log.wait_for(event_kind::job_started));
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(bg.shutdown(30s));
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    gate->open();
    auto pending = test::enqueued(*store(), "stuck");
    REQUIRE(pending);
    REQUIRE(pending->size() == 1);
    CHECK_FALSE(pending->front().reserved_by);
    CHECK(pending->front().attempts == 0);
    CHECK(log.count(event_kind::job_released) == 1);
  }

  BG_JOBS_RUNTIME_CASE("named lookup finds every queue") {
    auto bg = start(
        make_builder()
            .with_queue(
                test_queue("first").with_max_concurrent_jobs(2).with_worker(
                    worker{"a", [](const job&) {}}))
            .with_queue(
                test_queue("second").with_max_concurrent_jobs(1).with_worker(
                    worker{"b", [](const job&) {}})));
    auto names = bg.registered_names();
    std::set<std::string> got(names.begin(), names.end());
    // The scheduler too: every node running a queue has one (for the
    // schedules added at run time).
    std::set<std::string> want{
        "first",  "first/store",  "first/executor/0", "first/executor/1",
        "second", "second/store", "second/executor/0", "scheduler"};
    CHECK(test::eventually([&] {
      auto ns = bg.registered_names();
      return std::set<std::string>(ns.begin(), ns.end()) == want;
    }));
    CHECK(bg.lookup("first"));
    CHECK(bg.lookup("second"));
    CHECK(bg.lookup("first") != bg.lookup("second"));
    CHECK_FALSE(bg.lookup("third"));
    CHECK(lookup(*sys, "second") == bg.lookup("second"));
    CHECK_FALSE(lookup(*sys, "third"));
    CHECK(sys->registry().get<caf::actor>(system_registry_key) == bg.actor());
  }

  BG_JOBS_RUNTIME_CASE(
      "jobs running at once never exceed max_concurrent_jobs") {
    std::atomic<int> active{0};
    std::atomic<int> peak{0};
    auto bg = start(make_builder().with_queue(
        test_queue("q").with_max_concurrent_jobs(3).with_worker(worker{
            "j", [&](const job&) {
              int now = ++active;
              int seen = peak;
              while (now > seen && !peak.compare_exchange_weak(seen, now))
                ;
              std::this_thread::sleep_for(5ms);
              --active;
            }})));
    REQUIRE(bg.enqueue_many(std::vector<job_request>(30, job_request{"j"})));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 30));
    CHECK(peak.load() <= 3);
    CHECK(peak.load() >= 2);
    MESSAGE("peak concurrency " << peak.load() << " of 3");
  }

  BG_JOBS_RUNTIME_CASE("an enqueue wakes an idle queue well within its poll "
                       "interval") {
    std::atomic<int64_t> started_us{0};
    auto bg = start(make_builder().with_queue(
        test_queue("q").with_poll_interval(2000ms).with_worker(worker{
            "j", [&](const job&) {
              started_us =
                  std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
            }})));
    REQUIRE(log.wait_for(event_kind::queue_polling_started));
    auto j = bg.enqueue(job_request{"j"});
    auto returned = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count();
    REQUIRE(j);
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    auto latency_us = started_us.load() - returned;
    MESSAGE("enqueue-to-start latency on an idle queue: " << latency_us
                                                          << " us");
    CHECK(latency_us < 500'000);
  }

  BG_JOBS_RUNTIME_CASE(
      "on start a node releases what it left reserved earlier") {
    auto db = store();
    auto mine = db->enqueue_job(job_request{"j"});
    auto theirs = db->enqueue_job(job_request{"j"});
    REQUIRE(db->reserve_jobs({{"j"}, 1, "test-node/default/7", ""}));
    REQUIRE(db->reserve_jobs({{"j"}, 1, "other-node/default/1", ""}));
    auto bg = start(make_builder().with_queue(
        test_queue("default").with_worker(worker{"j", [](const job&) {}})));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    auto done = test::succeeded(*db, 10);
    REQUIRE(done);
    REQUIRE(done->size() == 1);
    CHECK(done->front().id == mine->id);
    auto running = test::running(*db);
    REQUIRE(running);
    REQUIRE(running->size() == 1);
    CHECK(running->front().id == theirs->id);
    CHECK(running->front().reserved_by == "other-node/default/1");
    CHECK(log.count(event_kind::job_released) == 1);
  }

  BG_JOBS_RUNTIME_CASE("a throwing listener is reported once and otherwise "
                       "ignored") {
    int calls = 0;
    auto bg = start(make_builder()
                        .with_event_listener([&](const event&) {
                          ++calls;
                          throw std::runtime_error("listener bug");
                        })
                        .with_queue(test_queue("q").with_worker(
                            worker{"j", [](const job&) {}})));
    REQUIRE(bg.enqueue(job_request{"j"}));
    REQUIRE(bg.enqueue(job_request{"j"}));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 2));
    bg.flush_events();
    auto errors = log.of(event_kind::listener_error);
    REQUIRE(errors.size() == 1);
    CHECK(errors.front().message.find("listener bug") != std::string::npos);
    CHECK(calls > 2);
  }

  BG_JOBS_RUNTIME_CASE(
      "per-queue listeners receive only their queue's events") {
    test::event_log mine;
    auto bg =
        start(make_builder()
                  .with_queue(test_queue("first")
                                  .with_event_listener(mine.listener())
                                  .with_worker(worker{"a", [](const job&) {}}))
                  .with_queue(test_queue("second").with_worker(
                      worker{"b", [](const job&) {}})));
    REQUIRE(bg.enqueue(job_request{"a"}));
    REQUIRE(bg.enqueue(job_request{"b"}));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 2));
    bg.flush_events();
    auto ok = mine.of(event_kind::job_succeeded);
    REQUIRE(ok.size() == 1);
    CHECK(ok.front().queue == "first");
    REQUIRE(bg.shutdown());
  }

  BG_JOBS_RUNTIME_CASE("an unexpected message is reported and harms nothing") {
    auto bg = start(make_builder().with_queue(
        test_queue("q").with_worker(worker{"j", [](const job&) {}})));
    auto q = bg.lookup("q");
    caf::anon_send(q, std::string{"nobody handles this"});
    caf::anon_send(bg.actor(), 42);
    REQUIRE(log.wait_for(event_kind::queue_error, 2));
    REQUIRE(bg.enqueue(job_request{"j"}));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    CHECK(bg.lookup("q") == q);
  }

  BG_JOBS_RUNTIME_CASE(
      "a hung handler is timed out and the queue goes on at full "
      "concurrency") {
    auto gate = std::make_shared<test::gate>();
    auto saw_cancel = std::make_shared<std::atomic<bool>>(false);
    std::atomic<int> active{0};
    std::atomic<int> peak{0};
    auto bg = start(make_builder().with_queue(
        test_queue("q")
            .with_max_concurrent_jobs(2)
            .with_max_retries(0)
            .with_worker(worker{
                "hang",
                [gate, saw_cancel](const job&, const job_context& ctx) {
                  gate->wait(60s);
                  *saw_cancel = ctx.cancelled();
                }}.with_timeout(200ms))
            .with_worker(worker{"quick", [&](const job&) {
                                  int now = ++active;
                                  int seen = peak;
                                  while (now > seen &&
                                         !peak.compare_exchange_weak(seen, now))
                                    ;
                                  std::this_thread::sleep_for(5ms);
                                  --active;
                                }})));
    REQUIRE(bg.enqueue(job_request{"hang"}));
    REQUIRE(log.wait_for(event_kind::job_started));
    REQUIRE(
        bg.enqueue_many(std::vector<job_request>(40, job_request{"quick"})));
    REQUIRE(log.wait_for(event_kind::job_failed));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 40));
    auto failed = test::failed(*store(), 1);
    REQUIRE(failed);
    CHECK(failed->front().name == "hang");
    CHECK(failed->front().error == "timed out after 200 ms");
    CHECK(peak.load() == 2);
    gate->open();
    CHECK(test::eventually([&] { return saw_cancel->load(); }));
  }

  BG_JOBS_RUNTIME_CASE("a handler that throws a non-standard exception is "
                       "contained") {
    auto bg = start(make_builder().with_queue(
        test_queue("q")
            .with_max_retries(0)
            .with_worker(worker{"odd", [](const job&) { throw 42; }})
            .with_worker(worker{"ok", [](const job&) {}})));
    REQUIRE(bg.enqueue(job_request{"odd"}));
    REQUIRE(log.wait_for(event_kind::job_failed));
    REQUIRE(bg.enqueue(job_request{"ok"}));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    auto failed = test::failed(*store(), 1);
    REQUIRE(failed);
    CHECK(failed->front().error ==
          "handler threw a non-standard exception");
  }

  BG_JOBS_RUNTIME_CASE("the builder refuses invalid settings") {
    auto code = [&](const builder& b) {
      auto err = b.validate();
      REQUIRE(err);
      MESSAGE(describe(err));
      return code_of(err);
    };
    auto w = worker{"j", [](const job&) {}};
    CHECK(code(make_builder()
                   .with_queue(test_queue("q").with_worker(w))
                   .with_queue(test_queue("q").with_worker(w))) ==
          errc::invalid_config);
    CHECK(code(make_builder().with_queue(test_queue("empty"))) ==
          errc::invalid_config);
    CHECK(code(make_builder().with_queue(
              test_queue("q").with_worker(w).with_max_concurrent_jobs(0))) ==
          errc::invalid_config);
    // The bound `scale` applies holds at build too.
    CHECK(code(make_builder().with_queue(
              test_queue("q").with_worker(w).with_max_concurrent_jobs(
                  queue_spec::max_concurrency + 1))) == errc::invalid_config);
    CHECK_FALSE(make_builder()
                    .with_queue(test_queue("q").with_worker(w).with_max_concurrent_jobs(
                        queue_spec::max_concurrency))
                    .validate());
    CHECK(code(make_builder().with_queue(
              test_queue("q").with_worker(w).with_poll_interval(0ms))) ==
          errc::invalid_config);
    // The poll's default depends on whether the node listens; one set is
    // kept either way.
    CHECK(queue_spec{"q"}.poll_interval(true) == 5s);
    CHECK(queue_spec{"q"}.poll_interval(false) == 1s);
    CHECK(queue_spec{"q"}.poll_interval() == 1s);
    CHECK(queue_spec{"q"}.with_poll_interval(30s).poll_interval(true) == 30s);
    CHECK(queue_spec{"q"}.with_poll_interval(30s).poll_interval(false) == 30s);
    CHECK(code(make_builder().with_queue(
              test_queue("q").with_worker(w).with_max_retries(-1))) ==
          errc::invalid_config);
    CHECK(code(make_builder().with_queue(
              test_queue("q").with_worker(w).with_init_timeout(-5ms))) ==
          errc::invalid_config);
    CHECK(code(make_builder().with_supervisor_frequency_period(0ms)) ==
          errc::invalid_config);
    CHECK(code(make_builder().with_node_name("a/b")) == errc::invalid_config);
    CHECK(code(make_builder().with_queue(
              test_queue("q").with_worker(w).with_worker(w))) ==
          errc::invalid_config);
    // Names that could not be stored or read back: not UTF-8, a NUL, a
    // control character; for workers, queues and scheduled jobs alike.
    auto named = [](std::string n) { return worker{n, [](const job&) {}}; };
    for (auto n : {std::string{"bad\xff"}, std::string{"bi\0nul", 6},
                   std::string{"line\nbreak"}}) {
      CHECK(code(make_builder().with_queue(test_queue("q").with_worker(
                named(n)))) == errc::invalid_config);
      CHECK(code(make_builder().with_queue(test_queue(n).with_worker(w))) ==
            errc::invalid_config);
      CHECK(code(make_builder().with_scheduled_job(scheduled_job_spec{
                named(n), new_interval_minutes(5)})) == errc::invalid_config);
    }
    // One job name on two queues would leave one of them idle.
    CHECK(code(make_builder()
                   .with_queue(test_queue("a").with_worker(w))
                   .with_queue(test_queue("b").with_worker(w))) ==
          errc::invalid_config);
    CHECK_FALSE(
        make_builder().with_queue(test_queue("q").with_worker(w)).validate());
    auto bad = make_builder().with_queue(test_queue("q")).build(*sys);
    REQUIRE_FALSE(bad);
    CHECK(code_of(bad.error()) == errc::invalid_config);
  }

  BG_JOBS_RUNTIME_CASE("hostile requests get clear errors and the runtime "
                       "goes on") {
    auto bg = start(make_builder().with_queue(
        test_queue("q").with_worker(worker{"j", [](const job&) {}})));
    std::string deep(100000, '[');
    deep += std::string(100000, ']');
    auto parsed = job_request::parse("j", deep);
    REQUIRE_FALSE(parsed);
    CHECK(code_of(parsed.error()) == errc::invalid_payload);
    nlohmann::json nested = nlohmann::json::array();
    for (int i = 0; i < 100000; ++i)
      nested = nlohmann::json::array({std::move(nested)});
    auto too_deep = bg.enqueue(job_request{"j", std::move(nested)});
    REQUIRE_FALSE(too_deep);
    CHECK(code_of(too_deep.error()) == errc::invalid_payload);
    auto nul = bg.enqueue(job_request{std::string{"j\0x", 3}});
    REQUIRE_FALSE(nul);
    CHECK(code_of(nul.error()) == errc::no_worker_for_job);
    auto far = bg.enqueue(
        job_request{"j"}.available_in(std::chrono::milliseconds::max()));
    REQUIRE_FALSE(far);
    CHECK(code_of(far.error()) == errc::invalid_argument);
    auto nan = bg.enqueue(
        job_request{"j", {{"x", std::numeric_limits<double>::quiet_NaN()}}});
    REQUIRE_FALSE(nan);
    CHECK(code_of(nan.error()) == errc::invalid_payload);
    auto bulk = bg.enqueue_many({job_request{"j"}, job_request{"j\n"}});
    REQUIRE_FALSE(bulk);
    CHECK(store()->stats()->total() == 0);
    // Still serving.
    REQUIRE(bg.enqueue(job_request{"j"}));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
  }

  TEST_CASE_FIXTURE(sqlite_runtime_fixture, "build checks the store") {
    auto w = worker{"j", [](const job&) {}};
    auto missing = builder{sqlite_adapter::factory({"/no/such/dir/jobs.db"})}
                       .with_queue(test_queue("q").with_worker(w))
                       .build(*sys);
    REQUIRE_FALSE(missing);
    CHECK(code_of(missing.error()) == errc::database_unavailable);
    auto unmigrated = builder{sqlite_adapter::factory({dir().file("new.db")})}
                          .with_queue(test_queue("q").with_worker(w))
                          .build(*sys);
    REQUIRE_FALSE(unmigrated);
    CHECK(code_of(unmigrated.error()) == errc::schema_missing);
    CHECK(describe(unmigrated.error()).find("migrate_up") != std::string::npos);
    auto migrated = builder{sqlite_adapter::factory({dir().file("new.db")})}
                        .with_migrations()
                        .with_queue(test_queue("q").with_worker(w))
                        .build(*sys);
    CHECK(migrated);
  }

  BG_JOBS_RUNTIME_CASE("one of two nodes runs the store-wide upkeep, and "
                       "hands it over when it stops") {
    test::event_log second_log;
    auto w = worker{"j", [](const job&) {}};
    auto first = start(make_builder()
                           .with_node_lease(3s)
                           .with_queue(test_queue("q").with_worker(w)));
    REQUIRE(log.wait_for(event_kind::maintenance_leader));
    auto second = start(builder{the_store->factory()}
                            .with_node_name("second-node")
                            .with_node_lease(3s)
                            .with_event_listener(second_log.listener())
                            .with_queue(test_queue("q").with_worker(w)));
    REQUIRE(first.enqueue(job_request{"j"}));
    REQUIRE(test::eventually([&] {
      return log.count(event_kind::job_succeeded) +
                 second_log.count(event_kind::job_succeeded) ==
             1;
    }));
    CHECK(second_log.count(event_kind::maintenance_leader) == 0);
    REQUIRE(first.shutdown());
    // Given up at once, not left to expire: free, or the second node's
    // already (a try under its name succeeds in both cases only).
    auto probe = store();
    auto held = probe->hold_lease(leader_service::lease_name, "second-node",
                                  2000ms);
    REQUIRE(held);
    CHECK(*held);
    CHECK(second_log.wait_for(event_kind::maintenance_leader));
    auto took = second_log.of(event_kind::maintenance_leader);
    REQUIRE(took.size() == 1);
    CHECK(took[0].message.find("second-node runs") != std::string::npos);
    REQUIRE(second.shutdown());
  }

  BG_JOBS_RUNTIME_CASE("a restarted registry knows every actor again and still "
                       "releases a dead queue's jobs") {
    auto gate = std::make_shared<test::gate>();
    auto bg = start(
        make_builder()
            .with_queue(test_queue("q").with_max_concurrent_jobs(2).with_worker(
                worker{"slow",
                       [gate](const job& j) {
                         if (j.attempts == 1)
                           gate->wait();
                       }}))
            .with_scheduled_job(scheduled_job_spec{
                worker{"tick", [](const job&) {}}, new_interval_minutes(60)}));
    auto registry = sys->registry().get<caf::actor>(registry_registry_key);
    REQUIRE(registry);
    REQUIRE(bg.lookup("tick/scheduler"));
    caf::anon_send_exit(registry, crash());
    REQUIRE(log.wait_for(event_kind::supervisor_restart));
    REQUIRE(test::eventually([&] {
      auto fresh = sys->registry().get<caf::actor>(registry_registry_key);
      return fresh && fresh != registry && bg.lookup("tick/scheduler") &&
             bg.lookup("q/executor/1") && bg.lookup("q");
    }));
    // The new registry knows the queue as an owner: its death releases.
    REQUIRE(bg.enqueue(job_request{"slow"}));
    REQUIRE(log.wait_for(event_kind::job_started));
    caf::anon_send_exit(bg.lookup("q"), crash());
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    gate->open();
    auto downs = log.of(event_kind::actor_down);
    bool released = false;
    for (auto& d : downs)
      released = released || (d.message.find("'q' died") != std::string::npos &&
                              d.message.find("1 reserved job(s) released") !=
                                  std::string::npos);
    CHECK(released);
  }

  BG_JOBS_RUNTIME_CASE("a process without workers enqueues the names it "
                       "declares, for workers elsewhere") {
    // The web tier: no queue, one declared name.
    auto web =
        start(make_builder().with_node_name("web").with_enqueued_job_names(
            {"send_email"}));
    auto j = web.enqueue(job_request{"send_email", {{"to", "ada"}}});
    REQUIRE_MESSAGE(j, test::why(j));
    auto ids = web.enqueue_many({job_request{"send_email"}});
    REQUIRE_MESSAGE(ids, test::why(ids));
    auto other = web.enqueue(job_request{"resize_image"});
    REQUIRE_FALSE(other);
    CHECK(code_of(other.error()) == errc::no_worker_for_job);
    CHECK(describe(other.error()).find("with_enqueued_job_names") !=
          std::string::npos);
    // A worker process on the same store runs them.
    caf::actor_system_config cfg_b;
    cfg_b.set("scheduler.max-threads", 2);
    caf::actor_system sys_b{cfg_b};
    std::atomic<int> ran{0};
    auto worker_node = builder{the_store->factory()}
                           .with_node_name("worker")
                           .with_queue(test_queue("mail").with_worker(worker{
                               "send_email", [&](const job&) { ++ran; }}))
                           .build(sys_b);
    REQUIRE_MESSAGE(worker_node, test::why(worker_node));
    REQUIRE(test::eventually([&] { return ran == 2; }));
    REQUIRE(worker_node->shutdown());
    // A pure client accepts any valid name, and still refuses bad ones.
    auto client = builder{the_store->factory()}
                      .with_node_name("client")
                      .with_any_job_name()
                      .build(*sys);
    REQUIRE(client);
    CHECK(client->enqueue(job_request{"anything"}));
    CHECK_FALSE(client->enqueue(job_request{"bad\xff"}));
    REQUIRE(client->shutdown());
    CHECK(make_builder().with_enqueued_job_names({""}).validate());
  }

  BG_JOBS_RUNTIME_CASE("shutdown ends the listener's long wait for "
                       "wake-ups at once") {
    auto bg = start(make_builder().with_queue(
        test_queue("q").with_worker(worker{"j", [](const job&) {}})));
    REQUIRE(bg.enqueue(job_request{"j"}));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    // The listener now waits in slices of 10 s; the shutdown signals it.
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(bg.shutdown(5s));
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  }

  BG_JOBS_RUNTIME_CASE("a retry and a delayed job run when due, not at "
                       "the next poll") {
    // The poll would come in an hour: only the queue's own due-time
    // wake-ups can start these jobs.
    std::atomic<int> attempts{0};
    auto w =
        worker{"j", [&](const job& j) {
                 if (j.payload.value("fail_once", false) && attempts++ == 0)
                   throw std::runtime_error("first attempt fails");
               }};
    auto bg = start(
        make_builder().with_queue(queue_spec{"q"}
                                      .with_poll_interval(std::chrono::hours{1})
                                      .with_backoff(backoff::constant(200ms))
                                      .with_worker(w)));
    REQUIRE(bg.enqueue(job_request{"j", {{"fail_once", true}}}));
    REQUIRE(log.wait_for(event_kind::job_exception));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 1, 10s));
    CHECK(attempts == 2);
    REQUIRE(bg.enqueue(job_request{"j"}.available_in(300ms)));
    std::vector<job_request> later{job_request{"j"}.available_in(200ms),
                                   job_request{"j"}.available_in(250ms)};
    REQUIRE(bg.enqueue_many(later));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 4, 10s));
  }

  BG_JOBS_RUNTIME_CASE("a delayed job enqueued elsewhere runs when due, not "
                       "at the next poll") {
    // The poll would come in an hour, and the job is enqueued through a
    // connection of the test's own, as by another process: the store's
    // announcement wakes the queue, which finds nothing ready, reads when
    // the job comes due and looks again then.
    std::atomic<int64_t> started_ms{0};
    auto w = worker{"j", [&](const job&) {
                      started_ms = to_unix_ms(clock::system()->now());
                    }};
    auto bg = start(make_builder().with_queue(
        queue_spec{"q"}.with_poll_interval(std::chrono::hours{1}).with_worker(
            w)));
    auto other = store();
    auto j = test::value_of(
        other->enqueue_job(job_request{"j"}.available_in(1500ms)));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 1, 30s));
    // Not early (the store's clock and this one may differ by a little).
    CHECK(started_ms.load() >= to_unix_ms(j.available_at) - 100);
  }

  BG_JOBS_RUNTIME_CASE("shutdown keeps to its timeout when the tree does "
                       "not stop in time") {
    // The grace period outlasts the timeout: the tree would answer late.
    std::atomic<bool> started{false};
    auto w = worker{"slow", [&](const job&, const job_context& ctx) {
                      started = true;
                      auto until = std::chrono::steady_clock::now() + 20s;
                      while (!ctx.cancelled() &&
                             std::chrono::steady_clock::now() < until)
                        std::this_thread::sleep_for(5ms);
                      return outcome::success();
                    }};
    auto bg = start(make_builder()
                        .with_shutdown_grace_period(30s)
                        .with_queue(queue_spec{"q"}
                                        .with_poll_interval(20ms)
                                        .with_worker(w)));
    REQUIRE(bg.enqueue(job_request{"slow"}));
    REQUIRE(test::eventually([&] { return started.load(); }));
    auto t0 = std::chrono::steady_clock::now();
    auto r = bg.shutdown(3s);
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK_FALSE(r);
    CHECK(code_of(r.error()) == errc::timeout);
    // One deadline: the answer and the exit share the 3 s (not 3 s each).
    CHECK(took < 5s);
  }

  BG_JOBS_RUNTIME_CASE("the typed handle reaches the bg_jobs actor") {
    auto bg = start(make_builder().with_queue(
        queue_spec{"q"}.with_worker(worker{"j", [](const job&) {}})));
    caf::scoped_actor self{*sys};
    int64_t id = 0;
    self->request(bg.typed(), 10s, enqueue_atom::value,
                  job_request{"j"}.available_in(1h))
        .receive([&](const job& j) { id = j.id; },
                 [&](caf::error& err) { FAIL(sys->render(err)); });
    REQUIRE(id > 0);
    self->request(bg.typed(), 10s, cancel_atom::value, id,
                  std::string{"typed"})
        .receive(
            [&](const job_record& r) {
              CHECK(r.state == job_state::cancelled);
            },
            [&](caf::error& err) { FAIL(sys->render(err)); });
    REQUIRE(log.wait_for(event_kind::job_cancelled, 1));
    self->request(bg.typed(), 10s, stats_atom::value)
        .receive(
            [&](const stats_report& r) {
              REQUIRE(r.queues.size() == 1);
              CHECK(r.queues[0].counts.cancelled == 1);
            },
            [&](caf::error& err) { FAIL(sys->render(err)); });
  }

} // TEST_SUITE
