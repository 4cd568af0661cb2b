#pragma once

#include <memory>
#include <string>
#include <vector>

#include <pqxx/pqxx>
#include <sqlite3.h>

#include "adapters/stores.hpp"
#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"
#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"

namespace bg_jobs::test {

/// The application's own connection to a test's store (not bg_jobs'), with
/// a table of its own, `ledger`: what a handler that does its writes in the
/// job's transaction uses.
class app_connection {
public:
  virtual ~app_connection() = default;

  /// Runs `sql` in a transaction of its own.
  virtual void exec(const std::string& sql) = 0;

  /// In one transaction: inserts `note` into `ledger`, enqueues a job
  /// named "follow_up" and records the success of `j` (`complete_in`).
  /// Then commits, or rolls back when `abandon`. When the completion is
  /// refused, tries to commit all the same when `commit_anyway` (the
  /// writes must not land), and returns the refusal.
  virtual caf::expected<void> write_and_complete(const job& j,
                                                 const std::string& note,
                                                 bool abandon = false,
                                                 bool commit_anyway = false) = 0;

  /// The notes in `ledger`, in insertion order.
  virtual std::vector<std::string> notes() = 0;

  /// Opens one on `store` (a SQLite file without a table prefix, or a
  /// PostgreSQL schema) and creates `ledger` if needed.
  static std::unique_ptr<app_connection> open(const test_store& store);
};

class sqlite_app_connection : public app_connection {
public:
  explicit sqlite_app_connection(const std::string& path) {
    REQUIRE(sqlite3_open_v2(path.c_str(), &db_,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                            nullptr) == SQLITE_OK);
    sqlite3_busy_timeout(db_, 10000);
    exec("CREATE TABLE IF NOT EXISTS ledger (note TEXT NOT NULL)");
  }

  ~sqlite_app_connection() override { sqlite3_close_v2(db_); }

  void exec(const std::string& sql) override {
    char* err = nullptr;
    auto rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    std::string msg = err ? err : "";
    sqlite3_free(err);
    REQUIRE_MESSAGE(rc == SQLITE_OK, msg);
  }

  caf::expected<void> write_and_complete(const job& j, const std::string& note,
                                         bool abandon,
                                         bool commit_anyway) override {
    exec("BEGIN IMMEDIATE");
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db_, "INSERT INTO ledger (note) VALUES (?1)",
                               -1, &s, nullptr) == SQLITE_OK);
    sqlite3_bind_text(s, 1, note.c_str(), -1, SQLITE_TRANSIENT);
    CHECK(sqlite3_step(s) == SQLITE_DONE);
    sqlite3_finalize(s);
    REQUIRE(sqlite_adapter::enqueue_in(db_, job_request{"follow_up"}));
    auto done = sqlite_adapter::complete_in(db_, j);
    if (!done) {
      // complete_in rolled the transaction back: a COMMIT finds none.
      if (commit_anyway)
        CHECK(sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) !=
              SQLITE_OK);
      if (!sqlite3_get_autocommit(db_))
        exec("ROLLBACK");
      return done;
    }
    exec(abandon ? "ROLLBACK" : "COMMIT");
    return done;
  }

  std::vector<std::string> notes() override {
    std::vector<std::string> out;
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db_, "SELECT note FROM ledger ORDER BY rowid",
                               -1, &s, nullptr) == SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW)
      out.emplace_back(
          reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
    sqlite3_finalize(s);
    return out;
  }

private:
  sqlite3* db_ = nullptr;
};

class postgres_app_connection : public app_connection {
public:
  explicit postgres_app_connection(const std::string& url) : conn_(url) {
    exec("CREATE TABLE IF NOT EXISTS ledger (id BIGSERIAL PRIMARY KEY,"
         " note TEXT NOT NULL)");
  }

  void exec(const std::string& sql) override {
    pqxx::work tx{conn_};
    tx.exec(sql);
    tx.commit();
  }

  caf::expected<void> write_and_complete(const job& j, const std::string& note,
                                         bool abandon,
                                         bool commit_anyway) override {
    pqxx::work tx{conn_};
    tx.exec_params("INSERT INTO ledger (note) VALUES ($1)", note);
    REQUIRE(postgres_adapter::enqueue_in(tx, job_request{"follow_up"}));
    auto done = postgres_adapter::complete_in(tx, j);
    if (!done) {
      // The server aborted the transaction: a commit cannot keep its
      // writes (libpqxx may report it or not).
      if (commit_anyway) {
        try {
          tx.commit();
        } catch (const std::exception&) {
        }
      }
      return done;
    }
    if (abandon)
      tx.abort();
    else
      tx.commit();
    return done;
  }

  std::vector<std::string> notes() override {
    pqxx::work tx{conn_};
    std::vector<std::string> out;
    for (const auto& r : tx.exec("SELECT note FROM ledger ORDER BY id"))
      out.push_back(r[0].as<std::string>());
    return out;
  }

private:
  pqxx::connection conn_;
};

inline std::unique_ptr<app_connection>
app_connection::open(const test_store& store) {
  if (std::string{store.store_name()} == "sqlite")
    return std::make_unique<sqlite_app_connection>(store.location());
  return std::make_unique<postgres_app_connection>(store.location());
}

} // namespace bg_jobs::test
