#pragma once

// Stores and node processes for the multi-process reliability tests: a
// SQLite file or a PostgreSQL database that `test_node` processes share,
// with a table `runs` where they record each run of a job.

#include <chrono>
#include <fstream>
#include <memory>
#include <thread>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <pqxx/pqxx>
#include <sqlite3.h>

#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"
#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"
#include "support/pg.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"
#include "support/why.hpp"

namespace bg_jobs::test {

/// `1,2,3` (`0` for none, which matches no job).
inline std::string id_list(const std::vector<int64_t>& ids) {
  std::string s = ids.empty() ? "0" : "";
  for (auto id : ids)
    s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

/// A store for node processes: where they connect and how the test reads
/// the runs they recorded.
struct sqlite_target {
  temp_dir dir;
  std::string path = dir.file("jobs.db");

  std::string store() const { return path; }

  std::unique_ptr<db_adapter> open() const {
    auto db = sqlite_adapter::open({path});
    REQUIRE_MESSAGE(db, why(db));
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

  /// The sequence number of the latest run recorded (0: none).
  int64_t last_run() const {
    return query_int("SELECT coalesce(max(rowid), 0) FROM runs");
  }

  /// Runs recorded by `node` after run `mark` of jobs among `ids`.
  int64_t runs_after(int64_t mark, const std::string& node,
                     const std::vector<int64_t>& ids) const {
    return query_int("SELECT count(*) FROM runs WHERE rowid > " +
                     std::to_string(mark) + " AND node = '" + node +
                     "' AND job_id IN (" + id_list(ids) + ")");
  }

  /// Once this returns, no write of the killed process `node` is still on
  /// its way (a SQLite transaction dies with its process).
  void wait_until_gone(const std::string&) const {}

  /// Whether the store takes writes now: a process stopped inside a write
  /// transaction holds SQLite's one write lock and stalls every node.
  bool quiet(const std::string&) const {
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_busy_timeout(db, 100);
    bool ok = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr,
                           nullptr) == SQLITE_OK;
    if (ok)
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    return ok;
  }

  int64_t query_int(const std::string& sql) const {
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
    sqlite3_step(s);
    auto n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
  }

  /// The first column of the first row of `sql` ("" for none or NULL).
  std::string query_text(const std::string& sql) const {
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
    std::string text;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
      text = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    return text;
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
  /// A database of its own: the backends of its nodes, found by their
  /// names, are told apart from those of tests running beside it.
  pg_database database;

  std::string store() const { return database.url(); }

  std::unique_ptr<db_adapter> open() const {
    auto db = postgres_adapter::open({database.url()});
    REQUIRE_MESSAGE(db, why(db));
    return std::move(*db);
  }

  void create_runs() const {
    pqxx::connection c{database.url()};
    pqxx::work tx{c};
    tx.exec("CREATE TABLE runs (seq BIGSERIAL, job_id BIGINT, node TEXT)");
    tx.commit();
  }

  std::set<std::string> node_names() const {
    pqxx::connection c{database.url()};
    pqxx::work tx{c};
    std::set<std::string> names;
    for (const auto& r : tx.exec("SELECT DISTINCT node FROM runs"))
      names.insert(r[0].as<std::string>());
    return names;
  }

  int64_t query_int(const std::string& sql) const {
    pqxx::connection c{database.url()};
    pqxx::work tx{c};
    return tx.exec(sql)[0][0].as<int64_t>();
  }

  std::string query_text(const std::string& sql) const {
    pqxx::connection c{database.url()};
    pqxx::work tx{c};
    auto r = tx.exec(sql);
    return r.empty() || r[0][0].is_null() ? "" : r[0][0].as<std::string>();
  }

  int64_t last_run() const {
    return query_int("SELECT coalesce(max(seq), 0) FROM runs");
  }

  int64_t runs_after(int64_t mark, const std::string& node,
                     const std::vector<int64_t>& ids) const {
    return query_int("SELECT count(*) FROM runs WHERE seq > " +
                     std::to_string(mark) + " AND node = '" + node +
                     "' AND job_id IN (" + id_list(ids) + ")");
  }

  /// The condition on `pg_stat_activity` that picks the server backends
  /// of the node process `node` (its connections carry its name) in this
  /// target's database.
  std::string backends_of_node(const std::string& node) const {
    return "application_name = '" + node + "' AND datname = '" +
           database.name() + "'";
  }

  /// How many server backends the node process `node` has.
  int64_t backends_of(const std::string& node) const {
    return query_int("SELECT count(*) FROM pg_stat_activity WHERE " +
                     backends_of_node(node));
  }

  /// Ends every backend of `node`'s process; returns how many.
  int64_t kill_backends(const std::string& node) const {
    return query_int("SELECT count(pg_terminate_backend(pid)) FROM "
                     "pg_stat_activity WHERE " +
                     backends_of_node(node));
  }

  /// Whether every backend of `node` is idle, outside a transaction: a
  /// process stopped inside one holds row locks that a rescue waits for.
  bool quiet(const std::string& node) const {
    return query_int("SELECT count(*) FROM pg_stat_activity WHERE " +
                     backends_of_node(node) + " AND state <> 'idle'") == 0;
  }

  /// Waits until the killed process `node` has no backend left: a
  /// statement it sent before it died may still commit until then.
  void wait_until_gone(const std::string& node) const {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{60};
    while (backends_of(node) > 0) {
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
  }

  std::pair<int64_t, int64_t> runs() const {
    pqxx::connection c{database.url()};
    pqxx::work tx{c};
    auto r = tx.exec("SELECT count(*), count(DISTINCT job_id) FROM runs")[0];
    return {r[0].as<int64_t>(), r[1].as<int64_t>()};
  }
};

template <class Target>
inline void prepare(const Target& t, int n) {
  auto db = t.open();
  REQUIRE(db->migrate_up());
  t.create_runs();
  std::vector<job_request> reqs;
  for (int i = 0; i < n; ++i)
    reqs.emplace_back("work", nlohmann::json{{"seq", i}});
  auto ids = db->enqueue_jobs(reqs);
  REQUIRE_MESSAGE(ids, why(ids));
}

inline std::unique_ptr<child_process>
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
  auto p = std::make_unique<child_process>(args);
  REQUIRE(p->started());
  return p;
}

/// The jobs a node rescued, from the file its `--report` wrote (-1: none).
inline int rescued_in(const std::string& report) {
  std::ifstream in{report};
  std::string word;
  int rescued = -1;
  in >> word >> rescued;
  return rescued;
}

inline int64_t succeeded(db_adapter& db) {
  auto st = db.stats();
  return st ? st->succeeded : -1;
}

/// Holds queue "work" (paused) while `start()` starts the nodes `names`,
/// until each has registered in the store, then lets it run: every node
/// takes part however slowly the machine starts processes.
template <class Target, class Start>
void start_together(const Target& target, db_adapter& db,
                    const std::vector<std::string>& names, Start start) {
  REQUIRE(db.pause(pause_kind::queue, "work"));
  start();
  std::string list;
  for (auto& n : names)
    list += (list.empty() ? "'" : ", '") + n + "'";
  REQUIRE(eventually(
      [&] {
        return target.query_int("SELECT count(*) FROM bg_jobs_nodes"
                                " WHERE node IN (" + list + ")") ==
               static_cast<int64_t>(names.size());
      },
      std::chrono::seconds{60}));
  REQUIRE(db.resume(pause_kind::queue, "work"));
}

} // namespace bg_jobs::test
