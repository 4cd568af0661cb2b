// Concurrency limits through the runtime, on every store: a hot key holds
// back no other key, and no key ever runs more than its limit, as seen by
// the handlers themselves.
#include <algorithm>
#include <map>
#include <mutex>
#include <thread>

#include "actors/runtime_fixture.hpp"
#include "support/expect.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

using test::require_ok;
using test::value_of;

/// What the handlers saw: how many of each key ran at once, at most, and
/// how many of each finished.
struct key_watch {
  std::mutex mtx;
  std::map<std::string, int> running;
  std::map<std::string, int> most;
  std::map<std::string, int> done;

  void begin(const std::string& k) {
    std::lock_guard<std::mutex> guard{mtx};
    auto n = ++running[k];
    most[k] = std::max(most[k], n);
  }

  void end(const std::string& k) {
    std::lock_guard<std::mutex> guard{mtx};
    --running[k];
    ++done[k];
  }

  int finished(const std::string& k) {
    std::lock_guard<std::mutex> guard{mtx};
    return done[k];
  }

  int finished_except(const std::string& k) {
    std::lock_guard<std::mutex> guard{mtx};
    int n = 0;
    for (auto& [key, count] : done)
      if (key != k)
        n += count;
    return n;
  }

  int most_at_once() {
    std::lock_guard<std::mutex> guard{mtx};
    int n = 0;
    for (auto& [key, count] : most)
      n = std::max(n, count);
    return n;
  }
};

} // namespace

TEST_SUITE("limits") {

  BG_JOBS_RUNTIME_CASE("100 keys of 20 jobs finish while a hot key of 2,000 "
                       "jobs waits its turn, no key above its limit") {
    key_watch watch;
    auto w = worker{"j", [&](const job& j) {
                      auto key = j.concurrency_key;
                      watch.begin(key);
                      // The hot key's jobs take long enough that it cannot
                      // finish in less than 20 s at 2 at a time.
                      std::this_thread::sleep_for(key == "hot" ? 20ms : 1ms);
                      watch.end(key);
                    }};
    auto bg = start(make_builder().with_queue(
        queue_spec{"q"}
            .with_poll_interval(50ms)
            .with_max_concurrent_jobs(20)
            .with_key_limit(2)
            .with_worker(w)));
    // The hot key's jobs go in first: in priority order they are ahead of
    // every other job.
    std::vector<job_request> hot;
    for (int i = 0; i < 2000; ++i)
      hot.push_back(job_request{"j", {{"i", i}}}.with_concurrency_key("hot"));
    value_of(bg.enqueue_many(hot));
    std::vector<job_request> others;
    for (int i = 0; i < 20; ++i)
      for (int k = 0; k < 100; ++k)
        others.push_back(job_request{"j", {{"i", i}}}.with_concurrency_key(
            "tenant:" + std::to_string(k)));
    value_of(bg.enqueue_many(others));
    CHECK(test::eventually([&] { return watch.finished_except("hot") == 2000; },
                           60s));
    auto hot_done = watch.finished("hot");
    INFO("hot jobs finished when the others were done: " << hot_done);
    CHECK(hot_done < 2000);
    require_ok(bg.shutdown());
    CHECK(watch.most_at_once() <= 2);
    std::lock_guard<std::mutex> guard{watch.mtx};
    // Every key did run two at once at some point: the limit, not the
    // claim, set the pace.
    CHECK(watch.most["hot"] == 2);
  }

} // TEST_SUITE
