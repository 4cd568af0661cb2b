// A schedule added at run time, run by three processes that really die:
// every second, runs of 1.2 s, overlap "skip". The node running an
// occurrence is killed with SIGKILL; its run is rescued and run again, and
// no two runs of the schedule ever overlap.
#include <csignal>
#include <fstream>
#include <map>
#include <sstream>

#include <doctest/doctest.h>

#include "bg_jobs/control/detail/control_plane.hpp"
#include "reliability/node_targets.hpp"
#include "support/expect.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace bg_jobs::test;
using namespace std::chrono_literals;

namespace {

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct run_span {
  int64_t job = 0;
  int64_t start = 0;
  int64_t end = -1;
  std::string node;
};

/// The runs a span log records; those still open end at `open_end`.
std::vector<run_span> runs_in(const std::string& file, const std::string& node,
                              int64_t open_end) {
  std::ifstream in{file};
  std::map<int64_t, run_span> open;
  std::vector<run_span> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words{line};
    char what = 0;
    run_span s;
    s.node = node;
    // "S|E <job> <us> <reserved ms>" (no concurrency key: none is set).
    words >> what >> s.job >> s.start;
    if (what == 'S') {
      open[s.job] = s;
    } else if (auto i = open.find(s.job); i != open.end()) {
      i->second.end = s.start;
      out.push_back(i->second);
      open.erase(i);
    }
  }
  for (auto& [id, s] : open) {
    s.end = open_end;
    out.push_back(s);
  }
  return out;
}

} // namespace

TEST_SUITE("reliability") {

  TEST_CASE_TEMPLATE("a schedule's runs never overlap across three processes "
                     "while the one running it is killed",
                     T, sqlite_target, postgres_target) {
    T target;
    prepare(target, 0);
    auto db = target.open();
    {
      detail::control_plane cp{*db};
      schedule_definition d;
      d.name = "every-second";
      d.job = "work";
      d.cron = "* * * * * *";
      d.overlap = overlap_policy::skip;
      auto added = cp.put_schedule(d);
      REQUIRE_MESSAGE(added, why(added));
    }
    test::temp_dir dir;
    std::vector<std::string> names{"node-a", "node-b", "node-c"};
    std::vector<std::unique_ptr<child_process>> nodes;
    auto stop = dir.file("stop");
    for (auto& name : names)
      nodes.push_back(start_node(target.store(), name, 3,
                                 {"--lease-ms", "2000", "--sleep-ms", "1200",
                                  "--span-log", dir.file(name), "--stop-file",
                                  stop}));
    // The node running the schedule now.
    auto running = [&]() -> int {
      for (size_t i = 0; i < names.size(); ++i)
        for (auto& s : runs_in(dir.file(names[i]), names[i], 0))
          if (s.end == 0)
            return static_cast<int>(i);
      return -1;
    };
    int victim = -1;
    REQUIRE(test::eventually([&] { return (victim = running()) >= 0; }, 60s));
    nodes[victim]->kill(SIGKILL);
    nodes[victim]->wait(10s);
    auto killed_at = now_us();
    target.wait_until_gone(names[victim]);
    // The nodes left run until the killed run was run again and two more
    // runs started after it, however slow the machine.
    auto finished_after_kill = [&] {
      int n = 0;
      for (size_t i = 0; i < names.size(); ++i)
        if (static_cast<int>(i) != victim)
          for (auto& s : runs_in(dir.file(names[i]), names[i], -1))
            n += s.start > killed_at && s.end > 0 ? 1 : 0;
      return n;
    };
    CHECK(test::eventually([&] { return finished_after_kill() >= 3; }, 90s));
    std::ofstream{stop} << "stop\n";
    for (size_t i = 0; i < nodes.size(); ++i)
      if (static_cast<int>(i) != victim)
        CHECK(nodes[i]->wait(120s) == 0);
    std::vector<run_span> all;
    int64_t cut_job = 0;
    for (size_t i = 0; i < names.size(); ++i)
      for (auto& s :
           runs_in(dir.file(names[i]), names[i],
                   static_cast<int>(i) == victim ? killed_at : -1)) {
        REQUIRE(s.end >= 0); // only the killed node leaves runs open
        if (s.end == killed_at)
          cut_job = s.job;
        all.push_back(s);
      }
    std::sort(all.begin(), all.end(), [](auto& a, auto& b) {
      return a.start < b.start;
    });
    int overlaps = 0, after_kill = 0, reruns = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      if (i > 0 && all[i].start < all[i - 1].end)
        ++overlaps;
      after_kill += all[i].start > killed_at ? 1 : 0;
      reruns += all[i].job == cut_job && all[i].end != killed_at ? 1 : 0;
    }
    std::string trace;
    for (auto& s : all)
      trace += s.node + " job " + std::to_string(s.job) + " " +
               std::to_string((s.end - s.start) / 1000) + " ms; ";
    MESSAGE(all.size() << " runs: " << trace);
    CHECK(cut_job > 0);
    CHECK(overlaps == 0);
    // The killed run was rescued and ran again, and the schedule went on.
    CHECK(reruns == 1);
    CHECK(after_kill >= 2);
    // Each occurrence ran to its end once.
    std::map<int64_t, int> finished;
    for (auto& s : all)
      if (s.end != killed_at)
        ++finished[s.job];
    for (auto& [job, n] : finished) {
      CAPTURE(job);
      CHECK(n == 1);
    }
  }
}
