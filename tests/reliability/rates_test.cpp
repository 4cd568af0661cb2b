// A rate limit across processes: two node processes drain under a limit of
// 50 starts a second (bursts of 10) for 20 s while one of them is killed
// with SIGKILL and replaced, and a handler's back-pressure on one process
// holds the key on the other.
#include <csignal>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <doctest/doctest.h>

#include "reliability/node_targets.hpp"
#include "support/expect.hpp"
#include "support/store_reads.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace bg_jobs::test;
using namespace std::chrono_literals;

namespace {

/// One handler start from a node's span log.
struct start {
  int64_t job = 0;
  std::string key;
  /// When the handler started (wall clock, µs).
  int64_t us = 0;
  /// When the claim counted it (the store's clock, ms).
  int64_t claimed_ms = 0;
};

std::vector<start> starts_in(const std::string& file, char what = 'S') {
  std::ifstream in{file};
  std::vector<start> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words{line};
    char w = 0;
    start s;
    words >> w >> s.job >> s.key >> s.us >> s.claimed_ms;
    if (w == what)
      out.push_back(s);
  }
  return out;
}

/// The most of `times` (sorted) in any window [t, t + width).
size_t most_in_window(const std::vector<int64_t>& times, int64_t width) {
  size_t most = 0, j = 0;
  for (size_t i = 0; i < times.size(); ++i) {
    while (j < times.size() && times[j] < times[i] + width)
      ++j;
    most = std::max(most, j - i);
  }
  return most;
}

} // namespace

TEST_SUITE("reliability") {

  TEST_CASE_TEMPLATE("a rate of 50 a second holds across two processes for "
                     "20 s while one is killed",
                     T, sqlite_target, postgres_target) {
    constexpr int allowed = 50, burst = 10;
    constexpr int jobs = burst + allowed * 20; // 20 s at the rate
    T target;
    prepare(target, 0);
    auto db = target.open();
    std::vector<job_request> reqs;
    for (int i = 0; i < jobs; ++i)
      reqs.push_back(std::move(job_request{"work", {{"i", i}}}
                                   .with_concurrency_key("all")
                                   .with_rate("all")));
    REQUIRE(db->enqueue_jobs(reqs));
    test::temp_dir dir;
    std::vector<std::string> names{"node-a", "node-b", "node-c"};
    auto rate = std::to_string(allowed) + ":1000:" + std::to_string(burst);
    auto start_one = [&](const std::string& name) {
      return start_node(target.store(), name, 4,
                        {"--rate", rate, "--lease-ms", "3000", "--span-log",
                         dir.file(name)});
    };
    auto a = start_one(names[0]);
    auto b = start_one(names[1]);
    // node-b is killed once it has run jobs, 5 s or more into the drain.
    REQUIRE(test::eventually(
        [&] { return starts_in(dir.file(names[1])).size() >= 50; }, 60s));
    b->kill(SIGKILL);
    b->wait(10s);
    auto c = start_one(names[2]);
    CHECK(a->wait(120s) == 0);
    CHECK(c->wait(120s) == 0);
    CHECK(succeeded(*db) == jobs);
    std::vector<int64_t> claimed, started;
    for (auto& name : names)
      for (auto& s : starts_in(dir.file(name))) {
        claimed.push_back(s.claimed_ms);
        started.push_back(s.us);
      }
    std::sort(claimed.begin(), claimed.end());
    std::sort(started.begin(), started.end());
    REQUIRE(claimed.size() >= static_cast<size_t>(jobs));
    // Counted by the store's clock, no second holds more than the rate
    // and the burst; the handlers' own starts lag their claims a little.
    auto most = most_in_window(claimed, 1000);
    auto most_started = most_in_window(started, 1'000'000);
    auto span_ms = claimed.back() - claimed.front();
    MESSAGE(claimed.size() << " starts over " << span_ms << " ms; at most "
                           << most << " in a second by claim, "
                           << most_started << " by handler start");
    CHECK(most <= static_cast<size_t>(allowed + burst));
    CHECK(most >= static_cast<size_t>(allowed)); // the limit was reached
    // Nothing ran faster than the rate over the whole drain.
    CHECK(span_ms >= (jobs - burst) * 1000 / allowed - 20);
  }

  TEST_CASE_TEMPLATE("a handler's back-pressure holds its key on every "
                     "process, and uses no attempt",
                     T, sqlite_target, postgres_target) {
    T target;
    prepare(target, 0);
    auto db = target.open();
    test::temp_dir dir;
    constexpr int64_t back_off_ms = 2000;
    std::vector<job_request> reqs;
    // The first job of key "a" reports a 429; then 40 more of "a" and 200
    // of "b" (a rate that does not bind).
    reqs.push_back(std::move(
        job_request{"work", {{"back_off_ms", back_off_ms},
                             {"once", dir.file("429")}}}
            .with_concurrency_key("a")
            .with_rate("a")));
    for (int i = 0; i < 240; ++i) {
      std::string key = i < 40 ? "a" : "b";
      reqs.push_back(std::move(
          job_request{"work", {{"i", i}}}.with_concurrency_key(key).with_rate(
              key)));
    }
    auto ids = db->enqueue_jobs(reqs);
    REQUIRE(ids);
    auto first = ids->front();
    std::vector<std::string> names{"node-a", "node-b"};
    std::vector<std::unique_ptr<child_process>> nodes;
    for (auto& name : names)
      nodes.push_back(start_node(target.store(), name, 2,
                                 {"--rate", "1000:1000:100", "--sleep-ms", "20",
                                  "--span-log", dir.file(name)}));
    for (auto& n : nodes)
      CHECK(n->wait(120s) == 0);
    CHECK(succeeded(*db) == 241);
    // When the back-off was reported, and which node saw it.
    int64_t blocked_at = -1;
    for (auto& name : names)
      for (auto& s : starts_in(dir.file(name), 'B'))
        blocked_at = s.us;
    REQUIRE(blocked_at > 0);
    // No job of "a" was claimed on either node while the key was blocked
    // (by the store's time of the claim; the block is written with the
    // outcome, within 300 ms of the handler's report); "b" went on.
    int a_during = 0, b_during = 0;
    auto reported_ms = blocked_at / 1000;
    for (auto& name : names)
      for (auto& s : starts_in(dir.file(name))) {
        bool during = s.claimed_ms > reported_ms + 300 &&
                      s.claimed_ms < reported_ms + back_off_ms - 100;
        if (during && s.key == "a")
          ++a_during;
        if (during && s.key == "b")
          ++b_during;
      }
    CHECK(a_during == 0);
    CHECK(b_during > 0);
    // The job that reported it ran again, on its first counted attempt.
    auto j = value_of(db->get_job(first));
    CHECK(j.state == job_state::succeeded);
    CHECK(j.attempts == 1);
  }
}
