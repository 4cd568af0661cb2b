// Lost replies, injected at the adapter seam: the store commits a call, and
// the queue never hears back. Nothing may be stranded or run twice.
#include <map>
#include <mutex>

#include <caf/send.hpp>

#include "actors/runtime_fixture.hpp"
#include "support/faulty_adapter.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

/// Counts how often each job ran.
struct runs {
  std::mutex mtx;
  std::map<int64_t, int> by_id;

  worker make(std::string name) {
    return worker{std::move(name), [this](const job& j) {
                    std::lock_guard<std::mutex> guard{mtx};
                    ++by_id[j.id];
                  }};
  }

  std::pair<size_t, size_t> distinct_and_twice() {
    std::lock_guard<std::mutex> guard{mtx};
    size_t twice = 0;
    for (auto& kvp : by_id)
      twice += kvp.second > 1 ? 1 : 0;
    return {by_id.size(), twice};
  }
};

/// A builder on the fixture's store whose connections lose the replies
/// `plan` names.
builder lossy(test::runtime_fixture& f,
              std::shared_ptr<test::fault_plan> plan) {
  return builder{test::faulty_adapter::wrap(f.the_store->factory(), plan)}
      .with_node_name("lossy-node")
      .with_event_listener(f.log.listener());
}

} // namespace

TEST_SUITE("reliability") {

  BG_JOBS_RUNTIME_CASE("reserves whose replies were lost strand no job") {
    auto plan = std::make_shared<test::fault_plan>();
    plan->lose_reserve_replies = 5;
    runs r;
    constexpr int n = 300;
    REQUIRE(
        store()->enqueue_jobs(std::vector<job_request>(n, job_request{"j"})));
    auto bg = start(lossy(*this, plan)
                        .with_queue(queue_spec{"q"}
                                        .with_max_concurrent_jobs(4)
                                        .with_poll_interval(20ms)
                                        .with_worker(r.make("j"))));
    REQUIRE(test::eventually([&] { return store()->stats()->succeeded == n; },
                             60s));
    CHECK(plan->lost == 5);
    auto st = store()->stats();
    CHECK(st->reserved == 0);
    CHECK(st->pending() == 0);
    auto [distinct, twice] = r.distinct_and_twice();
    CHECK(distinct == n);
    CHECK(twice == 0);
    // The jobs of each lost reply went back to the table, none ran there.
    auto released = log.of(event_kind::job_released);
    CHECK(released.size() >= 5);
    for (auto& e : released)
      CHECK(e.message == "reserved by a call whose reply was lost");
    MESSAGE(plan->lost << " reserve replies lost, " << released.size()
                       << " reserved jobs released, none ran twice");
  }

  BG_JOBS_RUNTIME_CASE("a queue that dies while its claim is on its way "
                       "strands none of the jobs the claim reserves") {
    auto plan = std::make_shared<test::fault_plan>();
    plan->hold_next_claim = true;
    runs r;
    constexpr int n = 20;
    REQUIRE(
        store()->enqueue_jobs(std::vector<job_request>(n, job_request{"j"})));
    auto bg = start(lossy(*this, plan)
                        .with_queue(queue_spec{"q"}
                                        .with_max_concurrent_jobs(2)
                                        .with_poll_interval(20ms)
                                        .with_worker(r.make("j"))));
    // The first claim waits before it goes to the store.
    REQUIRE(plan->await_held_claim(10s));
    auto q = bg.lookup("q");
    REQUIRE(q);
    // A crash (a kill would take the supervisor down with it).
    caf::anon_send_exit(q, caf::exit_reason::unhandled_exception);
    REQUIRE(test::eventually([&] {
      auto now = bg.lookup("q");
      return now && now != q;
    }));
    // The registry released what the queue held when it died (nothing).
    // Now the claim reserves for the dead queue and answers nobody; its
    // claimer exits, and the registry releases what the claim reserved, for
    // the restarted queue to run.
    plan->release_claim();
    REQUIRE(test::eventually([&] { return store()->stats()->succeeded == n; },
                             30s));
    CHECK(store()->stats()->reserved == 0);
    auto [distinct, twice] = r.distinct_and_twice();
    CHECK(distinct == n);
    CHECK(twice == 0);
  }

  BG_JOBS_RUNTIME_CASE("completions whose replies were lost run no job "
                       "twice") {
    auto plan = std::make_shared<test::fault_plan>();
    plan->lose_complete_replies = 5;
    runs r;
    auto bg = start(lossy(*this, plan)
                        .with_queue(queue_spec{"q"}
                                        .with_max_concurrent_jobs(2)
                                        .with_poll_interval(20ms)
                                        .with_worker(r.make("j"))));
    // One at a time, so that each outcome is written on its own.
    constexpr int n = 30;
    for (int i = 0; i < n; ++i) {
      REQUIRE(bg.enqueue(job_request{"j"}));
      REQUIRE(test::eventually(
          [&] { return store()->stats()->succeeded == i + 1; }));
    }
    CHECK(plan->lost == 5);
    auto st = store()->stats();
    CHECK(st->reserved == 0);
    CHECK(st->pending() == 0);
    auto [distinct, twice] = r.distinct_and_twice();
    CHECK(distinct == n);
    CHECK(twice == 0);
  }

  BG_JOBS_RUNTIME_CASE("an enqueue whose reply was lost is retried safely "
                       "with its unique key") {
    auto plan = std::make_shared<test::fault_plan>();
    plan->lose_enqueue_replies = 1;
    runs r;
    auto bg = start(
        lossy(*this, plan)
            .with_queue(queue_spec{"q"}.with_poll_interval(20ms).with_worker(
                r.make("charge"))));
    // An idempotency key: the job keeps it also once it succeeded.
    unique_options u;
    u.key = "order-4711";
    u.include_succeeded = true;
    auto req = job_request{"charge", {{"order", 4711}}}.with_unique(u);
    auto lost = bg.enqueue(req);
    REQUIRE_FALSE(lost);
    CHECK(code_of(lost.error()) == errc::connection_lost);
    // The store has the job; the caller cannot know, so it tries again.
    auto again = bg.enqueue(req);
    REQUIRE_MESSAGE(again, test::why(again));
    CHECK(again->conflict);
    REQUIRE(test::eventually([&] { return store()->stats()->succeeded == 1; }));
    auto third = bg.enqueue(req);
    REQUIRE(third);
    CHECK(third->conflict);
    CHECK(third->id == again->id);
    auto [distinct, twice] = r.distinct_and_twice();
    CHECK(distinct == 1);
    CHECK(twice == 0);
    CHECK(store()->stats()->total() == 1);
  }

} // TEST_SUITE
