// The PostgreSQL schema: its migrations, applied in order, and the version
// table that records them.

#include "bg_jobs/adapters/postgres/detail/postgres_internal.hpp"

namespace bg_jobs {

using namespace detail::postgres;

namespace {

const char* const migrations[] = {
    // version 1
    "CREATE TABLE jobs ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  created_at TIMESTAMPTZ NOT NULL,"
    "  available_at TIMESTAMPTZ NOT NULL,"
    "  reserved_at TIMESTAMPTZ,"
    "  reserved_by TEXT,"
    "  last_error TEXT);"
    "CREATE INDEX jobs_claim_idx ON jobs (available_at, id)"
    "  WHERE reserved_by IS NULL;"
    "CREATE INDEX jobs_reserved_by_idx ON jobs (reserved_by)"
    "  WHERE reserved_by IS NOT NULL;"
    "CREATE TABLE jobs_succeeded ("
    "  id BIGINT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  created_at TIMESTAMPTZ NOT NULL,"
    "  available_at TIMESTAMPTZ NOT NULL,"
    "  succeeded_at TIMESTAMPTZ NOT NULL);"
    "CREATE INDEX jobs_succeeded_at_idx ON jobs_succeeded (succeeded_at);"
    "CREATE TABLE jobs_failed ("
    "  id BIGINT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  exception TEXT NOT NULL,"
    "  created_at TIMESTAMPTZ NOT NULL,"
    "  available_at TIMESTAMPTZ NOT NULL,"
    "  failed_at TIMESTAMPTZ NOT NULL);"
    "CREATE INDEX jobs_failed_at_idx ON jobs_failed (failed_at);",
    // version 2: occurrences of scheduled jobs, one per name and time
    "CREATE TABLE bg_jobs_schedule ("
    "  name TEXT NOT NULL,"
    "  scheduled_at TIMESTAMPTZ NOT NULL,"
    "  job_id BIGINT NOT NULL,"
    "  PRIMARY KEY (name, scheduled_at));",
    // version 3: node heartbeats for leases
    "CREATE TABLE bg_jobs_nodes ("
    "  node TEXT PRIMARY KEY,"
    "  heartbeat_at TIMESTAMPTZ NOT NULL);",
    // version 4: unique jobs, one key per counting job
    "CREATE TABLE bg_jobs_unique ("
    "  unique_key TEXT PRIMARY KEY,"
    "  job_id BIGINT NOT NULL,"
    "  expires_at TIMESTAMPTZ,"
    "  counts_succeeded BOOLEAN NOT NULL DEFAULT false);",
    // version 5: priorities, cancellation, error history, pauses
    "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0,"
    "  ADD COLUMN cancel_reason TEXT, ADD COLUMN errors JSONB;"
    "ALTER TABLE jobs_succeeded ADD COLUMN priority INTEGER NOT NULL"
    "  DEFAULT 0;"
    "ALTER TABLE jobs_failed ADD COLUMN priority INTEGER NOT NULL DEFAULT 0,"
    "  ADD COLUMN cancelled BOOLEAN NOT NULL DEFAULT false,"
    "  ADD COLUMN errors JSONB;"
    // The claim takes priority first; the index keeps serving it.
    "DROP INDEX jobs_claim_idx;"
    "CREATE INDEX jobs_claim_idx ON jobs (priority, available_at, id)"
    "  WHERE reserved_by IS NULL;"
    "CREATE INDEX jobs_failed_name_idx ON jobs_failed (name);"
    "CREATE TABLE bg_jobs_paused ("
    "  kind TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  paused_at TIMESTAMPTZ NOT NULL,"
    "  PRIMARY KEY (kind, name));",
    // version 6: who holds each node name
    "ALTER TABLE bg_jobs_nodes ADD COLUMN instance TEXT, ADD COLUMN host TEXT,"
    "  ADD COLUMN pid BIGINT, ADD COLUMN started_at TIMESTAMPTZ;",
    // version 7: the queues each node runs
    "CREATE TABLE bg_jobs_queues ("
    "  queue TEXT NOT NULL,"
    "  job_name TEXT NOT NULL,"
    "  node TEXT NOT NULL,"
    "  concurrency INTEGER NOT NULL,"
    "  announced_at TIMESTAMPTZ NOT NULL,"
    "  PRIMARY KEY (queue, job_name, node));",
    // version 8: settings of the tables that churn. `jobs` holds few live
    // rows and gains two dead ones per job run: it is vacuumed once a few
    // thousand are dead rather than a fifth of the table, without the cost
    // delay (it is small when kept so), and never truncated (the truncation
    // takes an exclusive lock that stops every claim while it scans back).
    // The pages it would give back are reused by the next inserts. The
    // history tables are pruned in batches: the same, without the threshold.
    "ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0,"
    "  autovacuum_vacuum_threshold = 5000,"
    "  autovacuum_vacuum_insert_scale_factor = 0,"
    "  autovacuum_vacuum_insert_threshold = 5000,"
    "  autovacuum_analyze_scale_factor = 0,"
    "  autovacuum_analyze_threshold = 5000,"
    "  autovacuum_vacuum_cost_delay = 0, vacuum_truncate = false);"
    "ALTER TABLE jobs_succeeded SET (vacuum_truncate = false);"
    "ALTER TABLE jobs_failed SET (vacuum_truncate = false);",
    // version 9: leases, such as the one of the node that runs the
    // store-wide upkeep
    "CREATE TABLE bg_jobs_leases ("
    "  name TEXT PRIMARY KEY,"
    "  holder TEXT NOT NULL,"
    "  expires_at TIMESTAMPTZ NOT NULL);",
    // version 10: operator actions taken outside any node, for the upkeep's
    // node to report as events
    "CREATE TABLE bg_jobs_actions ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  at TIMESTAMPTZ NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  queue TEXT NOT NULL,"
    "  job_id BIGINT NOT NULL,"
    "  job_name TEXT NOT NULL,"
    "  message TEXT NOT NULL);",
    // version 11: a job that succeeded keeps the errors of its failed
    // attempts (rows from before have none)
    "ALTER TABLE jobs_succeeded ADD COLUMN errors JSONB;",
    // version 12: concurrency keys and the limits on them. A job's keys
    // go with it into `jobs_failed`, so that a retried job is limited as
    // before. Limits: per queue, `kind` 'key' (one key's, `key` naming
    // it), 'default' (every other key's) or 'total' (the queue's across
    // nodes); `key` is '' but for 'key'.
    "ALTER TABLE jobs ADD COLUMN concurrency_key TEXT,"
    "  ADD COLUMN second_concurrency_key TEXT;"
    "ALTER TABLE jobs_failed ADD COLUMN concurrency_key TEXT,"
    "  ADD COLUMN second_concurrency_key TEXT;"
    "CREATE TABLE bg_jobs_limits ("
    "  queue TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  max_running INTEGER NOT NULL,"
    "  updated_at TIMESTAMPTZ NOT NULL,"
    "  PRIMARY KEY (queue, kind, key));",
    // version 13: sequences. A failed job an operator unblocked no longer
    // holds its key; the claim finds a key's oldest job by its index.
    "ALTER TABLE jobs_failed ADD COLUMN unblocked BOOLEAN NOT NULL"
    "  DEFAULT false;"
    "CREATE INDEX jobs_key_idx ON jobs (concurrency_key, id)"
    "  WHERE concurrency_key IS NOT NULL;"
    "CREATE INDEX jobs_failed_key_idx ON jobs_failed (concurrency_key)"
    "  WHERE concurrency_key IS NOT NULL;",
    // version 14: rate limits. `bg_jobs_rate_keys` keeps each key's
    // theoretical arrival time (`tat`, the generic cell rate algorithm)
    // and the end of a handler's back-pressure, in milliseconds since the
    // epoch by the server's clock; `bg_jobs_rate_of` the rate key and
    // cost of each job that has them (by id, which a job keeps wherever
    // it moves).
    "CREATE TABLE bg_jobs_rate_limits ("
    "  name TEXT PRIMARY KEY,"
    "  allowed BIGINT NOT NULL,"
    "  period_ms BIGINT NOT NULL,"
    "  burst BIGINT NOT NULL,"
    "  updated_at TIMESTAMPTZ NOT NULL);"
    "CREATE TABLE bg_jobs_rate_keys ("
    "  name TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  tat DOUBLE PRECISION NOT NULL DEFAULT 0,"
    "  blocked_until DOUBLE PRECISION NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (name, key));"
    "CREATE TABLE bg_jobs_rate_of ("
    "  job_id BIGINT PRIMARY KEY,"
    "  rate_key TEXT NOT NULL,"
    "  cost BIGINT NOT NULL);"
    // A job's expiry (ms since the epoch): no attempt starts at or after
    // it.
    "ALTER TABLE jobs ADD COLUMN expires_at BIGINT;"
    "CREATE INDEX jobs_expiry_idx ON jobs (expires_at)"
    "  WHERE expires_at IS NOT NULL;",
    // version 15: nothing. SQLite's version 15 adds its table of wake-ups,
    // which notifications make unneeded here; the stores keep one
    // numbering.
    "SELECT 1;",
    // version 16: a job's metadata, tags and trace context (NULL when it
    // has none), kept wherever it moves.
    "ALTER TABLE jobs ADD COLUMN attrs JSONB;"
    "ALTER TABLE jobs_succeeded ADD COLUMN attrs JSONB;"
    "ALTER TABLE jobs_failed ADD COLUMN attrs JSONB;",
    // version 17: workflows. A task is a job; one waiting for parents is
    // kept aside in `bg_jobs_blocked` (the columns of `jobs`) until they
    // finish. Triggers on the history tables take each step in the
    // statement that finished a task, whichever it was (a completion, a
    // cancel, the handler's own transaction): `bg_jobs_settle` records the
    // task's end and its workflow's counts, counts down its children's
    // unfinished parents, moves those with none left into `jobs` (and
    // notifies their names), ends the workflow, and cancels what a parent's
    // `cancel` policy dooms, down the graph. Rows it touches are locked in
    // id order (workflows, then children), so that completions of
    // different nodes cannot deadlock on them.
    "CREATE TABLE bg_jobs_workflows ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  total BIGINT NOT NULL,"
    "  succeeded BIGINT NOT NULL DEFAULT 0,"
    "  failed BIGINT NOT NULL DEFAULT 0,"
    "  cancelled BIGINT NOT NULL DEFAULT 0,"
    "  cancel_requested BOOLEAN NOT NULL DEFAULT false,"
    "  open BOOLEAN NOT NULL DEFAULT false,"
    "  created_at TIMESTAMPTZ NOT NULL,"
    "  finished_at TIMESTAMPTZ);"
    "CREATE INDEX bg_jobs_workflows_state_idx ON bg_jobs_workflows"
    "  (state, id);"
    "CREATE TABLE bg_jobs_tasks ("
    "  job_id BIGINT PRIMARY KEY,"
    "  workflow_id BIGINT NOT NULL,"
    "  task TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  pending INTEGER NOT NULL,"
    "  finished_at TIMESTAMPTZ,"
    "  role TEXT NOT NULL DEFAULT 'task',"
    "  UNIQUE (workflow_id, task));"
    "CREATE INDEX bg_jobs_tasks_open_idx ON bg_jobs_tasks (job_id)"
    "  WHERE state IN ('ready', 'blocked', 'held');"
    "CREATE TABLE bg_jobs_deps ("
    "  parent_id BIGINT NOT NULL,"
    "  child_id BIGINT NOT NULL,"
    "  policy TEXT NOT NULL,"
    "  PRIMARY KEY (parent_id, child_id));"
    "CREATE INDEX bg_jobs_deps_child_idx ON bg_jobs_deps (child_id);"
    "CREATE TABLE bg_jobs_blocked (LIKE jobs);"
    "ALTER TABLE bg_jobs_blocked ADD PRIMARY KEY (id);"
    "CREATE TABLE bg_jobs_outputs ("
    "  job_id BIGINT PRIMARY KEY,"
    "  output JSONB NOT NULL);"
    // The callbacks of the workflows `wfs` at `at`: the failure one once a
    // task failed for good, the finish one once it finished, the success
    // one once it succeeded (each moved into `jobs` once: only from
    // 'blocked'); those that can no longer be called, once it finished,
    // are cancelled.
    "CREATE FUNCTION bg_jobs_callbacks(wfs BIGINT[], at TIMESTAMPTZ)"
    "  RETURNS void LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$"
    " DECLARE ids BIGINT[]; names TEXT[];"
    " BEGIN"
    "  WITH r AS (UPDATE bg_jobs_tasks t SET state = 'ready'"
    "    FROM bg_jobs_workflows w WHERE t.workflow_id = ANY (wfs)"
    "    AND w.id = t.workflow_id AND t.role <> 'task'"
    "    AND t.state = 'blocked' AND ((t.role = 'on_failure' AND w.failed > 0)"
    "    OR (t.role = 'on_finish' AND w.state <> 'running')"
    "    OR (t.role = 'on_success' AND w.state = 'succeeded'))"
    "    RETURNING t.job_id)"
    "  SELECT array_agg(job_id) INTO ids FROM r;"
    "  IF ids IS NOT NULL THEN"
    "   WITH m AS (DELETE FROM bg_jobs_blocked WHERE id = ANY (ids)"
    "     RETURNING *),"
    "    i AS (INSERT INTO jobs (id, name, payload, attempts, created_at, available_at, reserved_at, reserved_by, last_error, priority, cancel_reason, errors, concurrency_key, second_concurrency_key, expires_at, attrs)"
    "     SELECT id, name, payload, attempts, created_at,"
    "     greatest(available_at, at), reserved_at, reserved_by, last_error,"
    "     priority, cancel_reason, errors, concurrency_key,"
    "     second_concurrency_key, expires_at, attrs FROM m RETURNING name)"
    "   SELECT array_agg(DISTINCT name) INTO names FROM i;"
    "   PERFORM pg_notify('bg_jobs', n) FROM unnest(names) AS n;"
    "  END IF;"
    "  WITH c AS (UPDATE bg_jobs_tasks t SET state = 'cancelled',"
    "    finished_at = at FROM bg_jobs_workflows w"
    "    WHERE t.workflow_id = ANY (wfs) AND w.id = t.workflow_id"
    "    AND t.role <> 'task' AND t.state = 'blocked'"
    "    AND w.state <> 'running' RETURNING t.job_id)"
    "  SELECT array_agg(job_id) INTO ids FROM c;"
    "  IF ids IS NOT NULL THEN"
    "   WITH m AS (DELETE FROM bg_jobs_blocked WHERE id = ANY (ids)"
    "     RETURNING *)"
    "   INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
    "    created_at, available_at, failed_at, priority, cancelled, errors,"
    "    concurrency_key, second_concurrency_key, attrs)"
    "    SELECT id, name, payload, attempts,"
    "    'not called: the workflow ended otherwise', created_at,"
    "    available_at, at, priority, true, errors, concurrency_key,"
    "    second_concurrency_key, attrs FROM m;"
    "  END IF;"
    " END $f$;"
    // Every statement is driven by arrays of ids (primary keys), so that
    // its cost follows the tasks it finishes, not the tables' sizes.
    "CREATE FUNCTION bg_jobs_settle(done BIGINT[], outcome TEXT,"
    "  at TIMESTAMPTZ) RETURNS void LANGUAGE plpgsql"
    "  SET search_path FROM CURRENT AS $f$"
    " DECLARE"
    "  frontier BIGINT[] := done;"
    "  kind TEXT := outcome;"
    "  wfs BIGINT[];"
    "  kids BIGINT[];"
    "  ready BIGINT[];"
    "  doomed BIGINT[];"
    "  names TEXT[];"
    " BEGIN"
    "  LOOP"
    "   SELECT array_agg(job_id ORDER BY job_id),"
    "    array_agg(DISTINCT workflow_id) INTO frontier, wfs"
    "    FROM bg_jobs_tasks WHERE job_id = ANY (frontier)"
    "    AND state NOT IN ('succeeded', 'failed', 'cancelled');"
    "   EXIT WHEN frontier IS NULL;"
    "   PERFORM 1 FROM bg_jobs_workflows WHERE id = ANY (wfs)"
    "    ORDER BY id FOR UPDATE;"
    "   UPDATE bg_jobs_tasks SET state = kind, finished_at = at"
    "    WHERE job_id = ANY (frontier);"
    "   UPDATE bg_jobs_workflows w SET"
    "    succeeded = w.succeeded"
    "     + CASE WHEN kind = 'succeeded' THEN c.n ELSE 0 END,"
    "    failed = w.failed + CASE WHEN kind = 'failed' THEN c.n ELSE 0 END,"
    "    cancelled = w.cancelled"
    "     + CASE WHEN kind = 'cancelled' THEN c.n ELSE 0 END"
    "    FROM (SELECT workflow_id, count(*) AS n FROM bg_jobs_tasks"
    "     WHERE job_id = ANY (frontier) AND role = 'task'"
    "     GROUP BY workflow_id) c"
    "    WHERE w.id = ANY (wfs) AND w.id = c.workflow_id;"
    "   SELECT array_agg(DISTINCT child_id) INTO kids FROM bg_jobs_deps"
    "    WHERE parent_id = ANY (frontier);"
    "   doomed := NULL;"
    "   IF kids IS NOT NULL THEN"
    "    PERFORM 1 FROM bg_jobs_tasks WHERE job_id = ANY (kids)"
    "     ORDER BY job_id FOR UPDATE;"
    // Aggregated: one statement may finish several parents of one child.
    "    UPDATE bg_jobs_tasks t SET pending = t.pending - c.n"
    "     FROM (SELECT child_id, count(*) AS n FROM bg_jobs_deps"
    "      WHERE parent_id = ANY (frontier)"
    "      AND (kind = 'succeeded' OR policy = 'ignore') GROUP BY child_id) c"
    "     WHERE t.job_id = ANY (kids) AND t.job_id = c.child_id"
    "     AND t.state IN ('blocked', 'held');"
    "    IF kind <> 'succeeded' THEN"
    "     UPDATE bg_jobs_tasks SET state = 'held' WHERE job_id = ANY (kids)"
    "      AND state = 'blocked' AND job_id = ANY (ARRAY(SELECT child_id"
    "      FROM bg_jobs_deps WHERE parent_id = ANY (frontier)"
    "      AND policy = 'hold'));"
    "     WITH d AS (UPDATE bg_jobs_tasks SET state = 'doomed'"
    "      WHERE job_id = ANY (kids) AND state IN ('blocked', 'held')"
    "      AND job_id = ANY (ARRAY(SELECT child_id FROM bg_jobs_deps"
    "      WHERE parent_id = ANY (frontier) AND policy = 'cancel'))"
    "      RETURNING job_id)"
    "     SELECT array_agg(job_id) INTO doomed FROM d;"
    "    END IF;"
    "    WITH r AS (UPDATE bg_jobs_tasks SET state = 'ready'"
    "      WHERE job_id = ANY (kids) AND pending = 0"
    "      AND state IN ('blocked', 'held') RETURNING job_id)"
    "    SELECT array_agg(job_id) INTO ready FROM r;"
    "    IF ready IS NOT NULL THEN"
    "     WITH m AS (DELETE FROM bg_jobs_blocked WHERE id = ANY (ready)"
    "       RETURNING *),"
    "      i AS (INSERT INTO jobs (id, name, payload, attempts, created_at, available_at, reserved_at, reserved_by, last_error, priority, cancel_reason, errors, concurrency_key, second_concurrency_key, expires_at, attrs)"
    "       SELECT id, name, payload, attempts, created_at,"
    "       greatest(available_at, at), reserved_at, reserved_by, last_error,"
    "       priority, cancel_reason, errors, concurrency_key,"
    "       second_concurrency_key, expires_at, attrs FROM m RETURNING name)"
    "     SELECT array_agg(DISTINCT name) INTO names FROM i;"
    "     PERFORM pg_notify('bg_jobs', n) FROM unnest(names) AS n;"
    "    END IF;"
    "   END IF;"
    "   UPDATE bg_jobs_workflows SET state = CASE WHEN cancel_requested"
    "    THEN 'cancelled' WHEN failed + cancelled = 0 THEN 'succeeded'"
    "    ELSE 'failed' END, finished_at = at"
    "    WHERE id = ANY (wfs) AND state = 'running' AND NOT open"
    "    AND succeeded + failed + cancelled = total;"
    "   PERFORM bg_jobs_callbacks(wfs, at);"
    // What this step doomed is cancelled, and is the next step's frontier.
    "   frontier := NULL;"
    "   IF doomed IS NOT NULL THEN"
    "    WITH m AS (DELETE FROM bg_jobs_blocked WHERE id = ANY (doomed)"
    "      RETURNING *),"
    "     i AS (INSERT INTO jobs_failed (id, name, payload, attempts,"
    "      exception, created_at, available_at, failed_at, priority,"
    "      cancelled, errors, concurrency_key, second_concurrency_key, attrs)"
    "      SELECT id, name, payload, attempts,"
    "      'cancelled: a task it depends on did not succeed', created_at,"
    "      available_at, at, priority, true, errors, concurrency_key,"
    "      second_concurrency_key, attrs FROM m RETURNING id)"
    "    SELECT array_agg(id) INTO frontier FROM i;"
    "   END IF;"
    "   kind := 'cancelled';"
    "  END LOOP;"
    " END $f$;"
    "CREATE FUNCTION bg_jobs_on_succeeded() RETURNS trigger"
    "  LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$"
    " DECLARE ids BIGINT[]; at TIMESTAMPTZ;"
    " BEGIN"
    "  SELECT array_agg(n.id), max(n.succeeded_at) INTO ids, at"
    "   FROM finished_rows n JOIN bg_jobs_tasks t ON t.job_id = n.id"
    "   AND t.state IN ('ready', 'blocked', 'held');"
    "  IF ids IS NOT NULL THEN"
    "   PERFORM bg_jobs_settle(ids, 'succeeded', at);"
    "  END IF;"
    "  RETURN NULL;"
    " END $f$;"
    "CREATE TRIGGER bg_jobs_task_succeeded AFTER INSERT ON jobs_succeeded"
    "  REFERENCING NEW TABLE AS finished_rows FOR EACH STATEMENT"
    "  EXECUTE FUNCTION bg_jobs_on_succeeded();"
    "CREATE FUNCTION bg_jobs_on_failed() RETURNS trigger"
    "  LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$"
    " DECLARE f BIGINT[]; c BIGINT[]; at TIMESTAMPTZ;"
    " BEGIN"
    "  SELECT array_agg(n.id) FILTER (WHERE NOT n.cancelled),"
    "   array_agg(n.id) FILTER (WHERE n.cancelled), max(n.failed_at)"
    "   INTO f, c, at"
    "   FROM finished_rows n JOIN bg_jobs_tasks t ON t.job_id = n.id"
    "   AND t.state IN ('ready', 'blocked', 'held');"
    "  IF f IS NOT NULL THEN PERFORM bg_jobs_settle(f, 'failed', at); END IF;"
    "  IF c IS NOT NULL THEN"
    "   PERFORM bg_jobs_settle(c, 'cancelled', at);"
    "  END IF;"
    "  RETURN NULL;"
    " END $f$;"
    "CREATE TRIGGER bg_jobs_task_failed AFTER INSERT ON jobs_failed"
    "  REFERENCING NEW TABLE AS finished_rows FOR EACH STATEMENT"
    "  EXECUTE FUNCTION bg_jobs_on_failed();"
    // A failed or cancelled task retried (back in `jobs`) runs again: its
    // workflow is running again.
    "CREATE FUNCTION bg_jobs_on_failed_removed() RETURNS trigger"
    "  LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$"
    " BEGIN"
    "  WITH r AS (UPDATE bg_jobs_tasks t SET state = 'ready',"
    "    finished_at = NULL FROM removed_rows o WHERE t.job_id = o.id"
    "    AND t.state IN ('failed', 'cancelled')"
    "    AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = o.id)"
    "    RETURNING t.workflow_id, o.cancelled, t.role)"
    "  UPDATE bg_jobs_workflows w SET failed = w.failed - c.f,"
    "   cancelled = w.cancelled - c.c, state = 'running', finished_at = NULL"
    "   FROM (SELECT workflow_id, count(*) FILTER (WHERE NOT cancelled) AS f,"
    "    count(*) FILTER (WHERE cancelled) AS c FROM r WHERE role = 'task'"
    "    GROUP BY workflow_id) c"
    "   WHERE w.id = c.workflow_id;"
    "  RETURN NULL;"
    " END $f$;"
    "CREATE TRIGGER bg_jobs_task_retried AFTER DELETE ON jobs_failed"
    "  REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT"
    "  EXECUTE FUNCTION bg_jobs_on_failed_removed();"
    // A job's output goes with its history row.
    "CREATE FUNCTION bg_jobs_on_succeeded_removed() RETURNS trigger"
    "  LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$"
    " BEGIN"
    "  DELETE FROM bg_jobs_outputs o USING removed_rows r"
    "   WHERE o.job_id = r.id;"
    "  RETURN NULL;"
    " END $f$;"
    "CREATE TRIGGER bg_jobs_output_pruned AFTER DELETE ON jobs_succeeded"
    "  REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT"
    "  EXECUTE FUNCTION bg_jobs_on_succeeded_removed();",
    // version 18: the progress a running handler last reported, one row per
    // job, kept while the job is: it goes with the job's history row (a
    // failed job retried keeps it).
    "CREATE TABLE bg_jobs_progress ("
    "  job_id BIGINT PRIMARY KEY,"
    "  attempt INTEGER NOT NULL,"
    "  fraction DOUBLE PRECISION NOT NULL,"
    "  text TEXT NOT NULL,"
    "  updated_at TIMESTAMPTZ NOT NULL);"
    "CREATE OR REPLACE FUNCTION bg_jobs_on_succeeded_removed() RETURNS trigger"
    "  LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$"
    " BEGIN"
    "  DELETE FROM bg_jobs_outputs o USING removed_rows r"
    "   WHERE o.job_id = r.id;"
    "  DELETE FROM bg_jobs_progress p USING removed_rows r"
    "   WHERE p.job_id = r.id;"
    "  RETURN NULL;"
    " END $f$;"
    "CREATE FUNCTION bg_jobs_on_failed_pruned() RETURNS trigger"
    "  LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$"
    " BEGIN"
    "  DELETE FROM bg_jobs_progress p USING removed_rows r"
    "   WHERE p.job_id = r.id"
    "   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = r.id);"
    "  RETURN NULL;"
    " END $f$;"
    "CREATE TRIGGER bg_jobs_progress_pruned AFTER DELETE ON jobs_failed"
    "  REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT"
    "  EXECUTE FUNCTION bg_jobs_on_failed_pruned();"
    // What the upkeep reports: each finish of a workflow once (the one it
    // took last is `reported_at`; those before this version count as
    // reported), and the workflows a held task keeps running.
    "ALTER TABLE bg_jobs_workflows ADD COLUMN reported_at TIMESTAMPTZ;"
    "UPDATE bg_jobs_workflows SET reported_at = finished_at;"
    "CREATE INDEX bg_jobs_workflows_unreported_idx ON bg_jobs_workflows"
    "  (finished_at) WHERE finished_at IS NOT NULL"
    "  AND (reported_at IS NULL OR reported_at <> finished_at);"
    "CREATE INDEX bg_jobs_tasks_held_idx ON bg_jobs_tasks (workflow_id)"
    "  WHERE state = 'held';",
    // version 19: schedules kept as data (declared in code, or added at run
    // time); an occurrence records the catch-up it belongs to.
    "CREATE TABLE bg_jobs_schedules ("
    "  name TEXT PRIMARY KEY,"
    "  definition TEXT NOT NULL,"
    "  declared BOOLEAN NOT NULL,"
    "  seen_at TIMESTAMPTZ NOT NULL,"
    "  updated_at TIMESTAMPTZ NOT NULL);"
    "ALTER TABLE bg_jobs_schedule ADD COLUMN catch_up_left INTEGER NOT NULL"
    "  DEFAULT 0, ADD COLUMN skip_until TIMESTAMPTZ;",
    // version 20: the index of keys holds only unreserved jobs, so that a
    // claim (which reserves) does not add to it. A sequence looks in it for
    // an older waiting job of a key; a key with a reserved job is passed
    // over by the claim's count of held slots.
    "DROP INDEX jobs_key_idx;"
    "CREATE INDEX jobs_key_idx ON jobs (concurrency_key, id)"
    "  WHERE concurrency_key IS NOT NULL AND reserved_by IS NULL;",
    // version 21: a workflow that finishes and a task that becomes held are
    // announced (`workflows_changed`, on commit), so that the node that
    // holds the upkeep reports them at once instead of polling for them.
    "CREATE FUNCTION bg_jobs_announce_workflows() RETURNS trigger"
    "  LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$"
    " BEGIN"
    "  PERFORM pg_notify('bg_jobs', chr(1) || 'workflows');"
    "  RETURN NULL;"
    " END $f$;"
    "CREATE TRIGGER bg_jobs_workflow_finished AFTER UPDATE OF finished_at"
    "  ON bg_jobs_workflows FOR EACH ROW WHEN (NEW.finished_at IS NOT NULL"
    "  AND NEW.finished_at IS DISTINCT FROM OLD.finished_at)"
    "  EXECUTE FUNCTION bg_jobs_announce_workflows();"
    "CREATE TRIGGER bg_jobs_task_held AFTER UPDATE OF state ON bg_jobs_tasks"
    "  FOR EACH ROW WHEN (NEW.state = 'held' AND OLD.state <> 'held')"
    "  EXECUTE FUNCTION bg_jobs_announce_workflows();",
    // version 22: SQLite's job ids without AUTOINCREMENT; nothing changes
    // here (a sequence gives ids).
    "SELECT 1;",
    // version 23: SQLite's index of keys narrowed to sequenced queues;
    // nothing changes here (a claim's update is not HOT, so the index of
    // keys, which holds only unreserved jobs, costs a claim nothing).
    "SELECT 1;",
};

constexpr int known_version = std::size(migrations);
static_assert(known_version == db_adapter::schema_version_current);

} // namespace

caf::expected<int> postgres_adapter::schema_version() {
  return impl_->in_transaction("reading the schema version", [](pqxx::work&
                                                                    tx) {
    auto r = tx.exec("SELECT to_regclass('bg_jobs_migrations') IS NOT NULL");
    if (!r[0][0].as<bool>())
      return 0;
    return tx
        .exec("SELECT coalesce(max(version), 0) FROM bg_jobs_migrations")[0][0]
        .as<int>();
  });
}

caf::expected<void> postgres_adapter::migrate_up() {
  auto r = impl_->in_transaction("migrating up", [&](pqxx::work& tx) {
    // One migration at a time, even with several nodes starting at once.
    tx.exec("SELECT pg_advisory_xact_lock(7220157)");
    if (!impl_->options.schema.empty())
      tx.exec("CREATE SCHEMA IF NOT EXISTS " + impl_->options.schema);
    tx.exec("CREATE TABLE IF NOT EXISTS bg_jobs_migrations ("
            " version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())");
    auto current =
        tx.exec(
              "SELECT coalesce(max(version), 0) FROM bg_jobs_migrations")[0][0]
            .as<int>();
    for (int v = current + 1; v <= known_version; ++v) {
      // Notifications from its functions go to this store's channel.
      tx.exec(impl_->on_channel(migrations[v - 1]));
      tx.exec_params("INSERT INTO bg_jobs_migrations (version) VALUES ($1)", v);
    }
    return current;
  });
  if (!r)
    return std::move(r.error());
  if (*r > known_version)
    return make_error(errc::schema_too_new,
                      "schema version " + std::to_string(*r) +
                          " is newer than this bg_jobs understands");
  try {
    impl_->prepare_all();
  } catch (...) {
    // Already prepared on this connection.
  }
  return caf::unit;
}

caf::expected<void> postgres_adapter::migrate_down() {
  auto r = impl_->in_transaction("migrating down", [](pqxx::work& tx) {
    tx.exec("SELECT pg_advisory_xact_lock(7220157)");
    tx.exec("DROP TABLE IF EXISTS bg_jobs_schedules, bg_jobs_progress,"
            " bg_jobs_outputs,"
            " bg_jobs_blocked, bg_jobs_deps, bg_jobs_tasks, bg_jobs_workflows"
            " CASCADE");
    tx.exec("DROP FUNCTION IF EXISTS bg_jobs_on_succeeded,"
            " bg_jobs_on_failed, bg_jobs_on_failed_removed,"
            " bg_jobs_on_succeeded_removed, bg_jobs_on_failed_pruned,"
            " bg_jobs_announce_workflows CASCADE");
    tx.exec("DROP FUNCTION IF EXISTS bg_jobs_settle, bg_jobs_callbacks");
    tx.exec("DROP TABLE IF EXISTS bg_jobs_rate_of, bg_jobs_rate_keys,"
            " bg_jobs_rate_limits, bg_jobs_limits, bg_jobs_actions,"
            " bg_jobs_leases,"
            " bg_jobs_queues,"
            " bg_jobs_paused,"
            " bg_jobs_unique,"
            " bg_jobs_nodes,"
            " bg_jobs_schedule, jobs,"
            " jobs_succeeded,"
            " jobs_failed, bg_jobs_migrations");
    return 0;
  });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

} // namespace bg_jobs
