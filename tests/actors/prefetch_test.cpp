// Fetching ahead: a queue reserves jobs beyond its free executors once its
// handlers are known to be quick, and those jobs stay the queue's like
// running ones (cancel, shutdown); with prefetch 0 it reserves only what
// its executors can start.
#include <atomic>
#include <thread>

#include "actors/runtime_fixture.hpp"
#include "support/expect.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;
using test::runtime_fixture;
using test::value_of;

namespace {

/// One executor, a handler that is quick unless the payload says "block".
struct blocking_queue {
  test::gate hold;
  std::atomic<int> runs{0};

  queue_spec spec(int prefetch) {
    auto w = worker{"j", [this](const job& j) {
                      ++runs;
                      if (j.payload.value("block", false))
                        hold.wait();
                    }};
    return queue_spec{"q"}
        .with_poll_interval(20ms)
        .with_max_concurrent_jobs(1)
        .with_prefetch(prefetch)
        .with_worker(w);
  }
};

int64_t reserved(db_adapter& db) {
  auto st = db.stats();
  return st ? st->reserved : -1;
}

/// The quick jobs that set the queue's pace: enough that one slowed by a
/// loaded machine does not hold its average up.
constexpr int pace_jobs = 20;

/// `pace_jobs` quick jobs (so that the queue knows its pace), then a
/// blocking one followed by `n` quick ones; returns the ids of the quick
/// ones.
std::vector<int64_t> enqueue_behind_blocker(instance& bg, test::event_log& log,
                                            int n) {
  for (int i = 0; i < pace_jobs; ++i)
    value_of(bg.enqueue(job_request{"j"}));
  REQUIRE(log.wait_for(event_kind::job_succeeded, pace_jobs));
  std::vector<job_request> reqs{job_request{"j", {{"block", true}}}};
  for (int i = 0; i < n; ++i)
    reqs.emplace_back("j", nlohmann::json{{"i", i}});
  auto ids = value_of(bg.enqueue_many(reqs));
  REQUIRE(log.wait_for(event_kind::job_started, pace_jobs + 1));
  return {ids.begin() + 1, ids.end()};
}

} // namespace

TEST_SUITE("prefetch") {

  BG_JOBS_RUNTIME_CASE("a quick queue holds jobs ahead, a cancel ends one "
                       "unrun and shutdown gives the rest back") {
    blocking_queue q;
    auto bg = start(
        make_builder().with_shutdown_grace_period(50ms).with_queue(q.spec(50)));
    auto db = store();
    auto quick = enqueue_behind_blocker(bg, log, 30);
    // The blocker runs and the 30 behind it are reserved too.
    REQUIRE(test::eventually([&] { return reserved(*db) == 31; }, 10s));
    // The first quick one waits in the executor, behind the blocker (quick
    // jobs are handed over a few at a time); the last one in the queue.
    for (auto id : {quick.front(), quick.back()}) {
      auto asked = value_of(bg.cancel(id, "not needed"));
      CHECK(asked.state == job_state::running);
    }
    REQUIRE(log.wait_for(event_kind::job_cancelled, 2));
    for (auto id : {quick.front(), quick.back()}) {
      auto rec = value_of(bg.get_job(id));
      CHECK(rec.state == job_state::cancelled);
      CHECK(rec.error == "not needed");
    }
    CHECK(q.runs == pace_jobs + 1);
    CHECK(bg.shutdown());
    q.hold.open();
    auto st = value_of(db->stats());
    CHECK(st.reserved == 0);
    CHECK(st.available == 29); // the blocker and 28 quick ones
    CHECK(value_of(db->get_job(quick[1])).attempts == 0);
    CHECK(q.runs == pace_jobs + 1);
  }

  BG_JOBS_RUNTIME_CASE("with prefetch 0 a queue reserves only what its "
                       "executors start") {
    blocking_queue q;
    auto bg = start(
        make_builder().with_shutdown_grace_period(50ms).with_queue(q.spec(0)));
    auto db = store();
    enqueue_behind_blocker(bg, log, 30);
    CHECK(reserved(*db) == 1);
    // Polls (every 20 ms) come and go while the blocker runs; none
    // reserves more.
    for (int i = 0; i < 5; ++i) {
      std::this_thread::sleep_for(20ms);
      CHECK(reserved(*db) == 1);
    }
    q.hold.open();
    REQUIRE(log.wait_for(event_kind::job_succeeded, pace_jobs + 31));
    CHECK(q.runs == pace_jobs + 31);
  }
}
