#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"

#include "bg_jobs/adapters/detail/prepared_job.hpp"
#include "bg_jobs/adapters/sqlite/detail/sqlite_internal.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include <filesystem>
#include <map>
#include <unordered_set>

#include <poll.h>
#include <sqlite3.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

using namespace detail::sqlite;

// -- SQL ---------------------------------------------------------------------

namespace {

const char sql_enqueue[] =
    "INSERT INTO jobs (id, name, payload, attempts, created_at, available_at,"
    " priority, concurrency_key, second_concurrency_key, attrs)"
    " VALUES (" BG_JOBS_SQLITE_NEXT_ID ", ?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8)";

const char sql_next_id[] = "SELECT " BG_JOBS_SQLITE_NEXT_ID;

const char sql_enqueue_plain[] =
    "INSERT INTO jobs (id, name, payload, attempts, created_at, available_at,"
    " priority, concurrency_key, second_concurrency_key, attrs)"
    " VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9)";

const char sql_wake_last[] =
    "SELECT (SELECT coalesce(max(id), 0) FROM jobs),"
    " (SELECT coalesce(max(seq), 0) FROM bg_jobs_wakes)";
// The names with jobs inserted past id ?1 (column 3: 0), or woken past
// sequence number ?2 (1); each with the greatest id or number.
const char sql_wakes_since[] =
    "SELECT name, max(id), 0 FROM jobs WHERE id > ?1 GROUP BY name"
    " UNION ALL SELECT name, seq, 1 FROM bg_jobs_wakes WHERE seq > ?2";

/// Rows per statement of a bulk enqueue.
constexpr size_t bulk_rows = 64;

/// `INSERT ... VALUES (?,?,?,0,?,?,?,?,?,?), ...` with `bulk_rows` rows,
/// each with its id first.
const char* sql_enqueue_bulk() {
  static const std::string sql = [] {
    std::string text = "INSERT INTO jobs (id, name, payload, attempts,"
                       " created_at, available_at, priority, concurrency_key,"
                       " second_concurrency_key, attrs) VALUES ";
    for (size_t i = 0; i < bulk_rows; ++i)
      text += i == 0 ? "(?, ?, ?, 0, ?, ?, ?, ?, ?, ?)"
                     : ", (?, ?, ?, 0, ?, ?, ?, ?, ?, ?)";
    return text;
  }();
  return sql.c_str();
}

const char sql_reserve[] = "UPDATE jobs SET reserved_at = ?1, reserved_by = ?2,"
                           " attempts = attempts + 1"
                           " WHERE id IN (SELECT id FROM jobs"
                           "   WHERE reserved_by IS NULL AND available_at <= ?1"
                           "     AND name IN (SELECT value FROM json_each(?3))"
                           "     AND (expires_at IS NULL OR expires_at > ?1)"
                           "     AND NOT EXISTS (SELECT 1 FROM bg_jobs_paused"
                           "       WHERE kind = 'queue' AND name = ?5)"
                           "   ORDER BY priority, available_at, id LIMIT ?4)"
                           " RETURNING " BG_JOBS_JOB_COLUMNS;

// The earliest time past ?3 at which an unreserved job of the names ?2
// becomes available, less ?1 (now): one probe of the claim index per
// priority (0 to 9), each reading the first entry past ?3.
const char sql_next_due[] =
    "SELECT min((SELECT available_at FROM jobs"
    "   WHERE reserved_by IS NULL AND priority = p.value"
    "   AND available_at > ?3"
    "   AND name IN (SELECT value FROM json_each(?2))"
    "   ORDER BY available_at LIMIT 1)) - ?1"
    " FROM json_each('[0,1,2,3,4,5,6,7,8,9]') p";

const char sql_release_by[] =
    "UPDATE jobs SET reserved_at = NULL, reserved_by = NULL"
    " WHERE reserved_by = ?1 RETURNING " BG_JOBS_JOB_COLUMNS;

// A key stops counting once it expired or its job left the states that
// count (waiting and running, and succeeded where asked).
const char sql_unique_drop_stale[] =
    "DELETE FROM bg_jobs_unique WHERE unique_key = ?1 AND ("
    " (expires_at IS NOT NULL AND expires_at <= ?2)"
    " OR NOT (EXISTS (SELECT 1 FROM jobs WHERE id = job_id)"
    "   OR (counts_succeeded = 1"
    "       AND EXISTS (SELECT 1 FROM jobs_succeeded WHERE id = job_id))))";

const char sql_unique_claim[] =
    "INSERT INTO bg_jobs_unique (unique_key, job_id, expires_at,"
    " counts_succeeded) VALUES (?1, 0, ?2, ?3)"
    " ON CONFLICT (unique_key) DO NOTHING";

const char sql_unique_holder[] =
    "SELECT job_id FROM bg_jobs_unique WHERE unique_key = ?1";

const char sql_absorb[] =
    "UPDATE jobs SET payload = ?2, available_at = ?3"
    " WHERE id = ?1 AND reserved_by IS NULL";

const char sql_unique_set[] =
    "UPDATE bg_jobs_unique SET job_id = ?2 WHERE unique_key = ?1";

const char sql_release_unheld[] =
    "UPDATE jobs SET reserved_at = NULL, reserved_by = NULL,"
    " attempts = max(attempts - 1, 0)"
    " WHERE reserved_by = ?1"
    "   AND id NOT IN (SELECT value FROM json_each(?2))"
    " RETURNING " BG_JOBS_JOB_COLUMNS;

const char sql_release_node[] =
    "UPDATE jobs SET reserved_at = NULL, reserved_by = NULL"
    " WHERE reserved_by IS NOT NULL"
    "   AND substr(reserved_by, 1, length(?1)) = ?1"
    " RETURNING " BG_JOBS_JOB_COLUMNS;

// Completions apply while the reservation is the caller's and no cancel
// was asked for; a job asked to cancel takes `sql_copy_cancelled` instead.
const char sql_copy_succeeded[] =
    "INSERT INTO jobs_succeeded (id, name, payload, attempts, created_at,"
    " available_at, succeeded_at, priority, errors, attrs)"
    " SELECT id, name, payload, attempts, created_at, available_at, ?2,"
    " priority, errors, attrs FROM jobs"
    " WHERE id = ?1 AND reserved_by IS ?3 AND cancel_reason IS NULL";

// The same for the jobs of the JSON array ?1; rows: the ids moved.
const char sql_copy_succeeded_many[] =
    "INSERT INTO jobs_succeeded (id, name, payload, attempts, created_at,"
    " available_at, succeeded_at, priority, errors, attrs)"
    " SELECT id, name, payload, attempts, created_at, available_at, ?2,"
    " priority, errors, attrs FROM jobs"
    " WHERE id IN (SELECT value FROM json_each(?1)) AND reserved_by IS ?3"
    " AND cancel_reason IS NULL RETURNING id";

// Without succeeded history (`sqlite_options::succeeded_history` false): a
// success of a job outside workflows deletes it; a workflow's task, which
// its workflow reads, takes `sql_copy_succeeded` still.
const char sql_drop_succeeded[] =
    "DELETE FROM jobs WHERE id = ?1 AND reserved_by IS ?2"
    " AND cancel_reason IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM bg_jobs_tasks WHERE job_id = ?1)";
// The same for the jobs of the JSON array ?1 of owner ?3 (the parameters
// of `sql_copy_succeeded_many`, which has a time ?2 too); rows: the ids
// deleted.
const char sql_drop_succeeded_many[] =
    "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?1))"
    " AND reserved_by IS ?3 AND cancel_reason IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM bg_jobs_tasks t WHERE t.job_id = jobs.id)"
    " RETURNING id";

#define BG_JOBS_APPEND_ERROR(at, text)                                         \
  "json_insert(coalesce(errors, '[]'), '$[#]', json_object('attempt',"         \
  " attempts, 'at', " at ", 'error', " text "))"

const char sql_copy_failed[] =
    "INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
    " created_at, available_at, failed_at, priority, errors, concurrency_key,"
    " second_concurrency_key, attrs)"
    " SELECT id, name, payload, attempts, ?4, created_at, available_at, ?2,"
    " priority, " BG_JOBS_APPEND_ERROR(
        "?2",
        "?4") ", concurrency_key, second_concurrency_key, attrs FROM jobs"
              " WHERE id = ?1 AND reserved_by IS ?3 AND cancel_reason IS NULL";

const char sql_copy_cancelled[] =
    "INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
    " created_at, available_at, failed_at, priority, cancelled, errors,"
    " concurrency_key, second_concurrency_key, attrs)"
    " SELECT id, name, payload, attempts, coalesce(cancel_reason, ?4),"
    " created_at, available_at, ?2, priority, 1, errors, concurrency_key,"
    " second_concurrency_key, attrs FROM jobs"
    " WHERE id = ?1 AND reserved_by IS ?3";

// The fallback of an outcome that did not apply: recorded as cancelled only
// if a cancel was asked for (a job reserved by the same owner again is
// another attempt, not a cancel).
const char sql_copy_cancel_asked[] =
    "INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
    " created_at, available_at, failed_at, priority, cancelled, errors,"
    " concurrency_key, second_concurrency_key, attrs)"
    " SELECT id, name, payload, attempts, coalesce(cancel_reason, ?4),"
    " created_at, available_at, ?2, priority, 1, errors, concurrency_key,"
    " second_concurrency_key, attrs FROM jobs"
    " WHERE id = ?1 AND reserved_by IS ?3 AND cancel_reason IS NOT NULL";

const char sql_retry[] =
    "UPDATE jobs SET reserved_at = NULL, reserved_by = NULL,"
    " available_at = ?2, last_error = ?4,"
    " errors = " BG_JOBS_APPEND_ERROR(
        "?5",
        "?4") " WHERE id = ?1 AND reserved_by IS ?3 AND cancel_reason IS NULL";

const char sql_snooze[] =
    "UPDATE jobs SET reserved_at = NULL, reserved_by = NULL,"
    " available_at = ?2, attempts = max(attempts - 1, 0)"
    " WHERE id = ?1 AND reserved_by IS ?3 AND cancel_reason IS NULL";

const char sql_schedule_latest[] =
    "SELECT scheduled_at, job_id FROM bg_jobs_schedule WHERE name = ?1"
    " ORDER BY scheduled_at DESC LIMIT 1";

const char sql_schedule_insert[] =
    "INSERT INTO bg_jobs_schedule (name, scheduled_at, job_id, catch_up_left,"
    " skip_until) VALUES (?1, ?2, ?3, ?4, ?5)";

// Keeps the newest 100 occurrences per name; uniqueness matters only there.
const char sql_schedule_prune[] =
    "DELETE FROM bg_jobs_schedule WHERE name = ?1 AND scheduled_at <"
    " (SELECT scheduled_at FROM bg_jobs_schedule WHERE name = ?1"
    "  ORDER BY scheduled_at DESC LIMIT 1 OFFSET 100)";

const char sql_schedule_state[] =
    "SELECT s.scheduled_at, s.job_id,"
    " EXISTS (SELECT 1 FROM jobs WHERE id = s.job_id),"
    " coalesce((SELECT succeeded_at FROM jobs_succeeded WHERE id = s.job_id),"
    "          (SELECT failed_at FROM jobs_failed WHERE id = s.job_id)),"
    " EXISTS (SELECT 1 FROM jobs WHERE id = s.job_id"
    "   AND reserved_by IS NOT NULL), s.catch_up_left, s.skip_until,"
    " (SELECT created_at FROM jobs WHERE id = s.job_id)"
    " FROM bg_jobs_schedule s WHERE s.name = ?1"
    " ORDER BY s.scheduled_at DESC LIMIT 1";

const char sql_rescue[] =
    "UPDATE jobs SET last_error = 'rescued from ' || reserved_by"
    "   || ' (no heartbeat)', reserved_at = NULL, reserved_by = NULL"
    " WHERE reserved_by IS NOT NULL AND reserved_at < ?1"
    "   AND NOT EXISTS (SELECT 1 FROM bg_jobs_nodes n"
    "     WHERE n.node = substr(jobs.reserved_by, 1,"
    "                           instr(jobs.reserved_by, '/') - 1)"
    "       AND n.heartbeat_at >= ?1)"
    " RETURNING " BG_JOBS_JOB_COLUMNS;

// A workflow's tasks are pruned only with their workflow, once it finished
// (sql_prune_workflows).
const char sql_prune_succeeded_age[] =
    "DELETE FROM jobs_succeeded WHERE id IN (SELECT id FROM jobs_succeeded"
    " WHERE succeeded_at < ?1 AND id NOT IN (SELECT job_id FROM bg_jobs_tasks)"
    " ORDER BY succeeded_at LIMIT ?2)";
const char sql_prune_failed_age[] =
    "DELETE FROM jobs_failed WHERE id IN (SELECT id FROM jobs_failed"
    " WHERE failed_at < ?1 AND id NOT IN (SELECT job_id FROM bg_jobs_tasks)"
    " ORDER BY failed_at LIMIT ?2)";
const char sql_prune_succeeded_count[] =
    "DELETE FROM jobs_succeeded WHERE id IN (SELECT id FROM jobs_succeeded"
    " WHERE id NOT IN (SELECT job_id FROM bg_jobs_tasks)"
    " ORDER BY succeeded_at DESC, id DESC LIMIT ?2 OFFSET ?1)";
const char sql_prune_failed_count[] =
    "DELETE FROM jobs_failed WHERE id IN (SELECT id FROM jobs_failed"
    " WHERE id NOT IN (SELECT job_id FROM bg_jobs_tasks)"
    " ORDER BY failed_at DESC, id DESC LIMIT ?2 OFFSET ?1)";
// Finished workflows past the age of their kind of history (?1 succeeded,
// ?2 failed or cancelled), at most ?3, each as a unit: its tasks' history
// rows, its tasks, their dependencies and itself.
const char sql_prune_workflows_pick[] =
    "SELECT id FROM bg_jobs_workflows WHERE state <> 'running'"
    " AND finished_at < CASE WHEN state = 'succeeded' THEN ?1 ELSE ?2 END"
    " ORDER BY finished_at LIMIT ?3";
const char* const sql_prune_workflow[] = {
    "DELETE FROM jobs_succeeded WHERE id IN (SELECT job_id FROM bg_jobs_tasks"
    " WHERE workflow_id = ?1)",
    "DELETE FROM jobs_failed WHERE id IN (SELECT job_id FROM bg_jobs_tasks"
    " WHERE workflow_id = ?1)",
    "DELETE FROM bg_jobs_deps WHERE child_id IN (SELECT job_id"
    " FROM bg_jobs_tasks WHERE workflow_id = ?1)",
    "DELETE FROM bg_jobs_tasks WHERE workflow_id = ?1",
    "DELETE FROM bg_jobs_workflows WHERE id = ?1",
};

const char sql_running_by[] = "SELECT " BG_JOBS_JOB_COLUMNS " FROM jobs"
                              " WHERE reserved_by = ?1 ORDER BY id";

} // namespace

// -- connection
// ----------------------------------------------------------------

sqlite_adapter::sqlite_adapter(sqlite_options options)
    : options_(std::move(options)) {
  if (!options_.clock)
    options_.clock = clock::system();
}

sqlite_adapter::~sqlite_adapter() {
  if (inotify_fd_ >= 0)
    ::close(inotify_fd_);
  for (auto& kvp : statements_)
    sqlite3_finalize(kvp.second);
  sqlite3_close_v2(db_);
}

caf::expected<std::unique_ptr<sqlite_adapter>>
sqlite_adapter::open(sqlite_options options) {
  if (options.path.empty() || options.path == ":memory:" ||
      options.path.rfind("file::memory:", 0) == 0)
    return make_error(errc::database_unavailable,
                      "a SQLite store needs a file path, got '" + options.path +
                          "'");
  if (auto err = check_identifier("table prefix", options.table_prefix, 30))
    return err;
  std::unique_ptr<sqlite_adapter> self{new sqlite_adapter(std::move(options))};
  auto& path = self->options_.path;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (int rc = sqlite3_open_v2(path.c_str(), &self->db_, flags, nullptr);
      rc != SQLITE_OK) {
    std::string msg =
        self->db_ ? sqlite3_errmsg(self->db_) : sqlite3_errstr(rc);
    return make_error(errc::database_unavailable,
                      "cannot open SQLite database '" + path + "': " + msg);
  }
  sqlite3_extended_result_codes(self->db_, 1);
  sqlite3_busy_timeout(self->db_,
                       static_cast<int>(self->options_.busy_timeout.count()));
  if (auto r = self->exec("PRAGMA journal_mode = WAL"); !r)
    return std::move(r.error());
  if (auto r = self->exec(self->options_.synchronous_full
                              ? "PRAGMA synchronous = FULL"
                              : "PRAGMA synchronous = NORMAL");
      !r)
    return std::move(r.error());
  // The claim of a limited queue materializes its counts and candidates:
  // in a temporary file by default, which costs it most of its time.
  if (auto r = self->exec("PRAGMA temp_store = MEMORY"); !r)
    return std::move(r.error());
  auto version = self->schema_version();
  if (!version)
    return std::move(version.error());
  if (*version > db_adapter::schema_version_current)
    return make_error(errc::schema_too_new,
                      "'" + path + "' has bg_jobs schema version " +
                          std::to_string(*version) +
                          "; this bg_jobs understands up to " +
                          std::to_string(db_adapter::schema_version_current));
  return self;
}

adapter_factory sqlite_adapter::factory(sqlite_options options) {
  return [options]() -> caf::expected<std::unique_ptr<db_adapter>> {
    auto db = open(options);
    if (!db)
      return std::move(db.error());
    return std::unique_ptr<db_adapter>{std::move(*db)};
  };
}

capabilities sqlite_adapter::caps() const {
  capabilities c;
  c.supports_listen_notify = true; // by watching the WAL file
  return c;
}

caf::expected<std::vector<std::string>>
sqlite_adapter::await_wakeups(std::chrono::milliseconds timeout,
                              int interrupt_fd) {
  namespace fs = std::filesystem;
  using namespace std::chrono;
  auto file = fs::absolute(options_.path);
  auto wal = file.filename().string() + "-wal";
  if (inotify_fd_ < 0) {
    inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_fd_ < 0 ||
        inotify_add_watch(inotify_fd_, file.parent_path().c_str(),
                          IN_MODIFY | IN_CREATE) < 0)
      return make_error(errc::database_unavailable,
                        "cannot watch the directory of '" + options_.path +
                            "' for writes");
  }
  if (!woken_since_) {
    // Writes from before the first call are not reported: the caller
    // looks for work as it starts listening.
    auto s = prepare(sql_wake_last);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    if (int rc = q.step(); rc != SQLITE_ROW)
      return failure(rc, "reading where wake-ups stand");
    woken_since_ = {sqlite3_column_int64(q.get(), 0),
                    sqlite3_column_int64(q.get(), 1)};
  }
  auto now = steady_clock::now();
  if (recheck_at_)
    timeout = std::min(timeout, std::max(milliseconds{0},
                                         duration_cast<milliseconds>(
                                             *recheck_at_ - now) +
                                             milliseconds{1}));
  pollfd pfd[2] = {{inotify_fd_, POLLIN, 0}, {interrupt_fd, POLLIN, 0}};
  int ready = ::poll(pfd, interrupt_fd < 0 ? 1 : 2,
                     static_cast<int>(timeout.count()));
  bool written = false;
  if (ready > 0 && (pfd[0].revents & POLLIN) != 0) {
    alignas(inotify_event) char buf[4096];
    ssize_t n;
    while ((n = ::read(inotify_fd_, buf, sizeof(buf))) > 0) {
      for (char* p = buf; p < buf + n;) {
        auto ev = reinterpret_cast<inotify_event*>(p);
        if (ev->len > 0 && wal == ev->name)
          written = true;
        p += sizeof(inotify_event) + ev->len;
      }
    }
  }
  now = steady_clock::now();
  if (written) {
    recheck_step_ = milliseconds{1};
    recheck_at_ = now + recheck_step_;
  } else if (recheck_at_ && now >= *recheck_at_) {
    recheck_step_ *= 4;
    if (recheck_step_ > milliseconds{64})
      recheck_at_.reset();
    else
      recheck_at_ = now + recheck_step_;
  } else {
    return std::vector<std::string>{};
  }
  return woken_names();
}

caf::expected<std::vector<std::string>> sqlite_adapter::woken_names() {
  auto s = prepare(sql_wakes_since);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  auto& [id, seq] = *woken_since_;
  q.bind(1, id).bind(2, seq);
  std::vector<std::string> names;
  int64_t last_id = id, last_seq = seq;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    std::string name{
        reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 0))};
    if (std::find(names.begin(), names.end(), name) == names.end())
      names.push_back(std::move(name));
    auto& last = sqlite3_column_int64(q.get(), 2) == 0 ? last_id : last_seq;
    last = std::max<int64_t>(last, sqlite3_column_int64(q.get(), 1));
  }
  if (rc != SQLITE_DONE)
    return failure(rc, "reading the wake-ups");
  woken_since_ = {last_id, last_seq};
  if (std::find(names.begin(), names.end(), "*") != names.end())
    return std::vector<std::string>{"*"};
  return names;
}

caf::error sqlite_adapter::failure(int rc, const char* what) const {
  std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  std::string where = std::string{what} + " on '" + options_.path + "'";
  switch (rc & 0xff) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return make_error(errc::database_locked,
                      where + ": database is locked by another connection" +
                          " for longer than the busy timeout of " +
                          std::to_string(options_.busy_timeout.count()) +
                          " ms");
  case SQLITE_NOTADB:
    return make_error(errc::not_a_database,
                      "'" + options_.path + "' is not a SQLite database");
  case SQLITE_CANTOPEN:
  case SQLITE_READONLY:
  case SQLITE_IOERR:
  case SQLITE_FULL:
  case SQLITE_PERM:
    return make_error(errc::database_unavailable, where + ": " + msg);
  default:
    if (msg.rfind("no such table", 0) == 0)
      return make_error(errc::schema_missing,
                        where + ": " + msg + " (run migrate_up)");
    return make_error(errc::database_error, where + ": " + msg);
  }
}

caf::expected<sqlite3_stmt*> sqlite_adapter::prepare(const char* sql) {
  if (auto i = statements_.find(sql); i != statements_.end())
    return i->second;
  sqlite3_stmt* s = nullptr;
  auto text = this->sql(sql);
  if (int rc = sqlite3_prepare_v3(db_, text.c_str(), -1,
                                  SQLITE_PREPARE_PERSISTENT, &s, nullptr);
      rc != SQLITE_OK)
    return failure(rc, "preparing a statement");
  statements_.emplace(sql, s);
  return s;
}

caf::expected<void> sqlite_adapter::exec(const char* sql) {
  char* err = nullptr;
  auto text = this->sql(sql);
  if (int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
      rc != SQLITE_OK) {
    sqlite3_free(err);
    return failure(rc, sql);
  }
  return caf::unit;
}

// -- writes
// ----------------------------------------------------------------------

caf::expected<int64_t> sqlite_adapter::insert_job(const job& j,
                                                  const std::string& payload) {
  auto attrs = detail::attrs_text(j.meta, j.tags, j.trace);
  auto s = prepare(sql_enqueue);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, j.name).bind(2, payload).bind(3, to_unix_ms(j.created_at));
  q.bind(4, to_unix_ms(j.available_at)).bind(5, int64_t{j.priority});
  q.bind_key(6, j.concurrency_key);
  q.bind_key(7, j.second_concurrency_key);
  q.bind_key(8, attrs);
  // Outside a transaction the statement commits as it finishes. The id is
  // the row's rowid, which the connection keeps: a RETURNING clause would
  // gather its rows in a table of its own before handing them back.
  if (int rc = q.step(); rc != SQLITE_DONE)
    return failure(rc, "enqueueing a job");
  return int64_t{sqlite3_last_insert_rowid(db_)};
}

caf::expected<job> sqlite_adapter::insert_unique(job j,
                                                 const std::string& payload,
                                                 const job_request& request,
                                                 timestamp now) {
  auto key = request.unique_key();
  auto& u = *request.unique();
  // Runs a statement without results; returns how many rows it changed.
  auto step =
      [&](const char* sql,
          const std::function<void(statement&)>& bind) -> caf::expected<int> {
    auto s = prepare(sql);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    bind(q);
    if (int rc = q.step(); rc != SQLITE_DONE)
      return failure(rc, "enqueueing a unique job");
    return sqlite3_changes(db_);
  };
  auto stale = step(sql_unique_drop_stale, [&](statement& q) {
    q.bind(1, key).bind(2, to_unix_ms(now));
  });
  if (!stale)
    return std::move(stale.error());
  auto claimed = step(sql_unique_claim, [&](statement& q) {
    q.bind(1, key).bind(3, int64_t{u.include_succeeded ? 1 : 0});
    if (u.period)
      q.bind(2, to_unix_ms(now + *u.period));
  });
  if (!claimed)
    return std::move(claimed.error());
  if (*claimed == 0) {
    // An equal job counts: return it, store nothing.
    auto holder = prepare(sql_unique_holder);
    if (!holder)
      return std::move(holder.error());
    statement h{*holder};
    h.bind(1, key);
    if (h.step() != SQLITE_ROW)
      return failure(SQLITE_ERROR, "reading a unique key");
    auto id = sqlite3_column_int64(h.get(), 0);
    auto found = query_jobs(
        sql_job_by_id, [&](statement& q) { q.bind(1, id); }, false);
    if (!found)
      return std::move(found.error());
    if (found->empty())
      return make_error(errc::database_error,
                        "unique key '" + printable(key) + "' names job " +
                            std::to_string(id) + ", which is gone");
    auto existing = std::move(found->front());
    existing.conflict = true;
    auto change = detail::absorb(existing, {j, payload, {}}, u);
    if (!change)
      return std::move(change.error());
    if (!*change)
      return existing;
    if (!existing.reserved_by) {
      // Waiting: it takes the request (a succeeded holder changes nothing).
      auto updated = step(sql_absorb, [&](statement& q) {
        q.bind(1, id).bind(2, (*change)->payload);
        q.bind(3, to_unix_ms((*change)->available_at));
      });
      if (!updated)
        return std::move(updated.error());
      if (*updated == 1) {
        existing.payload = nlohmann::json::parse((*change)->payload);
        existing.available_at = (*change)->available_at;
      }
      return existing;
    }
    // Started: never changed. The request is a new job, which takes the
    // key over.
  }
  auto id = insert_job(j, payload);
  if (!id)
    return std::move(id.error());
  auto set =
      step(sql_unique_set, [&](statement& q) { q.bind(1, key).bind(2, *id); });
  if (!set)
    return std::move(set.error());
  j.id = *id;
  return j;
}

caf::expected<job> sqlite_adapter::enqueue_in(sqlite3* db,
                                              const job_request& request,
                                              const std::string& table_prefix) {
  if (auto err = check_identifier("table prefix", table_prefix, 30))
    return err;
  if (!db)
    return make_error(errc::invalid_argument, "no SQLite connection given");
  if (sqlite3_get_autocommit(db))
    return make_error(errc::invalid_argument,
                      "no transaction is open on the given connection: "
                      "enqueue_in belongs inside the application's BEGIN");
  if (request.unique())
    return make_error(errc::invalid_argument,
                      "unique requests cannot be enqueued in the caller's "
                      "transaction on SQLite");
  if (!request.rate_key().empty() || request.rate_cost() != 1 ||
      request.expiry())
    return make_error(errc::invalid_argument,
                      "requests with a rate key, a cost or an expiry cannot "
                      "be enqueued in the caller's transaction on SQLite");
  auto prepared = detail::prepare_job(request, clock::system()->now());
  if (!prepared)
    return std::move(prepared.error());
  auto& [j, text, attrs] = *prepared;
  sqlite3_stmt* raw = nullptr;
  auto insert = prefixed_sql(sql_enqueue, table_prefix);
  if (sqlite3_prepare_v2(db, insert.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    auto msg = std::string{"enqueueing a job in the caller's transaction: "} +
               sqlite3_errmsg(db);
    sqlite3_finalize(raw);
    return make_error(errc::database_error, msg);
  }
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt{raw,
                                                             sqlite3_finalize};
  sqlite3_bind_text(raw, 1, j.name.data(), static_cast<int>(j.name.size()),
                    SQLITE_STATIC);
  sqlite3_bind_text(raw, 2, text.data(), static_cast<int>(text.size()),
                    SQLITE_STATIC);
  sqlite3_bind_int64(raw, 3, to_unix_ms(j.created_at));
  sqlite3_bind_int64(raw, 4, to_unix_ms(j.available_at));
  sqlite3_bind_int64(raw, 5, j.priority);
  for (auto [i, key] : {std::pair{6, &j.concurrency_key},
                        std::pair{7, &j.second_concurrency_key},
                        std::pair{8, &attrs}}) {
    if (key->empty())
      sqlite3_bind_null(raw, i);
    else
      sqlite3_bind_text(raw, i, key->data(), static_cast<int>(key->size()),
                        SQLITE_STATIC);
  }
  if (sqlite3_step(raw) != SQLITE_DONE) {
    auto code = sqlite3_errcode(db);
    return make_error(code == SQLITE_BUSY || code == SQLITE_LOCKED
                          ? errc::database_locked
                          : errc::database_error,
                      std::string{"enqueueing a job in the caller's "
                                  "transaction: "} +
                          sqlite3_errmsg(db));
  }
  j.id = sqlite3_last_insert_rowid(db);
  return j;
}

caf::expected<job> sqlite_adapter::enqueue_job(const job_request& request) {
  auto now = options_.clock->now();
  auto prepared = detail::prepare_job(request, now);
  if (!prepared)
    return std::move(prepared.error());
  auto& [j, text, attrs] = *prepared;
  bool extras = !request.rate_key().empty() || request.rate_cost() != 1 ||
                request.expiry().has_value();
  if (request.unique() || extras)
    return in_transaction([&]() -> caf::expected<job> {
      caf::expected<job> stored{caf::error{}};
      if (request.unique()) {
        stored = insert_unique(std::move(j), text, request, now);
      } else {
        auto id = insert_job(j, text);
        if (!id)
          return std::move(id.error());
        j.id = *id;
        stored = std::move(j);
      }
      if (!stored)
        return stored;
      // A job that was there already keeps its own.
      if (stored->conflict)
        return stored;
      if (auto noted = note_extras(stored->id, request, now); !noted)
        return std::move(noted.error());
      return stored;
    });
  // One INSERT is a transaction by itself.
  auto id = insert_job(j, text);
  if (!id)
    return std::move(id.error());
  j.id = *id;
  return j;
}

caf::expected<std::vector<int64_t>>
sqlite_adapter::enqueue_jobs(const std::vector<job_request>& requests) {
  auto now = options_.clock->now();
  auto prepared = detail::prepare_jobs(requests, now);
  if (!prepared)
    return std::move(prepared.error());
  auto& jobs = *prepared;
  return in_transaction([&]() -> caf::expected<std::vector<int64_t>> {
    std::vector<int64_t> ids;
    ids.reserve(jobs.size());
    if (std::any_of(requests.begin(), requests.end(),
                    [](auto& r) { return r.unique().has_value(); })) {
      // One at a time, each unique request checked against its key; still
      // one transaction, all or none.
      for (size_t i = 0; i < jobs.size(); ++i) {
        if (requests[i].unique()) {
          auto stored = insert_unique(std::move(jobs[i].j), jobs[i].payload,
                                      requests[i], now);
          if (!stored)
            return std::move(stored.error());
          ids.push_back(stored->id);
          if (!stored->conflict)
            if (auto noted = note_extras(stored->id, requests[i], now); !noted)
              return std::move(noted.error());
          continue;
        }
        auto id = insert_job(jobs[i].j, jobs[i].payload);
        if (!id)
          return std::move(id.error());
        ids.push_back(*id);
        if (auto noted = note_extras(*id, requests[i], now); !noted)
          return std::move(noted.error());
      }
      return ids;
    }
    // The ids, consecutive from the next one (this write transaction is
    // the only one); whole chunks go in multi-row statements.
    int64_t next = 0;
    {
      auto s = prepare(sql_next_id);
      if (!s)
        return std::move(s.error());
      statement q{*s};
      if (int rc = q.step(); rc != SQLITE_ROW)
        return failure(rc, "enqueueing jobs");
      next = sqlite3_column_int64(q.get(), 0);
    }
    for (size_t k = 0; k < jobs.size(); ++k)
      ids.push_back(next + static_cast<int64_t>(k));
    auto bind_row = [&](statement& q, int first, size_t i) {
      q.bind(first, ids[i]);
      q.bind(first + 1, jobs[i].j.name).bind(first + 2, jobs[i].payload);
      q.bind(first + 3, to_unix_ms(now));
      q.bind(first + 4, to_unix_ms(jobs[i].j.available_at));
      q.bind(first + 5, int64_t{jobs[i].j.priority});
      q.bind_key(first + 6, jobs[i].j.concurrency_key);
      q.bind_key(first + 7, jobs[i].j.second_concurrency_key);
      q.bind_key(first + 8, jobs[i].attrs);
    };
    size_t i = 0;
    if (jobs.size() >= bulk_rows) {
      auto bulk = prepare(sql_enqueue_bulk());
      if (!bulk)
        return std::move(bulk.error());
      for (; i + bulk_rows <= jobs.size(); i += bulk_rows) {
        statement q{*bulk};
        for (size_t k = 0; k < bulk_rows; ++k)
          bind_row(q, static_cast<int>(k * 9 + 1), i + k);
        if (int rc = q.step(); rc != SQLITE_DONE)
          return failure(rc, "enqueueing jobs");
      }
    }
    if (i < jobs.size()) {
      auto single = prepare(sql_enqueue_plain);
      if (!single)
        return std::move(single.error());
      for (; i < jobs.size(); ++i) {
        statement q{*single};
        bind_row(q, 1, i);
        if (int rc = q.step(); rc != SQLITE_DONE)
          return failure(rc, "enqueueing jobs");
      }
    }
    for (size_t k = 0; k < requests.size(); ++k)
      if (auto noted = note_extras(ids[k], requests[k], now); !noted)
        return std::move(noted.error());
    return ids;
  });
}

caf::expected<std::vector<job>>
sqlite_adapter::reserve_in_tx(const reserve_params& params) {
  std::vector<job> result;
  if (params.job_names.empty())
    return result;
  auto names = nlohmann::json(params.job_names).dump();
  if (params.limited) {
    auto limited = reserve_limited(params, names);
    if (!limited)
      return limited;
    result = std::move(*limited);
  } else {
    auto s = prepare(sql_reserve);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, to_unix_ms(options_.clock->now())).bind(2, params.reserved_by);
    q.bind(3, names).bind(4, int64_t{params.limit}).bind(5, params.queue);
    int rc;
    while ((rc = q.step()) == SQLITE_ROW)
      result.emplace_back(read_job(q.get()));
    if (rc != SQLITE_DONE)
      return failure(rc, "reserving jobs");
  }
  if (params.limited && !params.rate_limit.empty())
    if (auto charged = charge_rates(params.rate_limit, result); !charged)
      return std::move(charged.error());
  sort_claim_order(result);
  return result;
}

caf::expected<std::string>
sqlite_adapter::explain_reserve(const reserve_params& params) {
  static const std::string sql =
      std::string{"EXPLAIN QUERY PLAN "} + sql_reserve;
  auto s = prepare(sql.c_str());
  if (!s)
    return std::move(s.error());
  statement q{*s};
  auto names = nlohmann::json(params.job_names).dump();
  q.bind(1, to_unix_ms(options_.clock->now())).bind(2, params.reserved_by);
  q.bind(3, names).bind(4, int64_t{params.limit}).bind(5, params.queue);
  std::string plan;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    plan += column_text(q.get(), 3) + "\n";
  if (rc != SQLITE_DONE)
    return failure(rc, "explaining the claim");
  return plan;
}

caf::expected<std::vector<job>>
sqlite_adapter::reserve_jobs(const reserve_params& params) {
  if (auto err = check_reserve(params))
    return err;
  if (params.job_names.empty())
    return std::vector<job>{};
  return in_transaction([&] { return reserve_in_tx(params); });
}

caf::expected<std::optional<int64_t>>
sqlite_adapter::next_due(const reserve_params& params, timestamp after) {
  static_assert(min_priority == 0 && max_priority == 9,
                "sql_next_due probes priorities 0 to 9");
  if (params.job_names.empty())
    return std::optional<int64_t>{};
  auto s = prepare(sql_next_due);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  auto names = nlohmann::json(params.job_names).dump();
  q.bind(1, to_unix_ms(options_.clock->now()))
      .bind(2, names)
      .bind(3, to_unix_ms(after));
  int rc = q.step();
  if (rc != SQLITE_ROW)
    return failure(rc, "reading when the next delayed job is due");
  if (sqlite3_column_type(q.get(), 0) == SQLITE_NULL)
    return std::optional<int64_t>{};
  return std::optional<int64_t>{
      std::max<int64_t>(1, sqlite3_column_int64(q.get(), 0))};
}

caf::expected<complete_reserve_result>
sqlite_adapter::complete_and_reserve(const std::vector<completion>& completions,
                                     const reserve_params& params) {
  if (auto err = check_reserve(params))
    return err;
  return in_transaction([&]() -> caf::expected<complete_reserve_result> {
    complete_reserve_result result;
    auto applied = complete_in_tx(completions);
    if (!applied)
      return std::move(applied.error());
    result.applied = std::move(*applied);
    // A failed statement leaves no trace, so the completions can still
    // commit without the reserve: as where the two are separate calls.
    if (auto jobs = reserve_in_tx(params))
      result.reserved = std::move(*jobs);
    else if (completions.empty())
      return std::move(jobs.error());
    else
      result.reserve_error = std::move(jobs.error());
    return result;
  });
}

caf::expected<std::vector<job>>
sqlite_adapter::release_unheld(const std::string& reserved_by,
                               const std::vector<int64_t>& held) {
  auto ids = nlohmann::json(held).dump();
  auto jobs = query_jobs(
      sql_release_unheld,
      [&](statement& q) { q.bind(1, reserved_by).bind(2, ids); }, true);
  if (jobs)
    sort_claim_order(*jobs);
  return jobs;
}

caf::expected<std::vector<job>>
sqlite_adapter::release_jobs_reserved_by(const std::string& reserved_by) {
  return query_jobs(
      sql_release_by, [&](statement& q) { q.bind(1, reserved_by); }, true);
}

caf::expected<std::vector<job>>
sqlite_adapter::release_jobs_of_node(const std::string& node) {
  auto prefix = node + "/";
  auto jobs = query_jobs(
      sql_release_node, [&](statement& q) { q.bind(1, prefix); }, true);
  if (jobs)
    sort_claim_order(*jobs);
  return jobs;
}

caf::expected<std::vector<job>>
sqlite_adapter::rescue_jobs(std::chrono::milliseconds lease) {
  auto cutoff = to_unix_ms(options_.clock->now() - lease);
  auto jobs = query_jobs(
      sql_rescue, [&](statement& q) { q.bind(1, cutoff); }, true);
  if (jobs)
    sort_claim_order(*jobs);
  return jobs;
}

caf::expected<std::vector<job>> sqlite_adapter::discard_expired(int limit) {
  auto now = to_unix_ms(options_.clock->now());
  return in_transaction([&]() -> caf::expected<std::vector<job>> {
    std::vector<job> expired;
    {
      auto s = prepare("SELECT " BG_JOBS_JOB_COLUMNS " FROM jobs"
                       " WHERE expires_at <= ?1 AND reserved_by IS NULL"
                       " ORDER BY expires_at LIMIT ?2");
      if (!s)
        return std::move(s.error());
      statement q{*s};
      q.bind(1, now).bind(2, int64_t{std::max(limit, 1)});
      int rc;
      while ((rc = q.step()) == SQLITE_ROW)
        expired.emplace_back(read_job(q.get()));
      if (rc != SQLITE_DONE)
        return failure(rc, "reading expired jobs");
    }
    const std::string reason = "expired";
    const std::optional<std::string> nobody;
    for (auto& j : expired) {
      auto moved = move_rows(
          sql_copy_cancelled, sql_delete,
          [&](statement& q) {
            q.bind(1, j.id).bind(2, now).bind(3, nobody).bind(4, reason);
          },
          [&](statement& q) { q.bind(1, j.id); }, "discarding expired jobs");
      if (!moved)
        return std::move(moved.error());
      j.last_error = reason;
    }
    if (!expired.empty())
      if (auto settled = settle_tasks(now); !settled)
        return std::move(settled.error());
    return expired;
  });
}

caf::expected<int64_t> sqlite_adapter::prune_jobs(const prune_params& p) {
  auto now = options_.clock->now();
  int64_t deleted = 0;
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return std::move(r.error());
  struct step {
    const char* sql;
    int64_t first;
  };
  const step steps[] = {
      {sql_prune_succeeded_age, to_unix_ms(now - p.succeeded_max_age)},
      {sql_prune_failed_age, to_unix_ms(now - p.failed_max_age)},
      {sql_prune_succeeded_count, p.max_succeeded},
      {sql_prune_failed_count, p.max_failed},
  };
  for (auto& st : steps) {
    auto s = prepare(st.sql);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, st.first).bind(2, int64_t{p.batch});
    if (int rc = q.step(); rc != SQLITE_DONE)
      return failure(rc, "pruning history");
    deleted += sqlite3_changes(db_);
  }
  std::vector<int64_t> workflows;
  {
    auto s = prepare(sql_prune_workflows_pick);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, to_unix_ms(now - p.succeeded_max_age))
        .bind(2, to_unix_ms(now - p.failed_max_age))
        .bind(3, int64_t{std::max(1, p.batch / 100)});
    int rc;
    while ((rc = q.step()) == SQLITE_ROW)
      workflows.push_back(sqlite3_column_int64(q.get(), 0));
    if (rc != SQLITE_DONE)
      return failure(rc, "pruning workflows");
  }
  for (auto id : workflows)
    for (auto sql : sql_prune_workflow) {
      auto n = execute(
          sql, [&](statement& q) { q.bind(1, id); }, "pruning a workflow");
      if (!n)
        return std::move(n.error());
      if (sql == sql_prune_workflow[0] || sql == sql_prune_workflow[1])
        deleted += *n;
    }
  // The rate keys of jobs older than every job kept (ids only grow).
  if (auto r = exec("DELETE FROM bg_jobs_rate_of WHERE job_id < (SELECT"
                    " min(m) FROM (SELECT min(id) AS m FROM jobs UNION ALL"
                    " SELECT min(id) FROM jobs_succeeded UNION ALL SELECT"
                    " min(id) FROM jobs_failed UNION ALL SELECT min(id) FROM"
                    " bg_jobs_blocked UNION ALL SELECT max(job_id)"
                    " + 1 FROM bg_jobs_rate_of))");
      !r)
    return std::move(r.error());
  if (p.dry_run)
    return deleted; // the transaction rolls back
  if (auto r = tx.commit(); !r)
    return std::move(r.error());
  return deleted;
}

caf::expected<std::vector<bool>>
sqlite_adapter::complete_in_tx(const std::vector<completion>& completions) {
  std::vector<bool> applied;
  applied.reserve(completions.size());
  auto now = to_unix_ms(options_.clock->now());
  bool to_history_failed = false;
  // Runs one completion statement; returns whether it changed the row.
  auto run = [&](const char* sql, const completion& c) -> caf::expected<bool> {
    auto s = prepare(sql);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, c.job_id).bind(3, c.reserved_by);
    bool is_move = sql != sql_retry && sql != sql_snooze;
    q.bind(2, is_move ? now : to_unix_ms(c.available_at));
    if (sql != sql_snooze)
      q.bind(4, c.error);
    if (sql == sql_retry)
      q.bind(5, now);
    if (int rc = q.step(); rc != SQLITE_DONE)
      return failure(rc, "completing a job");
    return sqlite3_changes(db_) == 1;
  };
  // The jobs deleted without history, whose progress goes with them.
  nlohmann::json dropped = nlohmann::json::array();
  // Most successes take a statement or two for all of one owner's
  // (`move_succeeded`); what did not apply there takes the statements of
  // one job below.
  std::vector<bool> moved(completions.size(), false);
  if (auto r = move_succeeded(completions, now, moved, dropped); !r)
    return std::move(r.error());
  for (size_t i = 0; i < completions.size(); ++i) {
    auto& c = completions[i];
    if (moved[i]) {
      applied.push_back(true);
      continue;
    }
    if (c.what == completion::kind::succeeded && !options_.succeeded_history) {
      auto n = execute(
          sql_drop_succeeded,
          [&](statement& q) { q.bind(1, c.job_id).bind(2, c.reserved_by); },
          "completing a job");
      if (!n)
        return std::move(n.error());
      if (*n == 1) {
        dropped.push_back(c.job_id);
        applied.push_back(true);
        continue;
      }
    }
    const char* sql = nullptr;
    switch (c.what) {
    case completion::kind::succeeded:
      sql = sql_copy_succeeded;
      break;
    case completion::kind::failed:
      sql = sql_copy_failed;
      break;
    case completion::kind::retry:
      sql = sql_retry;
      break;
    case completion::kind::snooze:
      sql = sql_snooze;
      break;
    case completion::kind::cancelled:
      sql = sql_copy_cancelled;
      break;
    }
    // The output first, kept only while the success below will apply.
    if (sql == sql_copy_succeeded && !c.output.empty())
      if (auto kept = execute(
              "INSERT INTO bg_jobs_outputs (job_id, output)"
              " SELECT id, ?2 FROM jobs WHERE id = ?1 AND reserved_by IS ?3"
              " AND cancel_reason IS NULL"
              " ON CONFLICT (job_id) DO UPDATE SET output = excluded.output",
              [&](statement& q) {
                q.bind(1, c.job_id).bind(2, c.output).bind(3, c.reserved_by);
              },
              "keeping a job's output");
          !kept)
        return std::move(kept.error());
    auto changed = run(sql, c);
    if (!changed)
      return std::move(changed.error());
    // Unchanged: the reservation is gone, or a cancel was asked for.
    if (!*changed && sql != sql_copy_cancelled) {
      sql = sql_copy_cancel_asked;
      changed = run(sql, c);
      if (!changed)
        return std::move(changed.error());
    }
    applied.push_back(*changed);
    if (*changed && sql != sql_copy_succeeded && sql != sql_retry &&
        sql != sql_snooze)
      to_history_failed = true;
    if (*changed && sql == sql_snooze && c.block_ms > 0 &&
        !c.rate_limit.empty())
      if (auto blocked = block_job_rate(c); !blocked)
        return std::move(blocked.error());
    if (!*changed || sql == sql_retry || sql == sql_snooze)
      continue;
    auto del = prepare(sql_delete);
    if (!del)
      return std::move(del.error());
    statement q{*del};
    q.bind(1, c.job_id);
    if (int rc = q.step(); rc != SQLITE_DONE)
      return failure(rc, "completing a job");
  }
  if (auto ids = dropped.dump(); !dropped.empty())
    for (auto sql : {"DELETE FROM bg_jobs_progress WHERE job_id IN"
                     " (SELECT value FROM json_each(?1))",
                     "DELETE FROM bg_jobs_outputs WHERE job_id IN"
                     " (SELECT value FROM json_each(?1))"})
      if (auto n = execute(
              sql, [&](statement& q) { q.bind(1, ids); },
              "completing jobs");
          !n)
        return std::move(n.error());
  // A workflow's task that failed may have doomed the tasks after it.
  if (to_history_failed)
    if (auto settled = settle_tasks(now); !settled)
      return std::move(settled.error());
  return applied;
}

caf::expected<void>
sqlite_adapter::move_succeeded(const std::vector<completion>& completions,
                               int64_t now, std::vector<bool>& moved,
                               nlohmann::json& dropped) {
  bool history = options_.succeeded_history;
  // The candidates by owner, each id once.
  std::map<std::optional<std::string>, std::vector<size_t>> by_owner;
  std::unordered_set<int64_t> seen;
  for (size_t i = 0; i < completions.size(); ++i) {
    auto& c = completions[i];
    // With history, an output is kept first, one job at a time.
    if (c.what == completion::kind::succeeded &&
        (!history || c.output.empty()) && seen.insert(c.job_id).second)
      by_owner[c.reserved_by].push_back(i);
  }
  for (auto& [owner, at] : by_owner) {
    if (at.size() < 2)
      continue; // the statements of one job are as quick
    nlohmann::json ids = nlohmann::json::array();
    for (auto i : at)
      ids.push_back(completions[i].job_id);
    auto text = ids.dump();
    auto s =
        prepare(history ? sql_copy_succeeded_many : sql_drop_succeeded_many);
    if (!s)
      return std::move(s.error());
    std::unordered_set<int64_t> done;
    {
      statement q{*s};
      q.bind(1, text).bind(2, now).bind(3, owner);
      int rc;
      while ((rc = q.step()) == SQLITE_ROW)
        done.insert(sqlite3_column_int64(*s, 0));
      if (rc != SQLITE_DONE)
        return failure(rc, "completing jobs");
    }
    if (done.empty())
      continue;
    nlohmann::json gone = nlohmann::json::array();
    for (auto i : at)
      if (done.count(completions[i].job_id)) {
        moved[i] = true;
        (history ? gone : dropped).push_back(completions[i].job_id);
      }
    if (!history)
      continue;
    auto gone_text = gone.dump();
    if (auto n = execute(
            "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?1))",
            [&](statement& q) { q.bind(1, gone_text); }, "completing jobs");
        !n)
      return std::move(n.error());
  }
  return {};
}

caf::expected<std::vector<bool>>
sqlite_adapter::complete_jobs(const std::vector<completion>& completions) {
  return in_transaction([&] { return complete_in_tx(completions); });
}

caf::expected<std::optional<job>>
sqlite_adapter::enqueue_scheduled(const scheduled_params& params) {
  auto text = params.request.validate();
  if (!text)
    return std::move(text.error());
  auto now = options_.clock->now();
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return std::move(r.error());
  auto& name = params.schedule_name();
  std::optional<int64_t> latest;
  int64_t latest_job = 0;
  {
    auto s = prepare(sql_schedule_latest);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, name);
    int rc = q.step();
    if (rc == SQLITE_ROW) {
      latest = sqlite3_column_int64(q.get(), 0);
      latest_job = sqlite3_column_int64(q.get(), 1);
    } else if (rc != SQLITE_DONE)
      return failure(rc, "reading the schedule");
  }
  if (params.trigger) {
    if (latest) {
      // The latest occurrence: replaced while it waits; running, it stays.
      auto s = prepare("SELECT reserved_by IS NOT NULL FROM jobs WHERE id = ?1");
      if (!s)
        return std::move(s.error());
      std::optional<bool> running;
      {
        statement q{*s};
        q.bind(1, latest_job);
        int rc = q.step();
        if (rc == SQLITE_ROW)
          running = sqlite3_column_int(q.get(), 0) != 0;
        else if (rc != SQLITE_DONE)
          return failure(rc, "reading the schedule");
      }
      if (running && *running && !params.allow_running)
        return make_error(errc::invalid_state,
                          "schedule '" + printable(name) +
                              "' has a run in progress; its overlap policy "
                              "allows no other");
      if (running && !*running) {
        for (auto sql :
             {"DELETE FROM jobs WHERE id = ?1 AND reserved_by IS NULL",
              "DELETE FROM bg_jobs_schedule WHERE job_id = ?1"}) {
          auto r = execute(
              sql, [&](statement& q) { q.bind(1, latest_job); },
              "replacing a waiting occurrence");
          if (!r)
            return std::move(r.error());
        }
      }
    }
  } else {
    bool as_seen = latest.has_value() == params.previous.has_value() &&
                   (!latest || *latest == to_unix_ms(*params.previous));
    if (!as_seen)
      return std::optional<job>{};
    auto s = prepare(sql_is_paused);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    std::string kind = "schedule";
    q.bind(1, kind).bind(2, name);
    int rc = q.step();
    if (rc == SQLITE_ROW)
      return std::optional<job>{}; // paused: nothing is enqueued
    if (rc != SQLITE_DONE)
      return failure(rc, "reading pauses");
  }
  if (params.require_stored) {
    auto s = prepare("SELECT 1 FROM bg_jobs_schedules WHERE name = ?1");
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, name);
    int rc = q.step();
    if (rc == SQLITE_DONE)
      return std::optional<job>{}; // removed meanwhile
    if (rc != SQLITE_ROW)
      return failure(rc, "reading schedules");
  }
  job j;
  j.name = params.request.name();
  j.payload = params.request.payload();
  j.created_at = now;
  // A triggered run is due now, by the store's clock.
  auto occurrence = params.trigger ? now : params.occurrence;
  j.available_at = occurrence;
  j.priority = params.request.priority();
  j.concurrency_key = params.request.concurrency_key();
  j.second_concurrency_key = params.request.second_concurrency_key();
  j.meta = params.request.meta();
  j.tags = params.request.tags();
  j.trace = params.request.trace();
  auto id = insert_job(j, *text);
  if (!id)
    return std::move(id.error());
  j.id = *id;
  if (auto noted = note_extras(j.id, params.request, occurrence); !noted)
    return std::move(noted.error());
  for (auto sql : {sql_schedule_insert, sql_schedule_prune}) {
    auto s = prepare(sql);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, name);
    if (sql == sql_schedule_insert) {
      q.bind(2, to_unix_ms(occurrence))
          .bind(3, j.id)
          .bind(4, static_cast<int64_t>(params.catch_up_left));
      if (params.skip_until)
        q.bind(5, to_unix_ms(*params.skip_until));
    }
    int rc = q.step();
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
      return std::optional<job>{};
    if (rc != SQLITE_DONE)
      return failure(rc, "recording a scheduled occurrence");
  }
  if (auto r = tx.commit(); !r)
    return std::move(r.error());
  return std::optional<job>{std::move(j)};
}

caf::expected<std::optional<scheduled_run>>
sqlite_adapter::last_scheduled_run(const std::string& name) {
  auto s = prepare(sql_schedule_state);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, name);
  int rc = q.step();
  if (rc == SQLITE_DONE)
    return std::optional<scheduled_run>{};
  if (rc != SQLITE_ROW)
    return failure(rc, "reading the schedule");
  scheduled_run run;
  run.scheduled_at = column_time(q.get(), 0);
  run.job_id = sqlite3_column_int64(q.get(), 1);
  run.pending = sqlite3_column_int(q.get(), 2) != 0;
  if (sqlite3_column_type(q.get(), 3) != SQLITE_NULL)
    run.finished_at = column_time(q.get(), 3);
  run.running = sqlite3_column_int(q.get(), 4) != 0;
  run.catch_up_left = sqlite3_column_int(q.get(), 5);
  run.skip_until = column_time_or_null(q.get(), 6);
  run.enqueued_at = column_time_or_null(q.get(), 7);
  return std::optional<scheduled_run>{run};
}

caf::expected<bool>
sqlite_adapter::mark_scheduled_run(const std::string& name,
                                   timestamp scheduled_at, int catch_up_left,
                                   std::optional<timestamp> skip_until) {
  auto r = execute(
      "UPDATE bg_jobs_schedule SET catch_up_left = ?3, skip_until = ?4"
      " WHERE name = ?1 AND scheduled_at = ?2 AND job_id IN"
      " (SELECT id FROM jobs WHERE reserved_by IS NULL)",
      [&](statement& q) {
        q.bind(1, name)
            .bind(2, to_unix_ms(scheduled_at))
            .bind(3, static_cast<int64_t>(catch_up_left));
        if (skip_until)
          q.bind(4, to_unix_ms(*skip_until));
      },
      "recording a catch-up");
  if (!r)
    return std::move(r.error());
  return *r > 0;
}

caf::expected<bool> sqlite_adapter::put_schedule(const stored_schedule& sc) {
  if (auto why = name_problem(sc.name); !why.empty())
    return make_error(errc::invalid_argument,
                      "schedule name '" + printable(sc.name) + "' " + why);
  auto now = to_unix_ms(options_.clock->now());
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return std::move(r.error());
  std::optional<bool> declared;
  bool changed = true;
  {
    auto s = prepare("SELECT declared, definition FROM bg_jobs_schedules"
                     " WHERE name = ?1");
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, sc.name);
    int rc = q.step();
    if (rc == SQLITE_ROW) {
      declared = sqlite3_column_int(q.get(), 0) != 0;
      changed = *declared != sc.declared ||
                column_text(q.get(), 1) != sc.definition;
    } else if (rc != SQLITE_DONE)
      return failure(rc, "reading schedules");
  }
  if (!sc.declared && declared && *declared)
    return make_error(errc::invalid_state,
                      "schedule '" + printable(sc.name) +
                          "' is declared in a node's code; change it there");
  auto r = execute(
      "INSERT INTO bg_jobs_schedules (name, definition, declared, seen_at,"
      " updated_at) VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (name) DO UPDATE"
      " SET definition = excluded.definition, declared = excluded.declared,"
      " seen_at = excluded.seen_at, updated_at = CASE WHEN definition ="
      " excluded.definition AND declared = excluded.declared THEN updated_at"
      " ELSE excluded.updated_at END",
      [&](statement& q) {
        q.bind(1, sc.name)
            .bind(2, sc.definition)
            .bind(3, int64_t{sc.declared ? 1 : 0})
            .bind(4, now);
      },
      "storing a schedule");
  if (!r)
    return std::move(r.error());
  if (changed)
    if (auto w = wake_schedulers(); !w)
      return std::move(w.error());
  if (auto c = tx.commit(); !c)
    return std::move(c.error());
  return !declared.has_value();
}

caf::expected<void> sqlite_adapter::wake_schedulers() {
  static const std::string name = schedules_changed;
  auto r = execute(
      "INSERT INTO bg_jobs_wakes (name, seq) VALUES (?1,"
      " (SELECT coalesce(max(seq), 0) + 1 FROM bg_jobs_wakes))"
      " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
      [&](statement& q) { q.bind(1, name); }, "announcing a schedule");
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<std::vector<stored_schedule>> sqlite_adapter::list_schedules() {
  auto s = prepare("SELECT name, definition, declared, seen_at, updated_at"
                   " FROM bg_jobs_schedules ORDER BY name");
  if (!s)
    return std::move(s.error());
  statement q{*s};
  std::vector<stored_schedule> result;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    stored_schedule sc;
    sc.name = column_text(q.get(), 0);
    sc.definition = column_text(q.get(), 1);
    sc.declared = sqlite3_column_int(q.get(), 2) != 0;
    sc.seen_at = column_time(q.get(), 3);
    sc.updated_at = column_time(q.get(), 4);
    result.push_back(std::move(sc));
  }
  if (rc != SQLITE_DONE)
    return failure(rc, "reading schedules");
  return result;
}

caf::expected<schedule_removal>
sqlite_adapter::remove_schedule(const std::string& name,
                                std::optional<timestamp> unseen_since) {
  auto now = to_unix_ms(options_.clock->now());
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return std::move(r.error());
  schedule_removal result;
  {
    auto s = prepare("SELECT declared, seen_at FROM bg_jobs_schedules"
                     " WHERE name = ?1");
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, name);
    int rc = q.step();
    if (rc == SQLITE_DONE)
      return result;
    if (rc != SQLITE_ROW)
      return failure(rc, "reading schedules");
    bool declared = sqlite3_column_int(q.get(), 0) != 0;
    auto seen = sqlite3_column_int64(q.get(), 1);
    if (!unseen_since && declared)
      return make_error(errc::invalid_state,
                        "schedule '" + printable(name) +
                            "' is declared in a node's code; it stops when "
                            "no node declares it");
    if (unseen_since && (!declared || seen >= to_unix_ms(*unseen_since)))
      return result;
  }
  {
    auto s = prepare("SELECT j.id FROM jobs j JOIN bg_jobs_schedule s"
                     " ON s.job_id = j.id WHERE s.name = ?1"
                     " AND j.reserved_by IS NULL");
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, name);
    int rc = q.step();
    if (rc == SQLITE_ROW)
      result.cancelled_job = sqlite3_column_int64(q.get(), 0);
    else if (rc != SQLITE_DONE)
      return failure(rc, "reading schedules");
  }
  static const char* const steps[] = {
      "INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
      " created_at, available_at, failed_at, priority, cancelled, errors,"
      " concurrency_key, second_concurrency_key, attrs)"
      " SELECT id, name, payload, attempts, 'the schedule was removed',"
      " created_at, available_at, ?2, priority, 1, errors, concurrency_key,"
      " second_concurrency_key, attrs FROM jobs"
      " WHERE reserved_by IS NULL AND id IN (SELECT job_id FROM"
      "   bg_jobs_schedule WHERE name = ?1)",
      "DELETE FROM jobs WHERE reserved_by IS NULL AND id IN"
      " (SELECT job_id FROM bg_jobs_schedule WHERE name = ?1)",
      "DELETE FROM bg_jobs_schedule WHERE name = ?1 AND ?2 = ?2",
      "DELETE FROM bg_jobs_paused WHERE kind = 'schedule' AND name = ?1"
      " AND ?2 = ?2",
      "DELETE FROM bg_jobs_schedules WHERE name = ?1 AND ?2 = ?2",
  };
  for (auto sql : steps) {
    auto r = execute(
        sql, [&](statement& q) { q.bind(1, name).bind(2, now); },
        "removing a schedule");
    if (!r)
      return std::move(r.error());
  }
  if (auto w = wake_schedulers(); !w)
    return std::move(w.error());
  if (auto c = tx.commit(); !c)
    return std::move(c.error());
  result.removed = true;
  return result;
}

// -- reads
// -----------------------------------------------------------------------

caf::expected<std::vector<job>> sqlite_adapter::query_jobs(
    const char* sql, const std::function<void(statement&)>& bind, bool write) {
  transaction tx{*this};
  if (write)
    if (auto r = tx.begin(); !r)
      return std::move(r.error());
  auto s = prepare(sql);
  if (!s)
    return std::move(s.error());
  std::vector<job> result;
  {
    statement q{*s};
    bind(q);
    int rc;
    while ((rc = q.step()) == SQLITE_ROW)
      result.emplace_back(read_job(q.get()));
    if (rc != SQLITE_DONE)
      return failure(rc, "reading jobs");
  }
  if (write)
    if (auto r = tx.commit(); !r)
      return std::move(r.error());
  return result;
}

caf::expected<std::vector<job>>
sqlite_adapter::get_running_jobs_of_owner(const std::string& owner) {
  return query_jobs(
      sql_running_by, [&](statement& q) { q.bind(1, owner); }, false);
}

caf::expected<int>
sqlite_adapter::execute(const char* sql,
                        const std::function<void(statement&)>& bind,
                        const char* what) {
  auto s = prepare(sql);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  bind(q);
  if (int rc = q.step(); rc != SQLITE_DONE)
    return failure(rc, what);
  return sqlite3_changes(db_);
}

} // namespace bg_jobs
