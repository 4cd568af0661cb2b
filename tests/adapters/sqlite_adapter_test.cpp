// Cases only the SQLite adapter has: files, locks and pragmas.
#include <csignal>
#include <fstream>
#include <thread>
#include <atomic>
#include <set>
#include <spawn.h>
#include <sys/wait.h>

#include <doctest/doctest.h>
#include <sqlite3.h>

#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"
#include "bg_jobs/core/errc.hpp"
#include "support/expect.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"
#include "support/why.hpp"

extern char** environ;

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

std::string query_text(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_stmt* s = nullptr;
  std::string result;
  if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK) {
    while (sqlite3_step(s) == SQLITE_ROW)
      for (int i = 0; i < sqlite3_column_count(s); ++i) {
        auto p = sqlite3_column_text(s, i);
        result += p ? reinterpret_cast<const char*>(p) : "NULL";
        result += '|';
      }
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return result;
}

/// Runs `sql` (statements separated by semicolons) on the file at `path`.
void exec_script(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string why = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE_MESSAGE(rc == SQLITE_OK, why);
}

std::unique_ptr<sqlite_adapter> open_migrated(const std::string& path) {
  auto db = sqlite_adapter::open({path});
  REQUIRE_MESSAGE(db, bg_jobs::test::why(db));
  auto up = (*db)->migrate_up();
  REQUIRE_MESSAGE(up, bg_jobs::test::why(up));
  return std::move(*db);
}

} // namespace

TEST_SUITE("sqlite") {

  TEST_CASE("a path that cannot be created is a clear error") {
    auto db = sqlite_adapter::open({"/nonexistent-dir/sub/jobs.db"});
    REQUIRE_FALSE(db);
    CHECK(code_of(db.error()) == errc::database_unavailable);
    CHECK(describe(db.error()).find("/nonexistent-dir/sub/jobs.db") !=
          std::string::npos);
    auto mem = sqlite_adapter::open({":memory:"});
    REQUIRE_FALSE(mem);
    CHECK(code_of(mem.error()) == errc::database_unavailable);
  }

  TEST_CASE("a file that is not a SQLite database is a clear error") {
    test::temp_dir dir;
    auto path = dir.file("notes.txt");
    std::ofstream{path} << "these are not the tables you are looking for\n"
                        << std::string(4096, 'x');
    auto db = sqlite_adapter::open({path});
    REQUIRE_FALSE(db);
    CHECK(code_of(db.error()) == errc::not_a_database);
    CHECK(describe(db.error()).find("is not a SQLite database") !=
          std::string::npos);
  }

  TEST_CASE("a database locked by another process fails after the timeout") {
    test::temp_dir dir;
    auto path = dir.file("jobs.db");
    sqlite_options opts{path};
    opts.busy_timeout = 200ms;
    auto db = sqlite_adapter::open(opts);
    REQUIRE(db);
    REQUIRE((*db)->migrate_up());
    auto ready = dir.file("ready");
    std::string hold_ms = "20000";
    const char* argv[] = {BG_JOBS_LOCK_HOLDER, path.c_str(), ready.c_str(),
                          hold_ms.c_str(), nullptr};
    pid_t pid;
    REQUIRE(posix_spawn(&pid, BG_JOBS_LOCK_HOLDER, nullptr, nullptr,
                        const_cast<char**>(argv), environ) == 0);
    REQUIRE(test::eventually([&] { return std::filesystem::exists(ready); }));
    auto started = std::chrono::steady_clock::now();
    auto j = (*db)->enqueue_job(job_request{"j"});
    auto waited = std::chrono::steady_clock::now() - started;
    REQUIRE_FALSE(j);
    CHECK(code_of(j.error()) == errc::database_locked);
    CHECK(describe(j.error()).find("busy timeout of 200 ms") !=
          std::string::npos);
    CHECK(waited >= 150ms);
    auto r = (*db)->reserve_jobs({{"j"}, 1, "o", ""});
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::database_locked);
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    // The lock is gone and nothing half-written is left behind.
    auto st = (*db)->stats();
    REQUIRE(st);
    CHECK(st->total() == 0);
    CHECK((*db)->enqueue_job(job_request{"j"}));
  }

  TEST_CASE("the store runs in WAL mode") {
    test::temp_dir dir;
    auto db = open_migrated(dir.file("jobs.db"));
    CHECK(query_text(dir.file("jobs.db"), "PRAGMA journal_mode") == "wal|");
  }

  TEST_CASE("a listener wakes for new jobs by name, not for other writes") {
    test::temp_dir dir;
    auto path = dir.file("jobs.db");
    open_migrated(path);
    auto node = sqlite_adapter::factory({path});
    auto listener = node();
    auto writer = node();
    REQUIRE_MESSAGE(listener, bg_jobs::test::why(listener));
    REQUIRE_MESSAGE(writer, bg_jobs::test::why(writer));
    auto& w = **writer;
    REQUIRE(w.enqueue_jobs({job_request{"a"}, job_request{"b"}}));
    // The first call starts listening: earlier jobs are not reported.
    REQUIRE((*listener)->await_wakeups(0ms));
    // Waits up to 30 s for the next names reported; none after `quiet`.
    auto next = [&](std::chrono::milliseconds quiet = 30s) {
      std::set<std::string> names;
      auto until = std::chrono::steady_clock::now() + quiet;
      while (names.empty() && std::chrono::steady_clock::now() < until) {
        auto got = (*listener)->await_wakeups(100ms);
        REQUIRE_MESSAGE(got, bg_jobs::test::why(got));
        names.insert(got->begin(), got->end());
      }
      return names;
    };
    // Claims, completions and heartbeats make nothing claimable: no wake.
    auto claimed = w.reserve_jobs({{"a", "b"}, 2, "w", ""});
    REQUIRE(claimed);
    REQUIRE(claimed->size() == 2);
    std::vector<completion> done;
    for (auto& j : *claimed) {
      completion c;
      c.what = completion::kind::succeeded;
      c.job_id = j.id;
      c.reserved_by = "w";
      done.push_back(c);
    }
    REQUIRE(w.complete_jobs(done));
    REQUIRE(w.heartbeat("n"));
    CHECK(next(300ms).empty());
    // An enqueue wakes its name; bulk ones each of theirs.
    REQUIRE(w.enqueue_job(job_request{"c"}));
    CHECK(next() == std::set<std::string>{"c"});
    REQUIRE(w.enqueue_jobs(
        {job_request{"d"}, job_request{"e"}, job_request{"d"}}));
    std::set<std::string> bulk;
    while (bulk.size() < 2) {
      auto got = next();
      REQUIRE_FALSE(got.empty());
      bulk.insert(got.begin(), got.end());
    }
    CHECK(bulk == std::set<std::string>{"d", "e"});
    // A retried job keeps its id: it wakes its name all the same.
    REQUIRE(w.enqueue_job(job_request{"f"}));
    CHECK(next() == std::set<std::string>{"f"});
    auto failing = w.reserve_jobs({{"f"}, 1, "w", ""});
    REQUIRE(failing);
    REQUIRE(failing->size() == 1);
    completion failed;
    failed.what = completion::kind::failed;
    failed.job_id = failing->front().id;
    failed.reserved_by = "w";
    failed.error = "boom";
    REQUIRE(w.complete_jobs({failed}));
    CHECK(next(300ms).empty());
    REQUIRE(w.retry_job(failing->front().id));
    CHECK(next() == std::set<std::string>{"f"});
    // A resumed pause wakes every name.
    REQUIRE(w.pause(pause_kind::queue, "q"));
    REQUIRE(w.resume(pause_kind::queue, "q"));
    CHECK(next() == std::set<std::string>{"*"});
    // So does a write from another process (another factory's connection).
    auto other = sqlite_adapter::open({path});
    REQUIRE_MESSAGE(other, bg_jobs::test::why(other));
    REQUIRE((*other)->enqueue_job(job_request{"theirs"}));
    CHECK(next() == std::set<std::string>{"theirs"});
  }

  TEST_CASE("a schema newer than the code is refused") {
    test::temp_dir dir;
    auto path = dir.file("jobs.db");
    open_migrated(path);
    query_text(path, "INSERT INTO bg_jobs_migrations VALUES (99, 0)");
    auto db = sqlite_adapter::open({path});
    REQUIRE_FALSE(db);
    CHECK(code_of(db.error()) == errc::schema_too_new);
  }

  TEST_CASE("migrate_down removes every bg_jobs table") {
    test::temp_dir dir;
    auto path = dir.file("jobs.db");
    auto db = open_migrated(path);
    CHECK(query_text(path, "SELECT name FROM sqlite_master WHERE type = 'table'"
                           " AND name NOT LIKE 'sqlite_%' ORDER BY name") ==
          "bg_jobs_actions|bg_jobs_blocked|bg_jobs_deps|bg_jobs_ids|"
          "bg_jobs_leases|bg_jobs_limits|bg_jobs_migrations|bg_jobs_nodes|"
          "bg_jobs_outputs|"
          "bg_jobs_paused|bg_jobs_progress|"
          "bg_jobs_queues|bg_jobs_rate_keys|bg_jobs_rate_limits|"
          "bg_jobs_rate_of|bg_jobs_schedule|bg_jobs_schedules|bg_jobs_tasks|"
          "bg_jobs_unique|bg_jobs_wakes|bg_jobs_workflows|jobs|"
          "jobs_failed|jobs_succeeded|");
    REQUIRE(db->migrate_down());
    CHECK(query_text(path, "SELECT name FROM sqlite_master"
                           " WHERE name NOT LIKE 'sqlite_%'") == "");
  }

  TEST_CASE("the upgrade to schema 22 keeps every job and its id, and "
            "ids go on past the greatest ever used") {
    test::temp_dir dir;
    auto path = dir.file("jobs.db");
    {
      auto db = open_migrated(path);
      REQUIRE(db->enqueue_jobs({job_request{"a"}, job_request{"b"}}));
    }
    // The store as schema 21 left it: `jobs` with AUTOINCREMENT, whose
    // sequence says ids up to 500 were used (their jobs since gone).
    exec_script(
        path,
        "PRAGMA legacy_alter_table = ON;"
        "DROP TRIGGER jobs_id_hwm; DROP TABLE bg_jobs_ids;"
        "CREATE TABLE jobs_old (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " name TEXT NOT NULL, payload TEXT NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,"
        " available_at INTEGER NOT NULL, reserved_at INTEGER,"
        " reserved_by TEXT, last_error TEXT,"
        " priority INTEGER NOT NULL DEFAULT 0, cancel_reason TEXT,"
        " errors TEXT, concurrency_key TEXT, second_concurrency_key TEXT,"
        " expires_at INTEGER, attrs TEXT);"
        "INSERT INTO jobs_old SELECT id, name, payload, attempts,"
        " created_at, available_at, reserved_at, reserved_by, last_error,"
        " priority, cancel_reason, errors, concurrency_key,"
        " second_concurrency_key, expires_at, attrs FROM jobs;"
        "DROP TABLE jobs; ALTER TABLE jobs_old RENAME TO jobs;"
        "CREATE INDEX jobs_claim_idx ON jobs (priority, available_at, id)"
        " WHERE reserved_by IS NULL;"
        "CREATE INDEX jobs_reserved_by_idx ON jobs (reserved_by)"
        " WHERE reserved_by IS NOT NULL;"
        "UPDATE sqlite_sequence SET seq = 500 WHERE name = 'jobs';"
        "DELETE FROM bg_jobs_migrations WHERE version >= 22;");
    REQUIRE(query_text(path, "SELECT seq FROM sqlite_sequence"
                             " WHERE name = 'jobs'") == "500|");
    auto db = open_migrated(path);
    CHECK(test::value_of(db->schema_version()) ==
          db_adapter::schema_version_current);
    CHECK(query_text(path, "SELECT id, name FROM jobs ORDER BY id") ==
          "1|a|2|b|");
    CHECK(query_text(path, "SELECT sql LIKE '%AUTOINCREMENT%' FROM"
                           " sqlite_master WHERE name = 'jobs'") == "0|");
    auto c = test::value_of(db->enqueue_job(job_request{"c"}));
    CHECK(c.id == 501);
  }

  TEST_CASE("an enqueue writes no id sequence: it takes one past the "
            "greatest id ever used") {
    test::temp_dir dir;
    auto path = dir.file("jobs.db");
    auto db = open_migrated(path);
    auto a = test::value_of(db->enqueue_job(job_request{"a"}));
    auto b = test::value_of(db->enqueue_job(job_request{"a"}));
    CHECK(query_text(path, "SELECT count(*) FROM sqlite_sequence"
                           " WHERE name = 'jobs'") == "0|");
    CHECK(query_text(path, "SELECT hwm FROM bg_jobs_ids") == "0|");
    // Leaving, the job with the greatest id records it; one below it does
    // not.
    REQUIRE(db->move_job_to_succeeded(a));
    CHECK(query_text(path, "SELECT hwm FROM bg_jobs_ids") == "0|");
    REQUIRE(db->move_job_to_failed(b, "x"));
    CHECK(query_text(path, "SELECT hwm FROM bg_jobs_ids") ==
          std::to_string(b.id) + "|");
    // With `jobs` empty, and history pruned away, the next id is still
    // past b's.
    exec_script(path, "DELETE FROM jobs_succeeded; DELETE FROM jobs_failed;");
    auto c = test::value_of(db->enqueue_job(job_request{"a"}));
    CHECK(c.id == b.id + 1);
  }

  TEST_CASE(
      "a payload written outside bg_jobs that is not JSON is kept as text") {
    test::temp_dir dir;
    auto path = dir.file("jobs.db");
    auto db = open_migrated(path);
    query_text(path,
               "INSERT INTO jobs (name, payload, created_at, available_at)"
               " VALUES ('j', 'not {json', 0, 0)");
    auto r = db->reserve_jobs({{"j"}, 1, "o", ""});
    REQUIRE(r);
    REQUIRE(r->size() == 1);
    CHECK(r->front().payload == "not {json");
  }

  TEST_CASE("a job enqueued in the application's transaction exists iff it "
            "commits") {
    test::temp_dir dir;
    auto path = dir.file("jobs.db");
    auto db = open_migrated(path);
    sqlite3* app = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &app) == SQLITE_OK);
    auto exec = [&](const char* sql) {
      REQUIRE(sqlite3_exec(app, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
    };
    exec("CREATE TABLE orders (id INTEGER PRIMARY KEY)");
    // Outside a transaction it refuses, and writes nothing.
    auto alone = sqlite_adapter::enqueue_in(app, job_request{"ship"});
    REQUIRE_FALSE(alone);
    CHECK(code_of(alone.error()) == errc::invalid_argument);
    // Rolled back with the application's own write: no job.
    exec("BEGIN IMMEDIATE");
    exec("INSERT INTO orders VALUES (1)");
    REQUIRE(
        sqlite_adapter::enqueue_in(app, job_request{"ship", {{"order", 1}}}));
    exec("ROLLBACK");
    CHECK(db->stats()->total() == 0);
    // Committed with it: the job is there for the queues.
    exec("BEGIN IMMEDIATE");
    exec("INSERT INTO orders VALUES (2)");
    auto j =
        sqlite_adapter::enqueue_in(app, job_request{"ship", {{"order", 2}}});
    REQUIRE_MESSAGE(j, test::why(j));
    exec("COMMIT");
    auto held = db->reserve_jobs({{"ship"}, 5, "n/q/1", ""});
    REQUIRE(held);
    REQUIRE(held->size() == 1);
    CHECK(held->front().id == j->id);
    CHECK(held->front().payload == nlohmann::json{{"order", 2}});
    // Bad input is refused inside a transaction too.
    exec("BEGIN IMMEDIATE");
    CHECK_FALSE(sqlite_adapter::enqueue_in(app, job_request{"bad\xff"}));
    CHECK_FALSE(
        sqlite_adapter::enqueue_in(app, job_request{"ship"}.with_unique()));
    exec("ROLLBACK");
    sqlite3_close(app);
  }

} // TEST_SUITE
