// A job's completion inside the application's own transaction on SQLite
// (`sqlite_adapter::complete_in`).

#include "bg_jobs/adapters/sqlite/detail/sqlite_internal.hpp"

namespace bg_jobs {

namespace {

// The job's row moves to jobs_succeeded only while ?2 still holds it and no
// cancel was asked for.
const char sql_app_copy_succeeded[] =
    "INSERT INTO jobs_succeeded (id, name, payload, attempts, created_at,"
    " available_at, succeeded_at, priority, errors, attrs)"
    " SELECT id, name, payload, attempts, created_at, available_at, ?3,"
    " priority, errors, attrs FROM jobs"
    " WHERE id = ?1 AND reserved_by = ?2 AND cancel_reason IS NULL";
const char sql_app_delete[] = "DELETE FROM jobs WHERE id = ?1";
const char sql_app_cancel_asked[] =
    "SELECT 1 FROM jobs WHERE id = ?1 AND reserved_by = ?2"
    " AND cancel_reason IS NOT NULL";

/// One statement on the application's connection, finalized when done.
class app_statement {
public:
  app_statement(sqlite3* db, const std::string& text) : db_(db) {
    if (sqlite3_prepare_v2(db, text.c_str(), -1, &s_, nullptr) != SQLITE_OK) {
      error_ = sqlite3_errmsg(db);
      sqlite3_finalize(s_);
      s_ = nullptr;
    }
  }
  app_statement(const app_statement&) = delete;
  app_statement& operator=(const app_statement&) = delete;
  ~app_statement() { sqlite3_finalize(s_); }

  /// Binds the job's id, its owner and the time; steps once.
  int run(int64_t id, const std::string& owner, int64_t now_ms) {
    if (!s_)
      return SQLITE_ERROR;
    sqlite3_bind_int64(s_, 1, id);
    if (sqlite3_bind_parameter_count(s_) >= 2)
      sqlite3_bind_text(s_, 2, owner.data(), static_cast<int>(owner.size()),
                        SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(s_) >= 3)
      sqlite3_bind_int64(s_, 3, now_ms);
    return sqlite3_step(s_);
  }

  std::string error() const {
    return error_.empty() ? std::string{sqlite3_errmsg(db_)} : error_;
  }

private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
  std::string error_;
};

caf::error store_failure(sqlite3* db, const std::string& what) {
  auto code = sqlite3_errcode(db);
  return make_error(code == SQLITE_BUSY || code == SQLITE_LOCKED
                        ? errc::database_locked
                        : errc::database_error,
                    "completing a job in the caller's transaction: " + what);
}

} // namespace

caf::expected<void> sqlite_adapter::complete_in(sqlite3* db, const job& j,
                                                const std::string& table_prefix) {
  if (auto err = check_identifier("table prefix", table_prefix, 30))
    return err;
  if (!db)
    return make_error(errc::invalid_argument, "no SQLite connection given");
  if (sqlite3_get_autocommit(db))
    return make_error(errc::invalid_argument,
                      "no transaction is open on the given connection: "
                      "complete_in belongs inside the application's BEGIN");
  if (!j.reserved_by || j.reserved_by->empty())
    return make_error(errc::invalid_argument,
                      "job " + std::to_string(j.id) +
                          " is not reserved: complete_in takes the job its "
                          "handler runs");
  auto now = to_unix_ms(clock::system()->now());
  app_statement copy{db, prefixed_sql(sql_app_copy_succeeded, table_prefix)};
  if (copy.run(j.id, *j.reserved_by, now) != SQLITE_DONE)
    return store_failure(db, copy.error());
  if (sqlite3_changes(db) == 1) {
    app_statement remove{db, prefixed_sql(sql_app_delete, table_prefix)};
    if (remove.run(j.id, *j.reserved_by, now) != SQLITE_DONE)
      return store_failure(db, remove.error());
    return caf::unit;
  }
  // Not ours any more (rescued, released, or asked to cancel): the
  // application's writes must not commit without the completion, so its
  // transaction ends here.
  app_statement asked{db, prefixed_sql(sql_app_cancel_asked, table_prefix)};
  bool cancel_asked = asked.run(j.id, *j.reserved_by, now) == SQLITE_ROW;
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  return make_error(errc::reservation_lost,
                    "job " + std::to_string(j.id) +
                        (cancel_asked ? " was asked to cancel"
                                      : " is no longer reserved by " +
                                            printable(*j.reserved_by)) +
                        ": the transaction was rolled back, with the "
                        "handler's writes");
}

} // namespace bg_jobs
