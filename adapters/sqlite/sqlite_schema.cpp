// The SQLite schema: its migrations, applied in order, and the version
// table that records them.

#include "bg_jobs/adapters/sqlite/detail/sqlite_internal.hpp"

namespace bg_jobs {

using namespace detail::sqlite;

namespace {

// Each entry upgrades the schema by one version; applied in order.
const char* const migrations[] = {
    // version 1
    "CREATE TABLE jobs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  available_at INTEGER NOT NULL,"
    "  reserved_at INTEGER,"
    "  reserved_by TEXT,"
    "  last_error TEXT);"
    // Serves the claim query and holds only what can be claimed.
    "CREATE INDEX jobs_claim_idx ON jobs (available_at, id)"
    "  WHERE reserved_by IS NULL;"
    "CREATE INDEX jobs_reserved_by_idx ON jobs (reserved_by)"
    "  WHERE reserved_by IS NOT NULL;"
    "CREATE TABLE jobs_succeeded ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  available_at INTEGER NOT NULL,"
    "  succeeded_at INTEGER NOT NULL);"
    "CREATE INDEX jobs_succeeded_at_idx ON jobs_succeeded (succeeded_at);"
    "CREATE TABLE jobs_failed ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  exception TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  available_at INTEGER NOT NULL,"
    "  failed_at INTEGER NOT NULL);"
    "CREATE INDEX jobs_failed_at_idx ON jobs_failed (failed_at);",
    // version 2: occurrences of scheduled jobs, one per name and time
    "CREATE TABLE bg_jobs_schedule ("
    "  name TEXT NOT NULL,"
    "  scheduled_at INTEGER NOT NULL,"
    "  job_id INTEGER NOT NULL,"
    "  PRIMARY KEY (name, scheduled_at));",
    // version 3: node heartbeats for leases
    "CREATE TABLE bg_jobs_nodes ("
    "  node TEXT PRIMARY KEY,"
    "  heartbeat_at INTEGER NOT NULL);",
    // version 4: unique jobs, one key per counting job
    "CREATE TABLE bg_jobs_unique ("
    "  unique_key TEXT PRIMARY KEY,"
    "  job_id INTEGER NOT NULL,"
    "  expires_at INTEGER,"
    "  counts_succeeded INTEGER NOT NULL DEFAULT 0);",
    // version 5: priorities, cancellation, error history, pauses
    "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN cancel_reason TEXT;"
    "ALTER TABLE jobs ADD COLUMN errors TEXT;"
    "ALTER TABLE jobs_succeeded ADD COLUMN priority INTEGER NOT NULL"
    "  DEFAULT 0;"
    "ALTER TABLE jobs_failed ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs_failed ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs_failed ADD COLUMN errors TEXT;"
    // The claim takes priority first; the index keeps serving it.
    "DROP INDEX jobs_claim_idx;"
    "CREATE INDEX jobs_claim_idx ON jobs (priority, available_at, id)"
    "  WHERE reserved_by IS NULL;"
    "CREATE INDEX jobs_failed_name_idx ON jobs_failed (name);"
    "CREATE TABLE bg_jobs_paused ("
    "  kind TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  paused_at INTEGER NOT NULL,"
    "  PRIMARY KEY (kind, name));",
    // version 6: who holds each node name
    "ALTER TABLE bg_jobs_nodes ADD COLUMN instance TEXT;"
    "ALTER TABLE bg_jobs_nodes ADD COLUMN host TEXT;"
    "ALTER TABLE bg_jobs_nodes ADD COLUMN pid INTEGER;"
    "ALTER TABLE bg_jobs_nodes ADD COLUMN started_at INTEGER;",
    // version 7: the queues each node runs
    "CREATE TABLE bg_jobs_queues ("
    "  queue TEXT NOT NULL,"
    "  job_name TEXT NOT NULL,"
    "  node TEXT NOT NULL,"
    "  concurrency INTEGER NOT NULL,"
    "  announced_at INTEGER NOT NULL,"
    "  PRIMARY KEY (queue, job_name, node));",
    // version 8: table settings for PostgreSQL's autovacuum; SQLite reuses
    // the pages of deleted rows by itself.
    "SELECT 1;",
    // version 9: leases, such as the one of the node that runs the
    // store-wide upkeep
    "CREATE TABLE bg_jobs_leases ("
    "  name TEXT PRIMARY KEY,"
    "  holder TEXT NOT NULL,"
    "  expires_at INTEGER NOT NULL);",
    // version 10: operator actions taken outside any node, for the upkeep's
    // node to report as events
    "CREATE TABLE bg_jobs_actions ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  at INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  queue TEXT NOT NULL,"
    "  job_id INTEGER NOT NULL,"
    "  job_name TEXT NOT NULL,"
    "  message TEXT NOT NULL);",
    // version 11: a job that succeeded keeps the errors of its failed
    // attempts (rows from before have none)
    "ALTER TABLE jobs_succeeded ADD COLUMN errors TEXT;",
    // version 12: concurrency keys and the limits on them (as on
    // PostgreSQL)
    "ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;"
    "ALTER TABLE jobs ADD COLUMN second_concurrency_key TEXT;"
    "ALTER TABLE jobs_failed ADD COLUMN concurrency_key TEXT;"
    "ALTER TABLE jobs_failed ADD COLUMN second_concurrency_key TEXT;"
    "CREATE TABLE bg_jobs_limits ("
    "  queue TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  max_running INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (queue, kind, key));",
    // version 13: sequences. A failed job an operator unblocked no longer
    // holds its key; the claim finds a key's oldest job by its index.
    "ALTER TABLE jobs_failed ADD COLUMN unblocked INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX jobs_key_idx ON jobs (concurrency_key, id)"
    "  WHERE concurrency_key IS NOT NULL;"
    "CREATE INDEX jobs_failed_key_idx ON jobs_failed (concurrency_key)"
    "  WHERE concurrency_key IS NOT NULL;",
    // version 14: rate limits and expiry (as on PostgreSQL). Times in milliseconds
    // since the epoch by the store's clock, fractional.
    "CREATE TABLE bg_jobs_rate_limits ("
    "  name TEXT PRIMARY KEY,"
    "  allowed INTEGER NOT NULL,"
    "  period_ms INTEGER NOT NULL,"
    "  burst INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE TABLE bg_jobs_rate_keys ("
    "  name TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  tat REAL NOT NULL DEFAULT 0,"
    "  blocked_until REAL NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (name, key)) WITHOUT ROWID;"
    "CREATE TABLE bg_jobs_rate_of ("
    "  job_id INTEGER PRIMARY KEY,"
    "  rate_key TEXT NOT NULL,"
    "  cost INTEGER NOT NULL);"
    // and expiry: no attempt starts at or after `expires_at`
    "ALTER TABLE jobs ADD COLUMN expires_at INTEGER;"
    "CREATE INDEX jobs_expiry_idx ON jobs (expires_at)"
    "  WHERE expires_at IS NOT NULL;",
    // version 15: wake-ups (what PostgreSQL's notifications carry). A
    // listener that sees the WAL written reads the jobs inserted past the
    // last id it saw (ids only grow: see version 22), and the names here
    // past the last sequence number it saw: jobs that became claimable
    // without a new id (a retried one, `*` for a resumed pause or an
    // unblocked key). Writes that made nothing claimable wake no queue.
    "CREATE TABLE bg_jobs_wakes ("
    "  name TEXT PRIMARY KEY,"
    "  seq INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TRIGGER jobs_failed_retry_wake AFTER DELETE ON jobs_failed"
    " WHEN EXISTS (SELECT 1 FROM jobs WHERE id = OLD.id) BEGIN"
    "  INSERT INTO bg_jobs_wakes (name, seq) VALUES (OLD.name,"
    "   (SELECT coalesce(max(seq), 0) + 1 FROM bg_jobs_wakes))"
    "  ON CONFLICT (name) DO UPDATE SET seq = excluded.seq;"
    " END;"
    "CREATE TRIGGER bg_jobs_paused_wake AFTER DELETE ON bg_jobs_paused BEGIN"
    "  INSERT INTO bg_jobs_wakes (name, seq) VALUES ('*',"
    "   (SELECT coalesce(max(seq), 0) + 1 FROM bg_jobs_wakes))"
    "  ON CONFLICT (name) DO UPDATE SET seq = excluded.seq;"
    " END;"
    "CREATE TRIGGER jobs_failed_unblock_wake AFTER UPDATE OF unblocked"
    " ON jobs_failed BEGIN"
    "  INSERT INTO bg_jobs_wakes (name, seq) VALUES ('*',"
    "   (SELECT coalesce(max(seq), 0) + 1 FROM bg_jobs_wakes))"
    "  ON CONFLICT (name) DO UPDATE SET seq = excluded.seq;"
    " END;",
    // version 16: a job's metadata, tags and trace context (JSON text,
    // NULL when it has none), kept wherever it moves.
    "ALTER TABLE jobs ADD COLUMN attrs TEXT;"
    "ALTER TABLE jobs_succeeded ADD COLUMN attrs TEXT;"
    "ALTER TABLE jobs_failed ADD COLUMN attrs TEXT;",
    // version 17: workflows. A task is a job; one waiting for parents is
    // kept aside in `bg_jobs_blocked` (the columns of `jobs`) until they
    // finish. Triggers on the history tables take each step in the
    // transaction that finished a task, whichever statement did (a
    // completion, a cancel, the handler's own transaction): the task's
    // state and its workflow's counts, its children's count of unfinished
    // parents, the move into `jobs` of those with none left, and the end of
    // the workflow. A child a parent dooms (`cancel` policy) is marked
    // 'doomed', and the adapter moves it to `jobs_failed` as cancelled in
    // the same transaction, which takes the next step.
    "CREATE TABLE bg_jobs_workflows ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  total INTEGER NOT NULL,"
    "  succeeded INTEGER NOT NULL DEFAULT 0,"
    "  failed INTEGER NOT NULL DEFAULT 0,"
    "  cancelled INTEGER NOT NULL DEFAULT 0,"
    "  cancel_requested INTEGER NOT NULL DEFAULT 0,"
    "  open INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  finished_at INTEGER);"
    "CREATE INDEX bg_jobs_workflows_state_idx ON bg_jobs_workflows"
    "  (state, id);"
    "CREATE TABLE bg_jobs_tasks ("
    "  job_id INTEGER PRIMARY KEY,"
    "  workflow_id INTEGER NOT NULL,"
    "  task TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  pending INTEGER NOT NULL,"
    "  finished_at INTEGER,"
    "  role TEXT NOT NULL DEFAULT 'task',"
    "  UNIQUE (workflow_id, task));"
    "CREATE INDEX bg_jobs_tasks_doomed_idx ON bg_jobs_tasks (job_id)"
    "  WHERE state = 'doomed';"
    "CREATE TABLE bg_jobs_deps ("
    "  parent_id INTEGER NOT NULL,"
    "  child_id INTEGER NOT NULL,"
    "  policy TEXT NOT NULL,"
    "  PRIMARY KEY (parent_id, child_id)) WITHOUT ROWID;"
    "CREATE INDEX bg_jobs_deps_child_idx ON bg_jobs_deps (child_id);"
    "CREATE TABLE bg_jobs_blocked ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  available_at INTEGER NOT NULL,"
    "  reserved_at INTEGER,"
    "  reserved_by TEXT,"
    "  last_error TEXT,"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  cancel_reason TEXT,"
    "  errors TEXT,"
    "  concurrency_key TEXT,"
    "  second_concurrency_key TEXT,"
    "  expires_at INTEGER,"
    "  attrs TEXT);"
    "CREATE TABLE bg_jobs_outputs ("
    "  job_id INTEGER PRIMARY KEY,"
    "  output TEXT NOT NULL);"
    // A job's output goes with its history row.
    "CREATE TRIGGER bg_jobs_output_pruned AFTER DELETE ON jobs_succeeded"
    " BEGIN DELETE FROM bg_jobs_outputs WHERE job_id = OLD.id; END;"
    // A task released into `jobs` with an id below the newest wakes its
    // name as a retried job does.
    "CREATE TRIGGER bg_jobs_blocked_wake AFTER DELETE ON bg_jobs_blocked"
    " WHEN EXISTS (SELECT 1 FROM jobs WHERE id = OLD.id) BEGIN"
    "  INSERT INTO bg_jobs_wakes (name, seq) VALUES (OLD.name,"
    "   (SELECT coalesce(max(seq), 0) + 1 FROM bg_jobs_wakes))"
    "  ON CONFLICT (name) DO UPDATE SET seq = excluded.seq;"
    " END;"
    "CREATE TRIGGER bg_jobs_task_succeeded AFTER INSERT ON jobs_succeeded"
    " WHEN EXISTS (SELECT 1 FROM bg_jobs_tasks WHERE job_id = NEW.id"
    "   AND state NOT IN ('succeeded', 'failed', 'cancelled')) BEGIN"
    "  UPDATE bg_jobs_tasks SET state = 'succeeded',"
    "   finished_at = NEW.succeeded_at WHERE job_id = NEW.id;"
    "  UPDATE bg_jobs_workflows SET succeeded = succeeded + 1"
    "   WHERE id = (SELECT workflow_id FROM bg_jobs_tasks"
    "   WHERE job_id = NEW.id AND role = 'task');"
    "  UPDATE bg_jobs_tasks SET pending = pending - 1"
    "   WHERE state IN ('blocked', 'held') AND job_id IN (SELECT child_id"
    "   FROM bg_jobs_deps WHERE parent_id = NEW.id);"
    BG_JOBS_SQLITE_RELEASE("NEW.id", "NEW.succeeded_at")
    BG_JOBS_SQLITE_FINISH("NEW.id", "NEW.succeeded_at")
    BG_JOBS_SQLITE_CALLBACKS("NEW.id", "NEW.succeeded_at")
    " END;"
    "CREATE TRIGGER bg_jobs_task_failed AFTER INSERT ON jobs_failed"
    " WHEN EXISTS (SELECT 1 FROM bg_jobs_tasks WHERE job_id = NEW.id"
    "   AND state NOT IN ('succeeded', 'failed', 'cancelled')) BEGIN"
    "  UPDATE bg_jobs_tasks SET state = CASE WHEN NEW.cancelled <> 0"
    "   THEN 'cancelled' ELSE 'failed' END, finished_at = NEW.failed_at"
    "   WHERE job_id = NEW.id;"
    "  UPDATE bg_jobs_workflows SET failed = failed + (NEW.cancelled = 0),"
    "   cancelled = cancelled + (NEW.cancelled <> 0)"
    "   WHERE id = (SELECT workflow_id FROM bg_jobs_tasks"
    "   WHERE job_id = NEW.id AND role = 'task');"
    "  UPDATE bg_jobs_tasks SET pending = pending - 1"
    "   WHERE state IN ('blocked', 'held') AND job_id IN (SELECT child_id"
    "   FROM bg_jobs_deps WHERE parent_id = NEW.id AND policy = 'ignore');"
    "  UPDATE bg_jobs_tasks SET state = 'held'"
    "   WHERE state = 'blocked' AND job_id IN (SELECT child_id"
    "   FROM bg_jobs_deps WHERE parent_id = NEW.id AND policy = 'hold');"
    "  UPDATE bg_jobs_tasks SET state = 'doomed'"
    "   WHERE state IN ('blocked', 'held') AND job_id IN (SELECT child_id"
    "   FROM bg_jobs_deps WHERE parent_id = NEW.id AND policy = 'cancel');"
    BG_JOBS_SQLITE_RELEASE("NEW.id", "NEW.failed_at")
    BG_JOBS_SQLITE_FINISH("NEW.id", "NEW.failed_at")
    BG_JOBS_SQLITE_CALLBACKS("NEW.id", "NEW.failed_at")
    " END;"
    // A failed or cancelled task retried (back in `jobs`) runs again: its
    // workflow is running again.
    "CREATE TRIGGER bg_jobs_task_retried AFTER DELETE ON jobs_failed"
    " WHEN EXISTS (SELECT 1 FROM jobs WHERE id = OLD.id)"
    "  AND EXISTS (SELECT 1 FROM bg_jobs_tasks WHERE job_id = OLD.id"
    "   AND state IN ('failed', 'cancelled')) BEGIN"
    "  UPDATE bg_jobs_workflows SET failed = failed - (OLD.cancelled = 0),"
    "   cancelled = cancelled - (OLD.cancelled <> 0), state = 'running',"
    "   finished_at = NULL"
    "   WHERE id = (SELECT workflow_id FROM bg_jobs_tasks"
    "   WHERE job_id = OLD.id AND role = 'task');"
    "  UPDATE bg_jobs_tasks SET state = 'ready', finished_at = NULL"
    "   WHERE job_id = OLD.id;"
    " END;",
    // version 18: the progress a running handler last reported, one row per
    // job, kept while the job is: it goes with the job's history row (a
    // failed job retried keeps it).
    "CREATE TABLE bg_jobs_progress ("
    "  job_id INTEGER PRIMARY KEY,"
    "  attempt INTEGER NOT NULL,"
    "  fraction REAL NOT NULL,"
    "  text TEXT NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE TRIGGER bg_jobs_progress_pruned AFTER DELETE ON jobs_succeeded"
    " BEGIN DELETE FROM bg_jobs_progress WHERE job_id = OLD.id; END;"
    "CREATE TRIGGER bg_jobs_progress_pruned_failed AFTER DELETE ON jobs_failed"
    " WHEN NOT EXISTS (SELECT 1 FROM jobs WHERE id = OLD.id)"
    " BEGIN DELETE FROM bg_jobs_progress WHERE job_id = OLD.id; END;"
    // What the upkeep reports: each finish of a workflow once (the one it
    // took last is `reported_at`; those before this version count as
    // reported), and the workflows a held task keeps running.
    "ALTER TABLE bg_jobs_workflows ADD COLUMN reported_at INTEGER;"
    "UPDATE bg_jobs_workflows SET reported_at = finished_at;"
    "CREATE INDEX bg_jobs_workflows_unreported_idx ON bg_jobs_workflows"
    "  (finished_at) WHERE finished_at IS NOT NULL"
    "  AND (reported_at IS NULL OR reported_at <> finished_at);"
    "CREATE INDEX bg_jobs_tasks_held_idx ON bg_jobs_tasks (workflow_id)"
    "  WHERE state = 'held';"
    // A workflow's callbacks, which the trigger of every task's end looks
    // at: without it each end read all the workflow's tasks (a wide
    // workflow's ends took time in its width).
    "CREATE INDEX bg_jobs_tasks_callbacks_idx ON bg_jobs_tasks (workflow_id)"
    "  WHERE role <> 'task';",
    // version 19: schedules kept as data (declared in code, or added at run
    // time); an occurrence records the catch-up it belongs to.
    "CREATE TABLE bg_jobs_schedules ("
    "  name TEXT PRIMARY KEY,"
    "  definition TEXT NOT NULL,"
    "  declared INTEGER NOT NULL,"
    "  seen_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "ALTER TABLE bg_jobs_schedule ADD COLUMN catch_up_left INTEGER NOT NULL"
    "  DEFAULT 0;"
    "ALTER TABLE bg_jobs_schedule ADD COLUMN skip_until INTEGER;",
    // version 20: the index of keys holds only unreserved jobs, so that a
    // claim (which reserves) does not add to it. A sequence looks in it for
    // an older waiting job of a key; a key with a reserved job is passed
    // over by the claim's count of held slots.
    "DROP INDEX jobs_key_idx;"
    "CREATE INDEX jobs_key_idx ON jobs (concurrency_key, id)"
    "  WHERE concurrency_key IS NOT NULL AND reserved_by IS NULL;",
    // version 21: a workflow that finishes and a task that becomes held are
    // announced (`workflows_changed`), so that the node that holds the
    // upkeep reports them at once instead of polling for them.
    "CREATE TRIGGER bg_jobs_workflow_finished AFTER UPDATE OF finished_at"
    " ON bg_jobs_workflows WHEN NEW.finished_at IS NOT NULL"
    "  AND NEW.finished_at IS NOT OLD.finished_at BEGIN"
    "  INSERT INTO bg_jobs_wakes (name, seq) VALUES (char(1) || 'workflows',"
    "   (SELECT coalesce(max(seq), 0) + 1 FROM bg_jobs_wakes))"
    "  ON CONFLICT (name) DO UPDATE SET seq = excluded.seq;"
    " END;"
    "CREATE TRIGGER bg_jobs_task_held AFTER UPDATE OF state ON bg_jobs_tasks"
    " WHEN NEW.state = 'held' AND OLD.state <> 'held' BEGIN"
    "  INSERT INTO bg_jobs_wakes (name, seq) VALUES (char(1) || 'workflows',"
    "   (SELECT coalesce(max(seq), 0) + 1 FROM bg_jobs_wakes))"
    "  ON CONFLICT (name) DO UPDATE SET seq = excluded.seq;"
    " END;",
    // version 22: a job's id without AUTOINCREMENT, which wrote the page of
    // `sqlite_sequence` in every enqueue's transaction (a third of the
    // pages such a transaction wrote). Ids still only grow, and none is
    // used twice: an insert takes one past the greatest of the ids in
    // `jobs` and `bg_jobs_ids.hwm` (BG_JOBS_SQLITE_NEXT_ID), and whatever
    // deletes the job with the greatest id (a completion, a move into a
    // workflow's blocked tasks, a delete) records it there first, by the
    // trigger. `jobs` is rebuilt (SQLite cannot drop AUTOINCREMENT), its
    // rows and ids kept; `legacy_alter_table` lets the rename through the
    // triggers of other tables that name `jobs`.
    "PRAGMA legacy_alter_table = ON;"
    "CREATE TABLE bg_jobs_ids (hwm INTEGER NOT NULL);"
    "INSERT INTO bg_jobs_ids (hwm) SELECT max("
    "  coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0),"
    "  coalesce((SELECT max(id) FROM jobs), 0),"
    "  coalesce((SELECT max(id) FROM jobs_succeeded), 0),"
    "  coalesce((SELECT max(id) FROM jobs_failed), 0),"
    "  coalesce((SELECT max(id) FROM bg_jobs_blocked), 0));"
    "CREATE TABLE jobs_v22 ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  available_at INTEGER NOT NULL,"
    "  reserved_at INTEGER,"
    "  reserved_by TEXT,"
    "  last_error TEXT,"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  cancel_reason TEXT,"
    "  errors TEXT,"
    "  concurrency_key TEXT,"
    "  second_concurrency_key TEXT,"
    "  expires_at INTEGER,"
    "  attrs TEXT);"
    "INSERT INTO jobs_v22 (" BG_JOBS_SQLITE_ROW_COLUMNS ")"
    "  SELECT " BG_JOBS_SQLITE_ROW_COLUMNS " FROM jobs;"
    "DROP TABLE jobs;"
    "ALTER TABLE jobs_v22 RENAME TO jobs;"
    "PRAGMA legacy_alter_table = OFF;"
    "CREATE INDEX jobs_reserved_by_idx ON jobs (reserved_by)"
    "  WHERE reserved_by IS NOT NULL;"
    "CREATE INDEX jobs_claim_idx ON jobs (priority, available_at, id)"
    "  WHERE reserved_by IS NULL;"
    "CREATE INDEX jobs_expiry_idx ON jobs (expires_at)"
    "  WHERE expires_at IS NOT NULL;"
    "CREATE INDEX jobs_key_idx ON jobs (concurrency_key, id)"
    "  WHERE concurrency_key IS NOT NULL AND reserved_by IS NULL;"
    "CREATE TRIGGER jobs_id_hwm AFTER DELETE ON jobs"
    " WHEN OLD.id > coalesce((SELECT max(id) FROM jobs), 0) BEGIN"
    "  UPDATE bg_jobs_ids SET hwm = max(hwm, OLD.id);"
    " END;",
    // version 23: the index of keys holds only the jobs of sequenced
    // queues. Keeping an entry for every keyed job cost each claim a page
    // of that index per key among its jobs (a commit of a claim over 100
    // keys wrote most of it), and only a sequence reads it. A sequenced
    // queue's claim marks its names' keyed jobs (`seq` = 1) in its write
    // transaction before it looks for a key's oldest job, finding the
    // unmarked ones by `jobs_unsequenced_idx`, whose entries follow ids,
    // so that jobs claimed and completed together share its pages.
    "ALTER TABLE jobs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;"
    "DROP INDEX jobs_key_idx;"
    "CREATE INDEX jobs_key_idx ON jobs (concurrency_key, id)"
    "  WHERE seq = 1 AND reserved_by IS NULL;"
    "CREATE INDEX jobs_unsequenced_idx ON jobs (name, id)"
    "  WHERE seq = 0 AND concurrency_key IS NOT NULL;",
};

constexpr int known_version = std::size(migrations);
static_assert(known_version == db_adapter::schema_version_current);

const char sql_has_version_table[] =
    "SELECT count(*) FROM sqlite_master"
    " WHERE type = 'table' AND name = 'bg_jobs_migrations'";
const char sql_version[] =
    "SELECT coalesce(max(version), 0) FROM bg_jobs_migrations";
const char sql_insert_version[] =
    "INSERT INTO bg_jobs_migrations (version, applied_at) VALUES (?1, ?2)";

} // namespace

caf::expected<int> sqlite_adapter::schema_version() {
  auto has = prepare(sql_has_version_table);
  if (!has)
    return std::move(has.error());
  statement q{*has};
  if (int rc = q.step(); rc != SQLITE_ROW)
    return failure(rc, "reading the schema version");
  if (sqlite3_column_int(q.get(), 0) == 0)
    return 0;
  // Not cached: the table comes and goes with the migrations.
  sqlite3_stmt* s = nullptr;
  auto version_sql = sql(sql_version);
  if (int rc = sqlite3_prepare_v2(db_, version_sql.c_str(), -1, &s, nullptr);
      rc != SQLITE_OK)
    return failure(rc, "reading the schema version");
  int rc = sqlite3_step(s);
  int version = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
  sqlite3_finalize(s);
  if (rc != SQLITE_ROW)
    return failure(rc, "reading the schema version");
  return version;
}

caf::expected<void> sqlite_adapter::migrate_up() {
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return r;
  if (auto r = exec("CREATE TABLE IF NOT EXISTS bg_jobs_migrations ("
                    " version INTEGER PRIMARY KEY,"
                    " applied_at INTEGER NOT NULL)");
      !r)
    return r;
  auto current = schema_version();
  if (!current)
    return std::move(current.error());
  if (*current > known_version)
    return make_error(errc::schema_too_new,
                      "schema version " + std::to_string(*current) +
                          " is newer than this bg_jobs understands");
  for (int v = *current + 1; v <= known_version; ++v) {
    if (auto r = exec(migrations[v - 1]); !r)
      return r;
    sqlite3_stmt* s = nullptr;
    auto insert = sql(sql_insert_version);
    sqlite3_prepare_v2(db_, insert.c_str(), -1, &s, nullptr);
    sqlite3_bind_int(s, 1, v);
    sqlite3_bind_int64(s, 2, to_unix_ms(options_.clock->now()));
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
      return failure(rc, "recording the schema version");
  }
  return tx.commit();
}

caf::expected<void> sqlite_adapter::migrate_down() {
  // Finalize first: a pending statement on a dropped table would hold locks.
  for (auto& kvp : statements_)
    sqlite3_finalize(kvp.second);
  statements_.clear();
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return r;
  if (auto r = exec("DROP TABLE IF EXISTS bg_jobs_ids;"
                    "DROP TABLE IF EXISTS bg_jobs_schedules;"
                    "DROP TABLE IF EXISTS bg_jobs_progress;"
                    "DROP TABLE IF EXISTS bg_jobs_outputs;"
                    "DROP TABLE IF EXISTS bg_jobs_blocked;"
                    "DROP TABLE IF EXISTS bg_jobs_deps;"
                    "DROP TABLE IF EXISTS bg_jobs_tasks;"
                    "DROP TABLE IF EXISTS bg_jobs_workflows;"
                    "DROP TABLE IF EXISTS bg_jobs_wakes;"
                    "DROP TABLE IF EXISTS bg_jobs_rate_of;"
                    "DROP TABLE IF EXISTS bg_jobs_rate_keys;"
                    "DROP TABLE IF EXISTS bg_jobs_rate_limits;"
                    "DROP TABLE IF EXISTS bg_jobs_limits;"
                    "DROP TABLE IF EXISTS bg_jobs_actions;"
                    "DROP TABLE IF EXISTS bg_jobs_leases;"
                    "DROP TABLE IF EXISTS bg_jobs_queues;"
                    "DROP TABLE IF EXISTS bg_jobs_paused;"
                    "DROP TABLE IF EXISTS bg_jobs_unique;"
                    "DROP TABLE IF EXISTS bg_jobs_nodes;"
                    "DROP TABLE IF EXISTS bg_jobs_schedule;"
                    "DROP TABLE IF EXISTS jobs;"
                    "DROP TABLE IF EXISTS jobs_succeeded;"
                    "DROP TABLE IF EXISTS jobs_failed;"
                    "DROP TABLE IF EXISTS bg_jobs_migrations;");
      !r)
    return r;
  return tx.commit();
}

} // namespace bg_jobs
