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
#include "support/pg.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"
#include "support/why.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

/// A store for node processes: where they connect and how the test reads
/// the runs they recorded.
struct sqlite_target {
  test::temp_dir dir;
  std::string path = dir.file("jobs.db");

  std::string store() const { return path; }

  std::unique_ptr<db_adapter> open() const {
    auto db = sqlite_adapter::open({path});
    REQUIRE_MESSAGE(db, test::why(db));
    return std::move(*db);
  }

  void create_runs() const {
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE runs (job_id INTEGER, node TEXT)",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }

  std::set<std::string> node_names() const {
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "SELECT DISTINCT node FROM runs", -1, &s, nullptr);
    std::set<std::string> names;
    while (sqlite3_step(s) == SQLITE_ROW)
      names.insert(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
    sqlite3_finalize(s);
    sqlite3_close(db);
    return names;
  }

  std::pair<int64_t, int64_t> runs() const {
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "SELECT count(*), count(DISTINCT job_id) FROM runs",
                       -1, &s, nullptr);
    sqlite3_step(s);
    std::pair<int64_t, int64_t> r{sqlite3_column_int64(s, 0),
                                  sqlite3_column_int64(s, 1)};
    sqlite3_finalize(s);
    sqlite3_close(db);
    return r;
  }
};

struct postgres_target {
  test::pg_schema schema;

  std::string store() const { return schema.url(); }

  std::unique_ptr<db_adapter> open() const {
    auto db = postgres_adapter::open({schema.url()});
    REQUIRE_MESSAGE(db, test::why(db));
    return std::move(*db);
  }

  void create_runs() const {
    pqxx::connection c{schema.url()};
    pqxx::work tx{c};
    tx.exec("CREATE TABLE runs (job_id BIGINT, node TEXT)");
    tx.commit();
  }

  std::set<std::string> node_names() const {
    pqxx::connection c{schema.url()};
    pqxx::work tx{c};
    std::set<std::string> names;
    for (const auto& r : tx.exec("SELECT DISTINCT node FROM runs"))
      names.insert(r[0].as<std::string>());
    return names;
  }

  std::pair<int64_t, int64_t> runs() const {
    pqxx::connection c{schema.url()};
    pqxx::work tx{c};
    auto r = tx.exec("SELECT count(*), count(DISTINCT job_id) FROM runs")[0];
    return {r[0].as<int64_t>(), r[1].as<int64_t>()};
  }
};

template <class Target>
void prepare(const Target& t, int n) {
  auto db = t.open();
  REQUIRE(db->migrate_up());
  t.create_runs();
  std::vector<job_request> reqs;
  for (int i = 0; i < n; ++i)
    reqs.emplace_back("work", nlohmann::json{{"seq", i}});
  auto ids = db->enqueue_jobs(reqs);
  REQUIRE_MESSAGE(ids, test::why(ids));
}

std::unique_ptr<test::child_process>
start_node(const std::string& store, const std::string& name, int concurrency,
           std::vector<std::string> extra = {}) {
  std::vector<std::string> args{BG_JOBS_TEST_NODE,
                                "--store",
                                store,
                                "--node",
                                name,
                                "--record",
                                "--concurrency",
                                std::to_string(concurrency),
                                "--sleep-ms",
                                "1",
                                "--timeout-ms",
                                "120000"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto p = std::make_unique<test::child_process>(args);
  REQUIRE(p->started());
  return p;
}

int64_t succeeded(db_adapter& db) {
  auto st = db.stats();
  return st ? st->succeeded : -1;
}

} // namespace

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
    auto held = db->get_running_jobs();
    REQUIRE(held);
    size_t held_by_dead = 0;
    for (auto& j : *held)
      held_by_dead += j.reserved_by->rfind("node-a/", 0) == 0 ? 1 : 0;
    survivor->kill(SIGCONT);
    CHECK(survivor->wait(120s) == 0);
    CHECK(succeeded(*db) == n);
    auto [total, distinct] = target.runs();
    CHECK(distinct == n);
    std::ifstream in{report};
    std::string word;
    int rescued = -1;
    in >> word >> rescued;
    MESSAGE(n << " jobs; node-a killed holding " << held_by_dead << "; node-b "
              << "rescued " << rescued << "; " << total - distinct
              << " ran twice");
    CHECK(rescued == static_cast<int>(held_by_dead));
    CHECK(total - distinct <= static_cast<int64_t>(held_by_dead));
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
