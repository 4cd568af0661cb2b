#pragma once

// What the files of the SQLite adapter share: the columns of a job, the
// statements more than one of them runs, reading rows, and the statement
// and transaction guards.

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <sqlite3.h>

#include "bg_jobs/adapters/detail/prepared_job.hpp"
#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/job_request.hpp"

#define BG_JOBS_JOB_COLUMNS                                                    \
  "id, name, payload, attempts, created_at, available_at, reserved_at, "       \
  "reserved_by, last_error, priority, cancel_reason, concurrency_key, "        \
  "second_concurrency_key, attrs"

// Every column of `jobs`, which `bg_jobs_blocked` has too (a task waiting
// for its parents is a job kept aside until they finish).
#define BG_JOBS_SQLITE_ROW_COLUMNS                                             \
  "id, name, payload, attempts, created_at, available_at, reserved_at, "       \
  "reserved_by, last_error, priority, cancel_reason, errors, "                 \
  "concurrency_key, second_concurrency_key, expires_at, attrs"

// The id of the next job inserted: one past the greatest ever used (the
// greatest in `jobs`, or the one recorded when the job that had it left;
// schema version 22).
#define BG_JOBS_SQLITE_NEXT_ID                                                 \
  "(SELECT max(coalesce((SELECT max(id) FROM jobs), 0),"                      \
  " coalesce((SELECT hwm FROM bg_jobs_ids), 0)) + 1)"

// Moves the children of task `parent` that have no unfinished parent left
// from `bg_jobs_blocked` into `jobs`, available no earlier than `at`.
#define BG_JOBS_SQLITE_RELEASE(parent, at)                                     \
  "  INSERT INTO jobs (" BG_JOBS_SQLITE_ROW_COLUMNS ")"                        \
  "   SELECT id, name, payload, attempts, created_at,"                        \
  "   max(available_at, " at "), reserved_at, reserved_by, last_error,"       \
  "   priority, cancel_reason, errors, concurrency_key,"                      \
  "   second_concurrency_key, expires_at, attrs FROM bg_jobs_blocked"         \
  "   WHERE id IN (SELECT t.job_id FROM bg_jobs_deps d JOIN bg_jobs_tasks t"  \
  "   ON t.job_id = d.child_id WHERE d.parent_id = " parent                   \
  "   AND t.pending = 0 AND t.state IN ('blocked', 'held'));"                 \
  "  UPDATE bg_jobs_tasks SET state = 'ready'"                                \
  "   WHERE pending = 0 AND state IN ('blocked', 'held') AND job_id IN"       \
  "   (SELECT child_id FROM bg_jobs_deps WHERE parent_id = " parent ");"      \
  "  DELETE FROM bg_jobs_blocked WHERE id IN (SELECT t.job_id"                \
  "   FROM bg_jobs_deps d JOIN bg_jobs_tasks t ON t.job_id = d.child_id"      \
  "   WHERE d.parent_id = " parent " AND t.state = 'ready');"

// Ends the workflow of task `task` at `at` once every task finished.
#define BG_JOBS_SQLITE_FINISH(task, at)                                        \
  "  UPDATE bg_jobs_workflows SET state = CASE WHEN cancel_requested <> 0"    \
  "   THEN 'cancelled' WHEN failed + cancelled = 0 THEN 'succeeded'"          \
  "   ELSE 'failed' END, finished_at = " at                                   \
  "   WHERE id = (SELECT workflow_id FROM bg_jobs_tasks WHERE job_id = " task \
  "   ) AND state = 'running' AND open = 0"                                   \
  "   AND succeeded + failed + cancelled = total;"

// The workflow of task `task`.
#define BG_JOBS_SQLITE_WF(task)                                                \
  "(SELECT workflow_id FROM bg_jobs_tasks WHERE job_id = " task ")"

// The callbacks of the workflow of task `task` at `at`: the failure one
// once a task failed for good, the finish one once it finished, the
// success one once it succeeded (each moved into `jobs` once: only from
// 'blocked'); those that can no longer be called, once it finished, are
// cancelled.
#define BG_JOBS_SQLITE_CALLBACKS(task, at)                                     \
  "  UPDATE bg_jobs_tasks SET state = 'ready' WHERE workflow_id = "           \
  BG_JOBS_SQLITE_WF(task) " AND role <> 'task' AND state = 'blocked' AND"     \
  "   EXISTS (SELECT 1 FROM bg_jobs_workflows w WHERE w.id ="                 \
  "   bg_jobs_tasks.workflow_id AND ((bg_jobs_tasks.role = 'on_failure'"      \
  "   AND w.failed > 0) OR (bg_jobs_tasks.role = 'on_finish'"                 \
  "   AND w.state <> 'running') OR (bg_jobs_tasks.role = 'on_success'"        \
  "   AND w.state = 'succeeded')));"                                          \
  "  INSERT INTO jobs (" BG_JOBS_SQLITE_ROW_COLUMNS ")"                       \
  "   SELECT id, name, payload, attempts, created_at,"                        \
  "   max(available_at, " at "), reserved_at, reserved_by, last_error,"       \
  "   priority, cancel_reason, errors, concurrency_key,"                      \
  "   second_concurrency_key, expires_at, attrs FROM bg_jobs_blocked"         \
  "   WHERE id IN (SELECT job_id FROM bg_jobs_tasks WHERE workflow_id = "     \
  BG_JOBS_SQLITE_WF(task) " AND role <> 'task' AND state = 'ready');"         \
  "  DELETE FROM bg_jobs_blocked WHERE id IN (SELECT job_id"                  \
  "   FROM bg_jobs_tasks WHERE workflow_id = " BG_JOBS_SQLITE_WF(task)        \
  "   AND role <> 'task' AND state = 'ready');"                               \
  "  UPDATE bg_jobs_tasks SET state = 'cancelled', finished_at = " at         \
  "   WHERE workflow_id = " BG_JOBS_SQLITE_WF(task) " AND role <> 'task'"     \
  "   AND state = 'blocked' AND (SELECT state FROM bg_jobs_workflows"         \
  "   WHERE id = bg_jobs_tasks.workflow_id) <> 'running';"                    \
  "  INSERT INTO jobs_failed (id, name, payload, attempts, exception,"        \
  "   created_at, available_at, failed_at, priority, cancelled, errors,"      \
  "   concurrency_key, second_concurrency_key, attrs)"                        \
  "   SELECT id, name, payload, attempts,"                                    \
  "   'not called: the workflow ended otherwise', created_at, available_at, " \
  at ", priority, 1, errors, concurrency_key, second_concurrency_key, attrs"  \
  "   FROM bg_jobs_blocked WHERE id IN (SELECT job_id FROM bg_jobs_tasks"     \
  "   WHERE workflow_id = " BG_JOBS_SQLITE_WF(task) " AND role <> 'task'"     \
  "   AND state = 'cancelled');"                                              \
  "  DELETE FROM bg_jobs_blocked WHERE id IN (SELECT job_id"                  \
  "   FROM bg_jobs_tasks WHERE workflow_id = " BG_JOBS_SQLITE_WF(task)        \
  "   AND role <> 'task' AND state = 'cancelled');"

// The store's now in milliseconds since the epoch (fractional), the clock
// rate limits count by.
#define BG_JOBS_SQLITE_NOW_MS "((julianday('now') - 2440587.5) * 86400000.0)"

namespace bg_jobs::detail::sqlite {

inline constexpr char sql_begin[] = "BEGIN IMMEDIATE";

inline constexpr char sql_commit[] = "COMMIT";

inline constexpr char sql_job_by_id[] =
    "SELECT " BG_JOBS_JOB_COLUMNS " FROM jobs WHERE id = ?1"
    " UNION ALL SELECT id, name, payload, attempts, created_at, available_at,"
    " NULL, NULL, NULL, priority, NULL, NULL, NULL, attrs FROM jobs_succeeded"
    " WHERE id = ?1";

inline constexpr char sql_delete[] = "DELETE FROM jobs WHERE id = ?1";

inline constexpr char sql_is_paused[] =
    "SELECT 1 FROM bg_jobs_paused WHERE kind = ?1 AND name = ?2";

inline nlohmann::json parse_payload(const unsigned char* text, int size) {
  auto first = reinterpret_cast<const char*>(text);
  auto result =
      exceeds_payload_depth(std::string_view{first, static_cast<size_t>(size)})
          ? nlohmann::json(nlohmann::json::value_t::discarded)
          : nlohmann::json::parse(first, first + size, nullptr, false);
  // Written outside bg_jobs (not JSON, or nested beyond the limit): keep the
  // text as a string, so that the row can still be handled.
  if (result.is_discarded())
    return nlohmann::json(std::string{first, static_cast<size_t>(size)});
  return result;
}

inline std::string column_text(sqlite3_stmt* s, int i) {
  auto p = sqlite3_column_text(s, i);
  return p ? std::string{reinterpret_cast<const char*>(p),
                         static_cast<size_t>(sqlite3_column_bytes(s, i))}
           : std::string{};
}

inline timestamp column_time(sqlite3_stmt* s, int i) {
  return from_unix_ms(sqlite3_column_int64(s, i));
}

inline std::optional<timestamp> column_time_or_null(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL)
    return std::nullopt;
  return column_time(s, i);
}

inline std::optional<std::string> column_text_or_null(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL)
    return std::nullopt;
  return column_text(s, i);
}

inline job read_job(sqlite3_stmt* s) {
  job j;
  j.id = sqlite3_column_int64(s, 0);
  j.name = column_text(s, 1);
  j.payload =
      parse_payload(sqlite3_column_text(s, 2), sqlite3_column_bytes(s, 2));
  j.attempts = sqlite3_column_int(s, 3);
  j.created_at = column_time(s, 4);
  j.available_at = column_time(s, 5);
  j.reserved_at = column_time_or_null(s, 6);
  j.reserved_by = column_text_or_null(s, 7);
  j.last_error = column_text_or_null(s, 8);
  j.priority = sqlite3_column_int(s, 9);
  j.cancel_reason = column_text_or_null(s, 10);
  j.concurrency_key = column_text_or_null(s, 11).value_or("");
  j.second_concurrency_key = column_text_or_null(s, 12).value_or("");
  if (sqlite3_column_type(s, 13) != SQLITE_NULL)
    detail::read_attrs(column_text(s, 13), j);
  return j;
}

inline void sort_claim_order(std::vector<job>& jobs) {
  std::sort(jobs.begin(), jobs.end(), [](const job& a, const job& b) {
    return std::tie(a.priority, a.available_at, a.id) <
           std::tie(b.priority, b.available_at, b.id);
  });
}

} // namespace bg_jobs::detail::sqlite

namespace bg_jobs {

/// Binds parameters to a cached statement and resets it when done.
class sqlite_adapter::statement {
public:
  explicit statement(sqlite3_stmt* s) : s_(s) {}

  ~statement() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

  statement& bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }

  /// A separate name: an `int` argument would be ambiguous beside
  /// `bind(int, int64_t)`.
  statement& bind_real(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }

  /// Binds `v` without a copy: it must outlive the statement's steps.
  statement& bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()),
                      SQLITE_STATIC);
    return *this;
  }
  /// A temporary would be gone before the statement runs.
  statement& bind(int i, std::string&& v) = delete;

  /// Binds a concurrency key: NULL when empty. `key` must outlive the
  /// statement's run (it is not copied).
  statement& bind_key(int i, const std::string& key) {
    if (key.empty()) {
      sqlite3_bind_null(s_, i);
      return *this;
    }
    return bind(i, key);
  }

  statement& bind(int i, const std::optional<std::string>& v) {
    if (v)
      return bind(i, *v);
    sqlite3_bind_null(s_, i);
    return *this;
  }

  int step() { return sqlite3_step(s_); }

  sqlite3_stmt* get() const { return s_; }

private:
  sqlite3_stmt* s_;
};

/// `BEGIN IMMEDIATE` on construction; rolls back unless committed.
class sqlite_adapter::transaction {
public:
  explicit transaction(sqlite_adapter& db) : db_(db) {}

  // Both statements are prepared once per connection.
  caf::expected<void> begin() {
    auto r = db_.execute(
        detail::sqlite::sql_begin, [](auto&) {}, "beginning a transaction");
    if (!r)
      return std::move(r.error());
    active_ = true;
    return caf::unit;
  }

  caf::expected<void> commit() {
    auto r = db_.execute(
        detail::sqlite::sql_commit, [](auto&) {}, "committing");
    if (!r)
      return std::move(r.error());
    active_ = false;
    return caf::unit;
  }

  ~transaction() {
    if (active_)
      sqlite3_exec(db_.db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

private:
  sqlite_adapter& db_;
  bool active_ = false;
};

template <class F>
auto sqlite_adapter::in_transaction(F&& body) -> decltype(body()) {
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return std::move(r.error());
  auto result = body();
  if (!result)
    return result;
  if (auto r = tx.commit(); !r)
    return std::move(r.error());
  return result;
}

} // namespace bg_jobs
