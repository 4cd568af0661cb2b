// Processes that really die: SIGKILL mid-drain, and a node that never comes
// back. Every job must succeed; only jobs in flight at a kill may run twice.
#include <csignal>
#include <fstream>
#include <set>
#include <thread>

#include <doctest/doctest.h>
#include <pqxx/pqxx>
#include <sqlite3.h>

#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"
#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/queue_spec.hpp"
#include "reliability/node_targets.hpp"
#include "support/store_reads.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace bg_jobs::test;
using namespace std::chrono_literals;

TEST_SUITE("reliability") {

  TEST_CASE_TEMPLATE("SIGKILL mid-drain three times loses no job", T,
                     sqlite_target, postgres_target) {
    constexpr int n = 5000;
    constexpr int concurrency = 8;
    T target;
    prepare(target, n);
    auto db = target.open();
    int kills = 0;
    for (int k = 1; k <= 3; ++k) {
      auto node = start_node(target.store(), "worker", concurrency);
      REQUIRE(
          test::eventually([&] { return succeeded(*db) >= k * n / 4; }, 60s));
      node->kill(SIGKILL);
      node->wait(10s);
      ++kills;
    }
    auto last = start_node(target.store(), "worker", concurrency);
    CHECK(last->wait(120s) == 0);
    auto st = db->stats();
    REQUIRE(st);
    CHECK(st->succeeded == n);
    CHECK(st->pending() + st->reserved == 0);
    auto [total, distinct] = target.runs();
    CHECK(distinct == n);
    auto twice = total - distinct;
    // A kill can repeat the running jobs and the outcomes kept for the
    // next claim (at most half the prefetch).
    auto allowed = kills * (concurrency + queue_spec{"q"}.prefetch() / 2);
    MESSAGE(n << " jobs, " << kills << " kills: " << total << " runs, " << twice
              << " duplicated (at most " << allowed << " allowed)");
    CHECK(twice <= allowed);
  }

  TEST_CASE_TEMPLATE("without succeeded history SIGKILL mid-drain twice "
                     "loses no job, leaves no row and uses no id twice",
                     T, sqlite_target, postgres_target) {
    constexpr int n = 3000;
    constexpr int concurrency = 8;
    T target;
    prepare(target, n);
    auto db = target.open();
    auto greatest = target.query_int("SELECT max(id) FROM jobs");
    auto left = [&] {
      auto st = db->stats();
      return st ? st->pending() + st->reserved : int64_t{-1};
    };
    int kills = 0;
    for (int k = 1; k <= 2; ++k) {
      auto node = start_node(target.store(), "worker", concurrency,
                             {"--no-history"});
      REQUIRE(test::eventually(
          [&] {
            auto l = left();
            return l >= 0 && l <= n - k * n / 3;
          },
          60s));
      node->kill(SIGKILL);
      node->wait(10s);
      ++kills;
    }
    auto last =
        start_node(target.store(), "worker", concurrency, {"--no-history"});
    CHECK(last->wait(120s) == 0);
    auto st = db->stats();
    REQUIRE(st);
    CHECK(st->pending() + st->reserved == 0);
    CHECK(st->succeeded == 0);
    CHECK(target.query_int("SELECT count(*) FROM jobs_succeeded") == 0);
    // No table holds a job any more, yet no id is used twice.
    auto next = db->enqueue_job(job_request{"after"});
    REQUIRE(next);
    CHECK(next->id > greatest);
    auto [total, distinct] = target.runs();
    CHECK(distinct == n);
    auto allowed = kills * (concurrency + queue_spec{"q"}.prefetch() / 2);
    MESSAGE(n << " jobs, " << kills << " kills: " << total << " runs, "
              << total - distinct << " duplicated (at most " << allowed
              << " allowed)");
    CHECK(total - distinct <= allowed);
  }

  TEST_CASE_TEMPLATE("a killed node stops counting as a node of its queues "
                     "once silent, and its queue stays known",
                     T, sqlite_target, postgres_target) {
    T target;
    prepare(target, 200);
    auto db = target.open();
    // Jobs of a second: the node is busy (and alive) until it is killed.
    auto node = start_node(target.store(), "node-a", 2,
                           {"--lease-ms", "1000", "--sleep-ms", "1000"});
    auto nodes_of_work = [&](std::chrono::milliseconds silent_after) {
      auto queues = db->known_queues(silent_after);
      REQUIRE(queues);
      for (auto& q : *queues)
        if (q.queue == "work")
          return std::optional<std::vector<std::string>>{q.nodes};
      return std::optional<std::vector<std::string>>{};
    };
    auto runs_work = [&](std::chrono::milliseconds silent_after) {
      auto n = nodes_of_work(silent_after);
      return n && *n == std::vector<std::string>{"node-a"};
    };
    REQUIRE(test::eventually([&] { return runs_work(2s); }, 60s));
    node->kill(SIGKILL);
    node->wait(10s);
    // Silent for less than the default limit (30 s): it still counts.
    CHECK(runs_work(db_adapter::node_silence_limit));
    // Silent for 2 s: it no longer does, and the queue is still listed.
    REQUIRE(test::eventually(
        [&] {
          auto n = nodes_of_work(2s);
          REQUIRE(n);
          return n->empty();
        },
        30s));
  }

  TEST_CASE_TEMPLATE("a dead node's jobs are rescued by a live one", T,
                     sqlite_target, postgres_target) {
    constexpr int n = 1000;
    T target;
    prepare(target, n);
    auto db = target.open();
    test::temp_dir dir;
    auto report = dir.file("report");
    std::vector<std::string> lease{"--lease-ms", "1000"};
    auto doomed = start_node(target.store(), "node-a", 4, lease);
    auto survivor = start_node(target.store(), "node-b", 4,
                               {"--lease-ms", "1000", "--report", report});
    REQUIRE(test::eventually([&] { return succeeded(*db) >= n / 5; }, 60s));
    // The survivor is stopped while the dead node's jobs are counted, so
    // that it cannot rescue any of them before the count.
    survivor->kill(SIGSTOP);
    doomed->kill(SIGKILL);
    doomed->wait(10s);
    target.wait_until_gone("node-a");
    auto held = test::running(*db);
    REQUIRE(held);
    size_t held_by_dead = 0;
    for (auto& j : *held)
      held_by_dead += j.reserved_by->rfind("node-a/", 0) == 0 ? 1 : 0;
    survivor->kill(SIGCONT);
    CHECK(survivor->wait(120s) == 0);
    CHECK(succeeded(*db) == n);
    auto [total, distinct] = target.runs();
    CHECK(distinct == n);
    auto rescued = rescued_in(report);
    MESSAGE(n << " jobs; node-a killed holding " << held_by_dead << "; node-b "
              << "rescued " << rescued << "; " << total - distinct
              << " ran twice");
    CHECK(rescued == static_cast<int>(held_by_dead));
    CHECK(total - distinct <= static_cast<int64_t>(held_by_dead));
  }

  TEST_CASE_TEMPLATE("one node runs the store-wide upkeep, and another takes "
                     "it over when that one is killed",
                     T, sqlite_target, postgres_target) {
    constexpr int n = 4000;
    T target;
    prepare(target, n);
    auto db = target.open();
    test::temp_dir dir;
    auto report = dir.file("report");
    auto holder = [&] {
      return target.query_text(
          "SELECT holder FROM bg_jobs_leases WHERE name = 'maintenance'");
    };
    // A lease of 3 s: the upkeep's is held for 2 s and renewed every 1 s, so
    // a holder slowed by a loaded machine keeps it through one late renewal.
    auto a = start_node(target.store(), "node-a", 2,
                        {"--lease-ms", "3000", "--sleep-ms", "10"});
    REQUIRE(test::eventually([&] { return holder() == "node-a"; }, 60s));
    auto b = start_node(
        target.store(), "node-b", 2,
        {"--lease-ms", "3000", "--sleep-ms", "10", "--report", report});
    REQUIRE(test::eventually(
        [&] { return target.node_names().count("node-b") > 0; }, 60s));
    // Both run jobs; node-b tries for the lease every second and never gets
    // it while node-a renews it.
    auto until = std::chrono::steady_clock::now() + 3s;
    int looks = 0;
    while (std::chrono::steady_clock::now() < until) {
      CHECK(holder() == "node-a");
      ++looks;
      std::this_thread::sleep_for(100ms);
    }
    REQUIRE(succeeded(*db) < n);
    a->kill(SIGKILL);
    auto killed = std::chrono::steady_clock::now();
    a->wait(10s);
    REQUIRE(test::eventually([&] { return holder() == "node-b"; }, 60s));
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - killed);
    // node-b, now the only one rescuing, takes back what node-a held.
    CHECK(b->wait(120s) == 0);
    CHECK(succeeded(*db) == n);
    auto [total, distinct] = target.runs();
    CHECK(distinct == n);
    auto rescued = rescued_in(report);
    MESSAGE("node-a held the upkeep for " << looks << " looks over 3 s; node-b "
            << "took it " << took.count() << " ms after the kill (lease 3 s"
            << ") and rescued " << rescued << " jobs");
    CHECK(rescued >= 1);
    // Within the lease on an idle machine; a loaded one may add a few
    // seconds of scheduling delay to node-b's next try.
    CHECK(took < 15s);
  }

  TEST_CASE_TEMPLATE("a second process with a live node's name is refused "
                     "and no job runs twice",
                     T, sqlite_target, postgres_target) {
    constexpr int n = 400;
    T target;
    prepare(target, n);
    auto db = target.open();
    auto first = start_node(target.store(), "shared", 2, {"--sleep-ms", "5"});
    REQUIRE(test::eventually([&] { return succeeded(*db) >= 10; }, 60s));
    // The same name while the first holds it: build() fails, nothing runs.
    auto second = start_node(target.store(), "shared", 2);
    CHECK(second->wait(60s) == 1);
    CHECK(first->wait(120s) == 0);
    auto [total, distinct] = target.runs();
    CHECK(distinct == n);
    CHECK(total == n);
    // Its clean shutdown gave the name up: a new process takes it at once.
    auto again = start_node(target.store(), "shared", 2);
    CHECK(again->wait(60s) == 0);
  }

  TEST_CASE_TEMPLATE("processes on one host get distinct default names", T,
                     sqlite_target, postgres_target) {
    constexpr int n = 400;
    T target;
    prepare(target, n);
    auto db = target.open();
    std::vector<std::unique_ptr<test::child_process>> nodes;
    for (auto label : {"a", "b"})
      nodes.push_back(start_node(target.store(), label, 2,
                                 {"--default-name", "--sleep-ms", "5"}));
    for (auto& p : nodes)
      CHECK(p->wait(120s) == 0);
    auto [total, distinct] = target.runs();
    CHECK(distinct == n);
    CHECK(total == n);
    CHECK(target.node_names().size() == 2);
  }

} // TEST_SUITE
