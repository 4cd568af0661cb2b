#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"

#include "bg_jobs/adapters/detail/prepared_job.hpp"
#include "bg_jobs/adapters/postgres/detail/postgres_internal.hpp"

#include <algorithm>
#include <map>
#include <set>

#include <poll.h>

#include <libpq-fe.h>
#include <pqxx/pqxx>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

using namespace detail::postgres;

// -- SQL ---------------------------------------------------------------------

namespace {

/// A result that may itself be an error, as one.
template <class T>
caf::expected<T> flatten(caf::expected<caf::expected<T>> r) {
  if (!r)
    return std::move(r.error());
  return std::move(*r);
}

} // namespace

namespace {

// clang-format off
const char pg_enqueue_in[] =
    "INSERT INTO jobs (name, payload, attempts, created_at, available_at,"
    " priority, concurrency_key, second_concurrency_key, attrs) VALUES ($1, $2, 0, "
    BG_JOBS_TS("$3") ", " BG_JOBS_TS("$4") ", $5, $6, $7, $8) RETURNING id";

const char pg_node_holder[] =
    "SELECT coalesce(instance, ''), coalesce(host, ''), coalesce(pid, 0), "
    BG_JOBS_MS("coalesce(started_at, heartbeat_at)") ", "
    BG_JOBS_MS("heartbeat_at") " FROM bg_jobs_nodes WHERE node = $1";

const char pg_node_claim[] =
    "INSERT INTO bg_jobs_nodes (node, heartbeat_at, instance, host, pid,"
    " started_at) VALUES ($1, " BG_JOBS_TS("$2") ", $3, $4, $5, "
    BG_JOBS_TS("$6") ") ON CONFLICT (node) DO UPDATE SET"
    " heartbeat_at = excluded.heartbeat_at, instance = excluded.instance,"
    " host = excluded.host, pid = excluded.pid,"
    " started_at = excluded.started_at";
// clang-format on

// clang-format off
const statement_def statements[] = {
  {"bgj_enqueue",
   "WITH j AS (INSERT INTO jobs (name, payload, attempts, created_at,"
   " available_at, priority, concurrency_key, second_concurrency_key, attrs)"
   " VALUES ($1, $2, 0, " BG_JOBS_TS("$3") ", " BG_JOBS_TS("$4") ", $5, $6,"
   " $7, $8) RETURNING id)"
   " SELECT id, pg_notify('bg_jobs', $1) FROM j"},
  {"bgj_enqueue_many",
   "WITH r AS (SELECT * FROM json_to_recordset($1::json)"
   "   AS x(name text, payload text, at bigint, p integer, k1 text,"
   "        k2 text, a jsonb)),"
   " j AS (INSERT INTO jobs (name, payload, attempts, created_at,"
   "   available_at, priority, concurrency_key, second_concurrency_key, attrs)"
   "   SELECT name, payload, 0, " BG_JOBS_TS("$2")
   ", " BG_JOBS_TS("at") ", p, k1, k2, a FROM r RETURNING id),"
   " n AS (SELECT pg_notify('bg_jobs', name) FROM (SELECT DISTINCT name"
   "   FROM r) d)"
   " SELECT id FROM j, (SELECT count(*) FROM n) c ORDER BY id"},
  {"bgj_reserve", BG_JOBS_PG_CLAIM("")},
  // The earliest time past $3 at which an unreserved job of the names $2
  // becomes available, less $1 (now): one probe of the claim index per
  // priority (0 to 9), each reading the first entry past $3.
  {"bgj_next_due",
   "SELECT " BG_JOBS_MS("min(a)") " - $1::bigint"
   " FROM generate_series(0, 9) AS p(p),"
   " LATERAL (SELECT available_at AS a FROM jobs"
   "   WHERE reserved_by IS NULL AND priority = p.p"
   "   AND available_at > " BG_JOBS_TS("$3")
   "   AND name = ANY (ARRAY(SELECT json_array_elements_text($2::json)))"
   "   ORDER BY available_at LIMIT 1) x"},
  // The claim of a limited queue, in its turn (BG_JOBS_PG_LIMITED_CLAIM).
  {"bgj_limited_claim", BG_JOBS_PG_LIMITED_CLAIM_UNRATED},
  {"bgj_rated_claim", BG_JOBS_PG_LIMITED_CLAIM_RATED},
  {"bgj_expiry_note", "UPDATE jobs SET expires_at = $2 WHERE id = $1"},
  {"bgj_rate_note",
   "INSERT INTO bg_jobs_rate_of (job_id, rate_key, cost) VALUES ($1, $2, $3)"
   " ON CONFLICT (job_id) DO NOTHING"},
  // A handler's back-pressure: blocks the key of job $2 (if it has none,
  // the key '') of the rate limit $1 for $3 ms.
  {"bgj_rate_block_job",
   "INSERT INTO bg_jobs_rate_keys AS k (name, key, blocked_until)"
   " SELECT $1, coalesce((SELECT rate_key FROM bg_jobs_rate_of"
   "   WHERE job_id = $2), ''), " BG_JOBS_PG_NOW_MS " + $3"
   " ON CONFLICT (name, key) DO UPDATE"
   " SET blocked_until = greatest(k.blocked_until, excluded.blocked_until)"},
  // $1 names (JSON), $2 now, $3 how many keys.
  {"bgj_keys_in_use",
   "WITH k AS (SELECT concurrency_key AS k, reserved_by IS NOT NULL AS r,"
   "   reserved_by IS NULL AND available_at <= " BG_JOBS_TS("$2") " AS w"
   "   FROM jobs WHERE concurrency_key IS NOT NULL"
   "   AND name = ANY (ARRAY(SELECT json_array_elements_text($1::json)))"
   " UNION ALL SELECT second_concurrency_key, reserved_by IS NOT NULL,"
   "   reserved_by IS NULL AND available_at <= " BG_JOBS_TS("$2")
   "   FROM jobs WHERE second_concurrency_key IS NOT NULL"
   "   AND name = ANY (ARRAY(SELECT json_array_elements_text($1::json))))"
   " SELECT k, count(*) FILTER (WHERE r), count(*) FILTER (WHERE w) FROM k"
   " GROUP BY k HAVING count(*) FILTER (WHERE r OR w) > 0"
   " ORDER BY 3 DESC, 2 DESC, k LIMIT $3"},
  // $1 queue, $2 names (JSON).
  {"bgj_blocked_keys",
   "SELECT f.concurrency_key, min(f.id), (SELECT count(*) FROM jobs j"
   "   WHERE j.concurrency_key = f.concurrency_key AND j.reserved_by IS NULL"
   "   AND j.name = ANY (ARRAY(SELECT json_array_elements_text($2::json))))"
   " FROM jobs_failed f WHERE f.concurrency_key IS NOT NULL"
   " AND NOT f.cancelled AND NOT f.unblocked"
   " AND f.name = ANY (ARRAY(SELECT json_array_elements_text($2::json)))"
   " AND EXISTS (SELECT 1 FROM bg_jobs_limits WHERE queue = $1"
   "   AND kind = 'sequence')"
   " GROUP BY f.concurrency_key ORDER BY f.concurrency_key"},
  // $1 names (JSON), $2 key.
  {"bgj_unblock_key",
   "UPDATE jobs_failed SET unblocked = true WHERE concurrency_key = $2"
   " AND NOT cancelled AND NOT unblocked"
   " AND name = ANY (ARRAY(SELECT json_array_elements_text($1::json)))"},
  {"bgj_limits_of",
   "SELECT kind, key, max_running FROM bg_jobs_limits WHERE queue = $1"
   " ORDER BY kind = 'key', key, kind"},
  {"bgj_limits_clear", "DELETE FROM bg_jobs_limits WHERE queue = $1"},
  {"bgj_limit_delete",
   "DELETE FROM bg_jobs_limits WHERE queue = $1 AND kind = $2 AND key = $3"},
  {"bgj_limit_put",
   "INSERT INTO bg_jobs_limits (queue, kind, key, max_running, updated_at)"
   " VALUES ($1, $2, $3, $4, " BG_JOBS_TS("$5") ")"
   " ON CONFLICT (queue, kind, key) DO UPDATE"
   " SET max_running = excluded.max_running,"
   "   updated_at = excluded.updated_at"},
  // The same claim, its index scan starting after the last job this
  // connection claimed ($6..$8): see postgres_adapter::impl::floor.
  {"bgj_reserve_after", BG_JOBS_PG_CLAIM(BG_JOBS_PG_AFTER("$6", "$7", "$8"))},
  // Successes of one owner and the next claim in one statement (one round
  // trip, one commit). The claim cannot take the rows being completed:
  // they are reserved. Rows flagged true are the completed ids.
  {"bgj_complete_reserve",
   BG_JOBS_PG_COMPLETE_CLAIM("", BG_JOBS_PG_KEEP_SUCCEEDED("$1"))},
  {"bgj_complete_reserve_after",
   BG_JOBS_PG_COMPLETE_CLAIM(BG_JOBS_PG_AFTER("$8", "$9", "$10"),
                             BG_JOBS_PG_KEEP_SUCCEEDED("$1"))},
  {"bgj_release_by",
   "UPDATE jobs SET reserved_at = NULL, reserved_by = NULL"
   " WHERE reserved_by = $1 RETURNING " BG_JOBS_PG_JOB_COLUMNS},
  {"bgj_release_unheld",
   "UPDATE jobs SET reserved_at = NULL, reserved_by = NULL,"
   " attempts = greatest(attempts - 1, 0)"
   " WHERE reserved_by = $1"
   "   AND NOT (id = ANY (ARRAY(SELECT json_array_elements_text($2::json)"
   "                            ::bigint)))"
   " RETURNING " BG_JOBS_PG_JOB_COLUMNS},
  {"bgj_release_node",
   "UPDATE jobs SET reserved_at = NULL, reserved_by = NULL"
   " WHERE reserved_by IS NOT NULL"
   "   AND substr(reserved_by, 1, length($1)) = $1"
   " RETURNING " BG_JOBS_PG_JOB_COLUMNS},
  // Completions apply while the reservation is the caller's and no cancel
  // was asked for; a job asked to cancel takes bgj_cancel_reserved.
  // Rows: the ids completed.
  {"bgj_succeed", BG_JOBS_PG_SUCCEED(BG_JOBS_PG_KEEP_SUCCEEDED("$2"))},
  {"bgj_succeed_many",
   BG_JOBS_PG_SUCCEED_MANY(BG_JOBS_PG_KEEP_SUCCEEDED("$2"))},
  {"bgj_fail",
   "WITH m AS (DELETE FROM jobs WHERE id = $1"
   "   AND reserved_by IS NOT DISTINCT FROM $3 AND cancel_reason IS NULL"
   "   RETURNING *)"
   " INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
   "   created_at, available_at, failed_at, priority, errors,"
   "   concurrency_key, second_concurrency_key, attrs)"
   " SELECT id, name, payload, attempts, $4, created_at, available_at, "
   BG_JOBS_TS("$2") ", priority, " BG_JOBS_PG_APPEND_ERROR("$2", "$4")
   ", concurrency_key, second_concurrency_key, attrs FROM m"},
  {"bgj_cancel_reserved",
   "WITH m AS (DELETE FROM jobs WHERE id = $1"
   "   AND reserved_by IS NOT DISTINCT FROM $3 RETURNING *)"
   " INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
   "   created_at, available_at, failed_at, priority, cancelled, errors,"
   "   concurrency_key, second_concurrency_key, attrs)"
   " SELECT id, name, payload, attempts, coalesce(cancel_reason, $4),"
   " created_at, available_at, " BG_JOBS_TS("$2") ", priority, true, errors,"
   " concurrency_key, second_concurrency_key, attrs FROM m"},
  // The fallback of an outcome that did not apply: the job is recorded as
  // cancelled only if a cancel was asked for. (A job that is reserved by
  // the same owner again — rescued, then claimed anew, possibly by the very
  // statement that carried the outcome — is another attempt, not a cancel.)
  {"bgj_cancel_asked",
   "WITH m AS (DELETE FROM jobs WHERE id = $1"
   "   AND reserved_by IS NOT DISTINCT FROM $3 AND cancel_reason IS NOT NULL"
   "   RETURNING *)"
   " INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
   "   created_at, available_at, failed_at, priority, cancelled, errors,"
   "   concurrency_key, second_concurrency_key, attrs)"
   " SELECT id, name, payload, attempts, cancel_reason,"
   " created_at, available_at, " BG_JOBS_TS("$2") ", priority, true, errors,"
   " concurrency_key, second_concurrency_key, attrs FROM m"},
  {"bgj_retry",
   "UPDATE jobs SET reserved_at = NULL, reserved_by = NULL,"
   " available_at = " BG_JOBS_TS("$2") ", last_error = $4,"
   " errors = " BG_JOBS_PG_APPEND_ERROR("$5", "$4")
   " WHERE id = $1 AND reserved_by IS NOT DISTINCT FROM $3"
   "   AND cancel_reason IS NULL"},
  {"bgj_snooze",
   "UPDATE jobs SET reserved_at = NULL, reserved_by = NULL,"
   " available_at = " BG_JOBS_TS("$2") ", attempts = greatest(attempts - 1, 0)"
   " WHERE id = $1 AND reserved_by IS NOT DISTINCT FROM $3"
   "   AND cancel_reason IS NULL"},
  {"bgj_schedule_lock",
   "SELECT pg_advisory_xact_lock(7220158, hashtext($1))"},
  {"bgj_schedule_latest",
   "SELECT " BG_JOBS_MS("scheduled_at") ", job_id FROM bg_jobs_schedule"
   " WHERE name = $1 ORDER BY scheduled_at DESC LIMIT 1"},
  {"bgj_schedule_insert",
   "WITH j AS (INSERT INTO jobs (name, payload, attempts, created_at,"
   "   available_at, priority, concurrency_key, second_concurrency_key, attrs)"
   "   VALUES ($1, $2, 0, " BG_JOBS_TS("$3") ", " BG_JOBS_TS("$4") ", $5,"
   "   $6, $7, $8) RETURNING id),"
   " s AS (INSERT INTO bg_jobs_schedule (name, scheduled_at, job_id,"
   "   catch_up_left, skip_until)"
   "   SELECT $9, " BG_JOBS_TS("$4") ", id, $10, " BG_JOBS_TS("$11")
   "   FROM j)"
   " SELECT id, pg_notify('bg_jobs', $1) FROM j"},
  {"bgj_schedule_prune",
   "DELETE FROM bg_jobs_schedule WHERE name = $1 AND scheduled_at <"
   " (SELECT scheduled_at FROM bg_jobs_schedule WHERE name = $1"
   "  ORDER BY scheduled_at DESC LIMIT 1 OFFSET 100)"},
  {"bgj_schedule_state",
   "SELECT " BG_JOBS_MS("s.scheduled_at") ", s.job_id,"
   " j.id IS NOT NULL,"
   " " BG_JOBS_MS("coalesce((SELECT succeeded_at FROM jobs_succeeded"
   "   WHERE id = s.job_id), (SELECT failed_at FROM jobs_failed"
   "   WHERE id = s.job_id))") ","
   " coalesce(j.reserved_by IS NOT NULL, false), s.catch_up_left,"
   " " BG_JOBS_MS("s.skip_until") ", " BG_JOBS_MS("j.created_at")
   " FROM bg_jobs_schedule s LEFT JOIN jobs j ON j.id = s.job_id"
   " WHERE s.name = $1 ORDER BY s.scheduled_at DESC LIMIT 1"},
  {"bgj_heartbeat",
   "INSERT INTO bg_jobs_nodes (node, heartbeat_at) VALUES ($1, "
   BG_JOBS_TS("$2") ") ON CONFLICT (node) DO UPDATE"
   " SET heartbeat_at = excluded.heartbeat_at"},
  {"bgj_hold_lease",
   "INSERT INTO bg_jobs_leases (name, holder, expires_at) VALUES ($1, $2, "
   BG_JOBS_TS("$4") ") ON CONFLICT (name) DO UPDATE"
   " SET holder = excluded.holder, expires_at = excluded.expires_at"
   " WHERE bg_jobs_leases.holder = excluded.holder"
   "    OR bg_jobs_leases.expires_at < " BG_JOBS_TS("$3")
   " RETURNING holder"},
  {"bgj_release_lease",
   "DELETE FROM bg_jobs_leases WHERE name = $1 AND holder = $2"},
  {"bgj_rescue",
   "UPDATE jobs SET last_error = 'rescued from ' || reserved_by"
   "   || ' (no heartbeat)', reserved_at = NULL, reserved_by = NULL"
   " WHERE reserved_by IS NOT NULL AND reserved_at < " BG_JOBS_TS("$1")
   "   AND NOT EXISTS (SELECT 1 FROM bg_jobs_nodes n"
   "     WHERE n.node = split_part(jobs.reserved_by, '/', 1)"
   "       AND n.heartbeat_at >= " BG_JOBS_TS("$1") ")"
   " RETURNING " BG_JOBS_PG_JOB_COLUMNS},
  // A workflow's tasks are pruned only with their workflow, once it
  // finished (bgj_prune_workflows).
  {"bgj_prune_succeeded_age",
   "DELETE FROM jobs_succeeded WHERE id = ANY (ARRAY(SELECT id FROM jobs_succeeded s"
   " WHERE succeeded_at < " BG_JOBS_TS("$1")
   " AND NOT EXISTS (SELECT 1 FROM bg_jobs_tasks t WHERE t.job_id = s.id)"
   " ORDER BY succeeded_at LIMIT $2))"},
  {"bgj_prune_failed_age",
   "DELETE FROM jobs_failed WHERE id = ANY (ARRAY(SELECT id FROM jobs_failed f"
   " WHERE failed_at < " BG_JOBS_TS("$1")
   " AND NOT EXISTS (SELECT 1 FROM bg_jobs_tasks t WHERE t.job_id = f.id)"
   " ORDER BY failed_at LIMIT $2))"},
  // Finished workflows past the age of their kind of history ($1
  // succeeded, $2 failed or cancelled), at most $3, each as a unit: its
  // tasks' history rows, its tasks, their dependencies and itself.
  {"bgj_prune_workflows",
   "WITH w AS (DELETE FROM bg_jobs_workflows WHERE id = ANY (ARRAY(SELECT id"
   "   FROM bg_jobs_workflows WHERE state <> 'running' AND finished_at <"
   "   CASE WHEN state = 'succeeded' THEN " BG_JOBS_TS("$1") " ELSE "
   BG_JOBS_TS("$2") " END ORDER BY finished_at LIMIT $3)) RETURNING id),"
   " t AS (DELETE FROM bg_jobs_tasks WHERE workflow_id IN (SELECT id FROM w)"
   "   RETURNING job_id),"
   " d AS (DELETE FROM bg_jobs_deps WHERE child_id IN (SELECT job_id FROM t)),"
   " s AS (DELETE FROM jobs_succeeded WHERE id IN (SELECT job_id FROM t)"
   "   RETURNING id),"
   " f AS (DELETE FROM jobs_failed WHERE id IN (SELECT job_id FROM t)"
   "   RETURNING id)"
   " SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM f)"},
  // Count-based pruning: the newest rows beyond the count kept ($1) end
  // at a cutoff row; batches then delete from the oldest end up to it.
  {"bgj_prune_succeeded_cutoff",
   "SELECT " BG_JOBS_MS("succeeded_at") ", id FROM jobs_succeeded"
   " ORDER BY succeeded_at DESC, id DESC OFFSET $1 LIMIT 1"},
  {"bgj_prune_succeeded_upto",
   "DELETE FROM jobs_succeeded WHERE id = ANY (ARRAY(SELECT id"
   " FROM jobs_succeeded s WHERE (succeeded_at, id) <= (" BG_JOBS_TS("$1")
   ", $2::bigint) AND NOT EXISTS (SELECT 1 FROM bg_jobs_tasks t"
   " WHERE t.job_id = s.id) ORDER BY succeeded_at LIMIT $3))"},
  {"bgj_prune_failed_cutoff",
   "SELECT " BG_JOBS_MS("failed_at") ", id FROM jobs_failed"
   " ORDER BY failed_at DESC, id DESC OFFSET $1 LIMIT 1"},
  {"bgj_prune_failed_upto",
   "DELETE FROM jobs_failed WHERE id = ANY (ARRAY(SELECT id"
   " FROM jobs_failed f WHERE (failed_at, id) <= (" BG_JOBS_TS("$1")
   ", $2::bigint) AND NOT EXISTS (SELECT 1 FROM bg_jobs_tasks t"
   " WHERE t.job_id = f.id) ORDER BY failed_at LIMIT $3))"},
  {"bgj_running_by",
   "SELECT " BG_JOBS_PG_JOB_COLUMNS " FROM jobs"
   " WHERE reserved_by = $1 ORDER BY id"},
  // By primary key whatever the statistics say (the ids are an InitPlan,
  // and the test of `reserved_by` does not match an index's), so that it
  // never walks the index of reservations.
  {"bgj_cancels_asked",
   "SELECT id, cancel_reason FROM jobs"
   " WHERE id = ANY (ARRAY(SELECT unnest($2::bigint[])))"
   "   AND reserved_by IS NOT DISTINCT FROM $1 AND cancel_reason IS NOT NULL"
   " ORDER BY id"},
  {"bgj_stats_live",
   "SELECT"
   " (SELECT count(*) FROM jobs"
   "   WHERE reserved_by IS NULL AND available_at <= " BG_JOBS_TS("$1") "),"
   " (SELECT count(*) FROM jobs"
   "   WHERE reserved_by IS NULL AND available_at > " BG_JOBS_TS("$1") "),"
   " (SELECT count(*) FROM jobs WHERE reserved_by IS NOT NULL)"},
};

// The statements that record successes, as prepared instead of those
// above when succeeded history is not kept.
const statement_def without_succeeded_history[] = {
  {"bgj_complete_reserve",
   BG_JOBS_PG_COMPLETE_CLAIM("", BG_JOBS_PG_DROP_SUCCEEDED("$1"))},
  {"bgj_complete_reserve_after",
   BG_JOBS_PG_COMPLETE_CLAIM(BG_JOBS_PG_AFTER("$8", "$9", "$10"),
                             BG_JOBS_PG_DROP_SUCCEEDED("$1"))},
  {"bgj_succeed",
   BG_JOBS_PG_SUCCEED(BG_JOBS_PG_DROP_SUCCEEDED_WITH_OUTPUT("$2"))},
  {"bgj_succeed_many",
   BG_JOBS_PG_SUCCEED_MANY(BG_JOBS_PG_DROP_SUCCEEDED("$2"))},
};
// clang-format on

} // namespace

void postgres_adapter::impl::prepare_all() {
  for (auto& s : statements)
    conn->prepare(s.name, on_channel(statement_sql(s.name)));
}

const char* postgres_adapter::impl::statement_sql(std::string_view name) const {
  if (!options.succeeded_history)
    for (auto& s : without_succeeded_history)
      if (name == s.name)
        return s.sql;
  for (auto& s : statements)
    if (name == s.name)
      return s.sql;
  return nullptr;
}

// -- connection
// ----------------------------------------------------------------

postgres_adapter::postgres_adapter(std::unique_ptr<impl> p)
    : impl_(std::move(p)) {}

postgres_adapter::~postgres_adapter() {
  impl_->receiver.reset();
}

caf::expected<std::unique_ptr<postgres_adapter>>
postgres_adapter::open(postgres_options options) {
  return open_with(std::move(options), nullptr);
}

caf::expected<std::unique_ptr<postgres_adapter>>
postgres_adapter::open_with(postgres_options options,
                            std::shared_ptr<void> shared_time) {
  auto url = prepare_url(options.url);
  if (!url)
    return std::move(url.error());
  if (auto err = check_identifier("schema", options.schema, 50))
    return err;
  auto p = std::make_unique<impl>();
  p->options = std::move(options);
  if (!p->options.schema.empty())
    p->channel = std::string{notify_channel} + "." + p->options.schema;
  if (!p->options.clock)
    p->options.clock = clock::system();
  if (p->options.clock == clock::system())
    p->server_time = shared_time
                         ? std::static_pointer_cast<server_clock>(shared_time)
                         : std::make_shared<server_clock>();
  try {
    p->conn = std::make_unique<pqxx::connection>(*url);
    {
      pqxx::nontransaction tx{*p->conn};
      // A name given in the URL or by PGAPPNAME is kept.
      if (tx.exec("SHOW application_name")[0][0].as<std::string>().empty())
        tx.exec("SET application_name = " +
                tx.quote(p->options.application_name));
      if (!p->options.schema.empty())
        tx.exec("SET search_path = " + p->options.schema);
    }
    if (p->server_time)
      p->server_time->measure(*p->conn);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    while (!msg.empty() && msg.back() == '\n')
      msg.pop_back();
    return make_error(errc::database_unavailable,
                      "cannot connect to PostgreSQL: " + msg);
  }
  std::unique_ptr<postgres_adapter> self{new postgres_adapter(std::move(p))};
  auto version = self->schema_version();
  if (!version)
    return std::move(version.error());
  if (*version > db_adapter::schema_version_current)
    return make_error(errc::schema_too_new,
                      "the database has bg_jobs schema version " +
                          std::to_string(*version) +
                          "; this bg_jobs understands up to " +
                          std::to_string(db_adapter::schema_version_current));
  try {
    self->impl_->prepare_all();
  } catch (...) {
    return failure("preparing statements");
  }
  return self;
}

adapter_factory postgres_adapter::factory(postgres_options options) {
  auto shared_time = std::make_shared<server_clock>();
  return [options, shared_time]() -> caf::expected<std::unique_ptr<db_adapter>> {
    auto db = open_with(options, shared_time);
    if (!db)
      return std::move(db.error());
    return std::unique_ptr<db_adapter>{std::move(*db)};
  };
}

capabilities postgres_adapter::caps() const {
  capabilities c;
  c.supports_listen_notify = true;
  return c;
}

int postgres_adapter::backend_pid() const {
  return impl_->conn->backendpid();
}

// -- writes
// ----------------------------------------------------------------------

caf::expected<job> postgres_adapter::enqueue_job(const job_request& request) {
  auto now = from_unix_ms(impl_->now_ms()); // the clock claims compare with
  auto prepared = detail::prepare_job(request, now);
  if (!prepared)
    return std::move(prepared.error());
  auto& [j, text, attrs] = *prepared;
  if (request.unique() || has_extras(request))
    return impl_->in_transaction(
        "enqueueing a unique job", [&](pqxx::work& tx) {
          job stored;
          if (request.unique()) {
            stored = insert_unique(tx, std::move(j), text, request, now,
                                   impl_->channel);
          } else {
            stored = std::move(j);
            stored.id = tx.exec_prepared("bgj_enqueue", stored.name, text,
                                         to_unix_ms(now),
                                         to_unix_ms(stored.available_at),
                                         stored.priority,
                                         key_or_null(stored.concurrency_key),
                                         key_or_null(
                                             stored.second_concurrency_key),
                                         key_or_null(attrs))[0][0]
                                .as<int64_t>();
          }
          if (!stored.conflict)
            note_extras(tx, stored.id, request, now);
          return stored;
        });
  auto id =
      impl_->in_statement("enqueueing a job", [&](pqxx::transaction_base& tx) {
        return tx
            .exec_prepared("bgj_enqueue", j.name, text, to_unix_ms(now),
                           to_unix_ms(j.available_at), j.priority,
                           key_or_null(j.concurrency_key),
                           key_or_null(j.second_concurrency_key),
                           key_or_null(attrs))[0][0]
            .as<int64_t>();
      });
  if (!id)
    return std::move(id.error());
  j.id = *id;
  return j;
}

caf::expected<job> postgres_adapter::enqueue_in(pqxx::transaction_base& tx,
                                                const job_request& request,
                                                const std::string& schema) {
  if (auto err = check_identifier("schema", schema, 50))
    return err;
  auto now = clock::system()->now();
  auto prepared = detail::prepare_job(request, now);
  if (!prepared)
    return std::move(prepared.error());
  auto& [j, text, attrs] = *prepared;
  // In the caller's transaction the tables are named with their schema.
  auto insert =
      prefixed_sql(pg_enqueue_in, schema.empty() ? schema : schema + ".");
  auto channel = schema.empty() ? std::string{notify_channel}
                                : std::string{notify_channel} + "." + schema;
  try {
    j.id = tx.exec_params(insert, j.name, text, to_unix_ms(now),
                          to_unix_ms(j.available_at), j.priority,
                          key_or_null(j.concurrency_key),
                          key_or_null(j.second_concurrency_key),
                          key_or_null(attrs))[0][0]
               .as<int64_t>();
    auto in_schema = [&](const char* sql) {
      return prefixed_sql(sql, schema.empty() ? schema : schema + ".");
    };
    if (!request.rate_key().empty() || request.rate_cost() != 1)
      tx.exec_params(in_schema("INSERT INTO bg_jobs_rate_of (job_id,"
                               " rate_key, cost) VALUES ($1, $2, $3)"),
                     j.id, request.rate_key(), request.rate_cost());
    if (auto at = request.resolve_expires_at(now))
      tx.exec_params(in_schema("UPDATE jobs SET expires_at = $2 WHERE id = $1"),
                     j.id, to_unix_ms(*at));
    tx.exec_params("SELECT pg_notify($1, $2)", channel, j.name);
  } catch (...) {
    return failure("enqueueing a job in the caller's transaction");
  }
  return j;
}

caf::expected<std::vector<int64_t>>
postgres_adapter::enqueue_jobs(const std::vector<job_request>& requests) {
  auto now = from_unix_ms(impl_->now_ms());
  auto prepared = detail::prepare_jobs(requests, now);
  if (!prepared)
    return std::move(prepared.error());
  auto& jobs = *prepared;
  if (requests.empty())
    return std::vector<int64_t>{};
  if (std::any_of(requests.begin(), requests.end(), [](auto& r) {
        return r.unique().has_value() || has_extras(r);
      }))
    // One at a time, each unique request checked against its key; still
    // one transaction, all or none.
    return impl_->in_transaction("enqueueing jobs", [&](pqxx::work& tx) {
      std::vector<int64_t> ids;
      for (size_t i = 0; i < requests.size(); ++i) {
        auto& [j, text, attrs] = jobs[i];
        if (requests[i].unique()) {
          auto stored = insert_unique(tx, std::move(j), text, requests[i], now,
                                      impl_->channel);
          ids.push_back(stored.id);
          if (stored.conflict)
            continue; // a job that was there already keeps its own
        } else {
          ids.push_back(
              tx.exec_prepared("bgj_enqueue", j.name, text, to_unix_ms(now),
                               to_unix_ms(j.available_at), j.priority,
                               key_or_null(j.concurrency_key),
                               key_or_null(j.second_concurrency_key),
                               key_or_null(attrs))[0][0]
                  .as<int64_t>());
        }
        note_extras(tx, ids.back(), requests[i], now);
      }
      return ids;
    });
  std::string rows = "[";
  for (size_t i = 0; i < requests.size(); ++i) {
    if (i > 0)
      rows += ',';
    nlohmann::json row = {{"name", jobs[i].j.name},
                          {"payload", std::move(jobs[i].payload)},
                          {"at", to_unix_ms(jobs[i].j.available_at)},
                          {"p", jobs[i].j.priority}};
    if (!jobs[i].j.concurrency_key.empty())
      row["k1"] = jobs[i].j.concurrency_key;
    if (!jobs[i].j.second_concurrency_key.empty())
      row["k2"] = jobs[i].j.second_concurrency_key;
    if (!jobs[i].attrs.empty())
      row["a"] = detail::attrs_json(jobs[i].j.meta, jobs[i].j.tags,
                                    jobs[i].j.trace);
    rows += row.dump();
  }
  rows += ']';
  return impl_->in_statement(
      "enqueueing jobs", [&](pqxx::transaction_base& tx) {
        std::vector<int64_t> ids;
        ids.reserve(requests.size());
        for (const auto& r :
             tx.exec_prepared("bgj_enqueue_many", rows, to_unix_ms(now)))
          ids.push_back(r[0].as<int64_t>());
        return ids;
      });
}

caf::expected<std::vector<job>>
postgres_adapter::reserve_jobs(const reserve_params& params) {
  if (auto err = check_reserve(params))
    return err;
  if (params.job_names.empty())
    return std::vector<job>{};
  auto names = nlohmann::json(params.job_names).dump();
  if (params.limited) {
    if (auto err = impl_->pin_outside())
      return err;
    return impl_->in_statement(
        "reserving jobs", [&](pqxx::transaction_base& tx) {
          return impl_->limited_claim(tx, params, names, nullptr, nullptr,
                                      impl_->now_ms())
              .reserved;
        });
  }
  return impl_->in_statement("reserving jobs", [&](pqxx::transaction_base& tx) {
    impl_->pin_claim_plan(tx);
    auto now = impl_->now_ms();
    auto f = impl_->floor_for(params, names);
    auto jobs = read_jobs(
        f ? tx.exec_prepared("bgj_reserve_after", now, params.reserved_by,
                             names, params.limit, params.queue, f->priority,
                             f->at_ms, f->id)
          : tx.exec_prepared("bgj_reserve", now, params.reserved_by, names,
                             params.limit, params.queue),
        false); // finish_claim sorts
    impl_->finish_claim(tx, params, names, f, jobs);
    return jobs;
  });
}

caf::expected<std::string>
postgres_adapter::explain_reserve(const reserve_params& params) {
  auto plans = explain_claims(params, false);
  if (!plans)
    return std::move(plans.error());
  return plans->front();
}

std::string postgres_adapter::explain_statement(pqxx::transaction_base& tx,
                                                const char* name,
                                                const std::string& args) {
  // The statement's own text, prepared under a name of its own: EXPLAIN
  // takes no bound parameters.
  tx.exec(std::string{"PREPARE bgj_explain AS "} +
          impl_->statement_sql(name));
  std::string plan;
  for (const auto& row : tx.exec("EXPLAIN EXECUTE bgj_explain(" + args + ")"))
    plan += row[0].as<std::string>() + "\n";
  tx.exec("DEALLOCATE bgj_explain");
  return plan;
}

caf::expected<std::vector<std::string>>
postgres_adapter::explain_claims(const reserve_params& params, bool generic) {
  auto names = nlohmann::json(params.job_names).dump();
  return impl_->in_statement(
      "explaining the claim", [&](pqxx::transaction_base& tx) {
        impl_->pin_claim_plan(tx);
        tx.exec(std::string{"SET plan_cache_mode = "} +
                (generic ? "force_generic_plan" : "force_custom_plan"));
        std::vector<std::string> plans;
        auto now = std::to_string(impl_->now_ms());
        // The claim's arguments, then the completed ids and their owner,
        // then a floor.
        auto claim_args = now + ", " + tx.quote(params.reserved_by) + ", " +
                          tx.quote(names) + ", " +
                          std::to_string(params.limit) + ", " +
                          tx.quote(params.queue);
        auto completed = tx.quote("{1,2}") + ", " + tx.quote(params.reserved_by);
        auto floor = "0, " + now + ", 1";
        const std::pair<const char*, std::string> runs[] = {
            {"bgj_reserve", claim_args},
            {"bgj_reserve_after", claim_args + ", " + floor},
            {"bgj_complete_reserve", claim_args + ", " + completed},
            {"bgj_complete_reserve_after",
             claim_args + ", " + completed + ", " + floor}};
        for (auto& [name, args] : runs)
          plans.push_back(explain_statement(tx, name, args));
        tx.exec("RESET plan_cache_mode");
        return plans;
      });
}

caf::expected<std::vector<std::string>>
postgres_adapter::explain_limited_claims(const reserve_params& params,
                                         const std::string& rate_limit) {
  auto names = nlohmann::json(params.job_names).dump();
  return impl_->in_transaction(
      "explaining the limited claim", [&](pqxx::work& tx) {
        impl_->pin_claim_plan(tx);
        for (auto setting : impl::limited_claim_settings)
          tx.exec(setting);
        std::vector<std::string> plans;
        auto args = std::to_string(impl_->now_ms()) + ", " +
                    tx.quote(params.reserved_by) + ", " + tx.quote(names) +
                    ", " + std::to_string(limited_scan(params.limit)) + ", " +
                    tx.quote(params.queue) + ", " +
                    std::to_string(params.limit);
        const std::pair<const char*, std::string> runs[] = {
          {"bgj_limited_claim", args},
          {"bgj_rated_claim", args + ", " + tx.quote(rate_limit)}};
        for (auto& [name, run_args] : runs)
          plans.push_back(explain_statement(tx, name, run_args));
        return plans;
      });
}

caf::expected<std::vector<job>>
postgres_adapter::release_jobs_reserved_by(const std::string& reserved_by) {
  return impl_->jobs_of("releasing reservations", "bgj_release_by",
                        &reserved_by);
}

caf::expected<std::vector<job>>
postgres_adapter::release_jobs_of_node(const std::string& node) {
  auto prefix = node + "/";
  return impl_->by_reservations(
      "releasing a node's reservations", [&](pqxx::transaction_base& tx) {
        return read_jobs(tx.exec_prepared("bgj_release_node", prefix));
      });
}

caf::expected<std::vector<job>>
postgres_adapter::release_unheld(const std::string& reserved_by,
                                 const std::vector<int64_t>& held) {
  auto ids = nlohmann::json(held).dump();
  return impl_->in_statement(
      "releasing unheld reservations", [&](pqxx::transaction_base& tx) {
        return read_jobs(
            tx.exec_prepared("bgj_release_unheld", reserved_by, ids));
      });
}

std::shared_ptr<bg_jobs::clock> postgres_adapter::store_clock() const {
  if (impl_->server_time)
    return impl_->server_time;
  return impl_->options.clock;
}

caf::expected<void> postgres_adapter::heartbeat(const std::string& node) {
  if (impl_->server_time)
    try {
      impl_->server_time->measure(*impl_->conn);
    } catch (...) {
      return failure("reading the server's clock");
    }
  auto r = impl_->in_statement(
      "recording a heartbeat", [&](pqxx::transaction_base& tx) {
        tx.exec_prepared("bgj_heartbeat", node, impl_->now_ms());
        return 0;
      });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<std::optional<node_holder>> postgres_adapter::claim_node(
    const node_identity& me, std::chrono::milliseconds lease,
    const std::function<bool(const node_holder&)>& alive) {
  auto now = impl_->now_ms();
  return impl_->in_transaction(
      "claiming a node name",
      [&](pqxx::work& tx) -> std::optional<node_holder> {
        // Claims of one name wait for each other; released on commit.
        tx.exec_params("SELECT pg_advisory_xact_lock(7220159, hashtext($1))",
                       me.node);
        auto r = tx.exec_params(pg_node_holder, me.node);
        if (!r.empty()) {
          node_holder h;
          h.who.node = me.node;
          h.who.instance = r[0][0].as<std::string>();
          h.who.host = r[0][1].as<std::string>();
          h.who.pid = r[0][2].as<int64_t>();
          h.who.started_at = field_time(r[0][3]);
          h.heartbeat_at = field_time(r[0][4]);
          // A row with no instance was left by a heartbeat that landed
          // after its node gave the name up: it holds nothing.
          if (!h.who.instance.empty() && h.who.instance != me.instance &&
              to_unix_ms(h.heartbeat_at) >= now - lease.count() && alive(h))
            return h;
        }
        tx.exec_params(pg_node_claim, me.node, now, me.instance, me.host,
                       me.pid, to_unix_ms(me.started_at));
        return std::nullopt;
      });
}

caf::expected<void>
postgres_adapter::release_node(const std::string& node,
                               const std::string& instance) {
  auto r = impl_->in_statement(
      "giving up a node name", [&](pqxx::transaction_base& tx) {
        if (tx.exec_params(
                  "DELETE FROM bg_jobs_nodes WHERE node = $1 AND instance = $2",
                  node, instance)
                .affected_rows() > 0) {
          // Its queues stay known, with no node ('').
          tx.exec_params("INSERT INTO bg_jobs_queues (queue, job_name, node,"
                         " concurrency, announced_at)"
                         " SELECT queue, job_name, '', 0, announced_at"
                         " FROM bg_jobs_queues WHERE node = $1"
                         " ON CONFLICT DO NOTHING",
                         node);
          tx.exec_params("DELETE FROM bg_jobs_queues WHERE node = $1", node);
        }
        return 0;
      });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<void> postgres_adapter::announce_queues(
    const std::string& node, const std::vector<queue_announcement>& queues) {
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("announcing queues", [&](pqxx::work& tx) {
    tx.exec_params("DELETE FROM bg_jobs_queues WHERE node = $1", node);
    for (auto& a : queues)
      for (auto& name : a.job_names)
        tx.exec_params(
            "INSERT INTO bg_jobs_queues (queue, job_name, node,"
            " concurrency, announced_at) VALUES ($1, $2, $3, $4, " BG_JOBS_TS(
                "$5") ") ON CONFLICT DO NOTHING",
            a.queue, name, node, a.concurrency, now);
    return 0;
  });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<std::vector<known_queue>>
postgres_adapter::known_queues(std::chrono::milliseconds silent_after) {
  auto cutoff = impl_->now_ms() - silent_after.count();
  return impl_->in_statement("reading queues", [&](pqxx::transaction_base& tx) {
    std::vector<std::tuple<std::string, std::string, std::string, int>> rows;
    // A node silent since the cutoff reads as '' (none).
    for (const auto& r : tx.exec_params(
             "SELECT q.queue, q.job_name, CASE WHEN n.heartbeat_at IS NULL"
             "   OR n.heartbeat_at >= " BG_JOBS_TS("$1") " THEN q.node"
             "   ELSE '' END, q.concurrency"
             " FROM bg_jobs_queues q LEFT JOIN bg_jobs_nodes n"
             "   ON n.node = q.node ORDER BY 1, 2, 3",
             cutoff))
      rows.emplace_back(r[0].as<std::string>(), r[1].as<std::string>(),
                        r[2].as<std::string>(), r[3].as<int>());
    return merge_announcements(rows);
  });
}

caf::expected<bool>
postgres_adapter::hold_lease(const std::string& name, const std::string& holder,
                             std::chrono::milliseconds ttl) {
  auto now = impl_->now_ms();
  return impl_->in_statement("holding a lease", [&](pqxx::transaction_base& tx) {
    return !tx.exec_prepared("bgj_hold_lease", name, holder, now,
                             now + ttl.count())
                .empty();
  });
}

caf::expected<void>
postgres_adapter::record_actions(const std::vector<event>& events) {
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("recording an action", [&](pqxx::work& tx) {
    for (auto& e : events)
      tx.exec_params("INSERT INTO bg_jobs_actions"
                     " (at, kind, queue, job_id, job_name, message)"
                     " VALUES (" BG_JOBS_TS("$1") ", $2, $3, $4, $5, $6)",
                     now, std::string{e.name()}, e.queue,
                     e.job ? e.job->id : int64_t{0},
                     e.job ? e.job->name : std::string{}, e.message);
    return 0;
  });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<std::vector<recorded_action>>
postgres_adapter::take_actions(int limit) {
  return impl_->in_statement(
      "taking recorded actions", [&](pqxx::transaction_base& tx) {
        std::vector<recorded_action> result;
        for (const auto& r : tx.exec_params(
                 "DELETE FROM bg_jobs_actions WHERE id = ANY (ARRAY("
                 "SELECT id FROM bg_jobs_actions ORDER BY id LIMIT $1"
                 " FOR UPDATE SKIP LOCKED))"
                 " RETURNING id, " BG_JOBS_MS("at") ", kind, queue, job_id,"
                 " job_name, message",
                 limit)) {
          recorded_action a;
          a.id = r[0].as<int64_t>();
          a.at = field_time(r[1]);
          a.kind = r[2].as<std::string>();
          a.queue = r[3].as<std::string>();
          a.job_id = r[4].as<int64_t>();
          a.job_name = r[5].as<std::string>();
          a.message = r[6].as<std::string>();
          result.push_back(std::move(a));
        }
        std::sort(result.begin(), result.end(),
                  [](auto& a, auto& b) { return a.id < b.id; });
        return result;
      });
}

caf::expected<void> postgres_adapter::release_lease(const std::string& name,
                                                    const std::string& holder) {
  auto r = impl_->in_statement(
      "releasing a lease", [&](pqxx::transaction_base& tx) {
        tx.exec_prepared("bgj_release_lease", name, holder);
        return 0;
      });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<std::vector<job>>
postgres_adapter::rescue_jobs(std::chrono::milliseconds lease) {
  auto cutoff = impl_->now_ms() - lease.count();
  return impl_->by_reservations(
      "rescuing jobs", [&](pqxx::transaction_base& tx) {
        return read_jobs(tx.exec_prepared("bgj_rescue", cutoff));
      });
}

caf::expected<std::vector<job>>
postgres_adapter::discard_expired(int limit) {
  auto now = impl_->now_ms();
  return impl_->in_statement(
      "discarding expired jobs", [&](pqxx::transaction_base& tx) {
        auto jobs = read_jobs(tx.exec_params(
            "WITH m AS (DELETE FROM jobs WHERE id = ANY (ARRAY("
            "   SELECT id FROM jobs WHERE expires_at <= $1"
            "   AND reserved_by IS NULL ORDER BY expires_at LIMIT $2"
            "   FOR UPDATE SKIP LOCKED)) AND reserved_by IS NULL"
            "   RETURNING *),"
            " f AS (INSERT INTO jobs_failed (id, name, payload, attempts,"
            "   exception, created_at, available_at, failed_at, priority,"
            "   cancelled, errors, concurrency_key, second_concurrency_key, attrs)"
            "   SELECT id, name, payload, attempts, 'expired', created_at,"
            "   available_at, " BG_JOBS_TS("$1") ", priority, true, errors,"
            "   concurrency_key, second_concurrency_key, attrs FROM m)"
            " SELECT " BG_JOBS_PG_JOB_COLUMNS " FROM m",
            now, std::max(limit, 1)));
        for (auto& j : jobs)
          j.last_error = "expired";
        return jobs;
      });
}

caf::expected<int64_t> postgres_adapter::prune_jobs(const prune_params& p) {
  auto now = impl_->now_ms();
  try {
    pqxx::work tx{*impl_->conn};
    int64_t deleted = 0;
    deleted += tx.exec_prepared("bgj_prune_succeeded_age",
                                now - p.succeeded_max_age.count(), p.batch)
                   .affected_rows();
    deleted += tx.exec_prepared("bgj_prune_failed_age",
                                now - p.failed_max_age.count(), p.batch)
                   .affected_rows();
    deleted += impl_->prune_beyond(tx, "succeeded", p.max_succeeded, p.batch);
    deleted += impl_->prune_beyond(tx, "failed", p.max_failed, p.batch);
    deleted += tx.exec_prepared("bgj_prune_workflows",
                                now - p.succeeded_max_age.count(),
                                now - p.failed_max_age.count(),
                                std::max(1, p.batch / 100))[0][0]
                   .as<int64_t>();
    // The rate keys of jobs older than every job kept (ids only grow).
    tx.exec("DELETE FROM bg_jobs_rate_of WHERE job_id < (SELECT min(m) FROM"
            " (SELECT min(id) AS m FROM jobs UNION ALL SELECT min(id) FROM"
            " jobs_succeeded UNION ALL SELECT min(id) FROM jobs_failed"
            " UNION ALL SELECT min(id) FROM bg_jobs_blocked"
            " UNION ALL SELECT max(job_id) + 1 FROM bg_jobs_rate_of) x)");
    // Without succeeded history, the last progress report of a job that
    // succeeded in a batch (BG_JOBS_PG_DROP_SUCCEEDED) is left behind:
    // those whose job is nowhere go now.
    if (!impl_->options.succeeded_history)
      tx.exec("DELETE FROM bg_jobs_progress p WHERE NOT EXISTS (SELECT 1"
              " FROM jobs j WHERE j.id = p.job_id) AND NOT EXISTS (SELECT 1"
              " FROM jobs_succeeded s WHERE s.id = p.job_id) AND NOT EXISTS"
              " (SELECT 1 FROM jobs_failed f WHERE f.id = p.job_id)"
              " AND NOT EXISTS (SELECT 1 FROM bg_jobs_blocked b"
              " WHERE b.id = p.job_id)");
    // A dry run counts and rolls back.
    if (p.dry_run)
      tx.abort();
    else
      tx.commit();
    return deleted;
  } catch (...) {
    return failure("pruning history");
  }
}

caf::expected<vacuum_report>
postgres_adapter::vacuum_jobs(int64_t min_dead_rows) {
  try {
    // Outside a transaction block: VACUUM may not run in one.
    pqxx::nontransaction tx{*impl_->conn};
    const char* dead = "SELECT pg_stat_get_dead_tuples('jobs'::regclass)";
    vacuum_report report;
    report.dead_rows = tx.exec(dead)[0][0].as<int64_t>();
    if (report.dead_rows < min_dead_rows)
      return report;
    // SKIP_LOCKED: if autovacuum or another node is at it, leave it be.
    tx.exec("VACUUM (SKIP_LOCKED) jobs");
    report.vacuumed = true;
    report.dead_rows_after = tx.exec(dead)[0][0].as<int64_t>();
    return report;
  } catch (...) {
    return failure("vacuuming jobs");
  }
}

namespace {

/// Whether `cs` are successes of one owner (one statement completes them).
bool successes_of_one_owner(const std::vector<completion>& cs) {
  bool same = !cs.empty();
  for (auto& c : cs)
    same = same && c.what == completion::kind::succeeded &&
           c.output.empty() && c.reserved_by == cs.front().reserved_by;
  return same;
}

/// The ids of `cs` as a PostgreSQL array literal.
std::string id_array(const std::vector<completion>& cs) {
  return id_literal(cs, [](const completion& c) { return c.job_id; });
}

/// Which of the successes `cs` applied, given the ids a statement `moved`;
/// one not moved (its reservation is gone, or a cancel was asked for) ends
/// cancelled if it is still the owner's.
std::vector<bool> successes_applied(pqxx::transaction_base& tx,
                                    const std::vector<completion>& cs,
                                    const std::set<int64_t>& moved,
                                    int64_t now) {
  std::vector<bool> applied;
  applied.reserve(cs.size());
  for (auto& c : cs) {
    bool done = moved.count(c.job_id) > 0;
    if (!done)
      done = tx.exec_prepared("bgj_cancel_asked", c.job_id, now,
                              nullable(c.reserved_by))
                 .affected_rows() == 1;
    applied.push_back(done);
  }
  return applied;
}

} // namespace

caf::expected<std::optional<int64_t>>
postgres_adapter::next_due(const reserve_params& params, timestamp after) {
  static_assert(min_priority == 0 && max_priority == 9,
                "bgj_next_due probes priorities 0 to 9");
  if (params.job_names.empty())
    return std::optional<int64_t>{};
  auto names = nlohmann::json(params.job_names).dump();
  return impl_->in_statement(
      "reading when the next delayed job is due",
      [&](pqxx::transaction_base& tx) -> std::optional<int64_t> {
        auto r = tx.exec_prepared("bgj_next_due", impl_->now_ms(), names,
                                  to_unix_ms(after));
        if (r.empty() || r[0][0].is_null())
          return std::nullopt;
        return std::max<int64_t>(1, r[0][0].as<int64_t>());
      });
}

caf::expected<complete_reserve_result> postgres_adapter::complete_and_reserve(
    const std::vector<completion>& completions, const reserve_params& params) {
  if (!successes_of_one_owner(completions) || params.job_names.empty())
    return db_adapter::complete_and_reserve(completions, params);
  if (params.limited)
    return complete_and_reserve_limited(completions, params);
  if (auto err = check_reserve(params))
    return err;
  auto now = impl_->now_ms();
  auto names = nlohmann::json(params.job_names).dump();
  auto both = impl_->in_statement(
      "recording outcomes and reserving jobs", [&](pqxx::transaction_base& tx) {
        impl_->pin_claim_plan(tx);
        complete_reserve_result result;
        std::set<int64_t> moved;
        auto ids = id_array(completions);
        auto owner = nullable(completions.front().reserved_by);
        auto f = impl_->floor_for(params, names);
        auto r = f ? tx.exec_prepared("bgj_complete_reserve_after", now,
                                      params.reserved_by, names, params.limit,
                                      params.queue, ids, owner, f->priority,
                                      f->at_ms, f->id)
                   : tx.exec_prepared("bgj_complete_reserve", now,
                                      params.reserved_by, names, params.limit,
                                      params.queue, ids, owner);
        for (const auto& row : r)
          if (row[14].as<bool>())
            moved.insert(row[0].as<int64_t>());
          else
            result.reserved.push_back(read_job(row));
        result.applied = successes_applied(tx, completions, moved, now);
        impl_->finish_claim(tx, params, names, f, result.reserved);
        return result;
      });
  // A claim that failed (a statement error, nothing lost) took the
  // completions with it: they are recorded on their own, then the claim
  // is tried alone, so that its error does not hold them back.
  if (!both) {
    auto code = code_of(both.error());
    if (code != errc::connection_lost && code != errc::database_unavailable)
      return db_adapter::complete_and_reserve(completions, params);
  }
  return both;
}

caf::expected<complete_reserve_result>
postgres_adapter::complete_and_reserve_limited(
    const std::vector<completion>& completions, const reserve_params& params) {
  if (auto err = check_reserve(params))
    return err;
  if (auto err = impl_->pin_outside())
    return err;
  auto now = impl_->now_ms();
  auto names = nlohmann::json(params.job_names).dump();
  // The successes and the claim in one transaction, in the queue's turn:
  // the claim counts the slots they gave back.
  auto ids = id_array(completions);
  auto both = impl_->in_statement(
      "recording outcomes and reserving jobs",
      [&](pqxx::transaction_base& tx) {
        auto round = impl_->limited_claim(
            tx, params, names, &ids,
            nullable(completions.front().reserved_by), now);
        complete_reserve_result result;
        result.applied = successes_applied(tx, completions, round.moved, now);
        result.reserved = std::move(round.reserved);
        return result;
      });
  if (!both) {
    auto code = code_of(both.error());
    if (code != errc::connection_lost && code != errc::database_unavailable)
      return db_adapter::complete_and_reserve(completions, params);
  }
  return both;
}

caf::expected<std::vector<bool>>
postgres_adapter::complete_jobs(const std::vector<completion>& completions) {
  auto now = impl_->now_ms();
  // The common case, a batch of successes by one owner: one statement.
  if (successes_of_one_owner(completions)) {
    auto ids = id_array(completions);
    auto owner = nullable(completions.front().reserved_by);
    return impl_->in_statement(
        "completing jobs", [&](pqxx::transaction_base& tx) {
          std::set<int64_t> moved;
          for (const auto& r :
               tx.exec_prepared("bgj_succeed_many", ids, now, owner))
            moved.insert(r[0].as<int64_t>());
          return successes_applied(tx, completions, moved, now);
        });
  }
  return impl_->in_transaction("completing jobs", [&](pqxx::work& tx) {
    std::vector<bool> applied;
    applied.reserve(completions.size());
    for (auto& c : completions) {
      pqxx::result r;
      auto owner = nullable(c.reserved_by);
      auto at = to_unix_ms(c.available_at);
      switch (c.what) {
      case completion::kind::succeeded:
        // The output first, kept only while the success will apply.
        if (!c.output.empty())
          tx.exec_params(
              "INSERT INTO bg_jobs_outputs (job_id, output)"
              " SELECT id, $2::jsonb FROM jobs WHERE id = $1"
              " AND reserved_by IS NOT DISTINCT FROM $3"
              " AND cancel_reason IS NULL ON CONFLICT (job_id)"
              " DO UPDATE SET output = excluded.output",
              c.job_id, c.output, owner);
        r = tx.exec_prepared("bgj_succeed", c.job_id, now, owner);
        break;
      case completion::kind::failed:
        r = tx.exec_prepared("bgj_fail", c.job_id, now, owner, c.error);
        break;
      case completion::kind::retry:
        r = tx.exec_prepared("bgj_retry", c.job_id, at, owner, c.error, now);
        break;
      case completion::kind::snooze:
        r = tx.exec_prepared("bgj_snooze", c.job_id, at, owner);
        if (r.affected_rows() == 1 && c.block_ms > 0 && !c.rate_limit.empty())
          tx.exec_prepared("bgj_rate_block_job", c.rate_limit, c.job_id,
                           std::min<int64_t>(c.block_ms,
                                             int64_t{30} * 24 * 3600 * 1000));
        break;
      case completion::kind::cancelled:
        r = tx.exec_prepared("bgj_cancel_reserved", c.job_id, now, owner,
                             c.error);
        break;
      }
      if (r.affected_rows() != 1 && c.what != completion::kind::cancelled)
        r = tx.exec_prepared("bgj_cancel_asked", c.job_id, now, owner);
      applied.push_back(r.affected_rows() == 1);
    }
    return applied;
  });
}

caf::expected<std::optional<job>>
postgres_adapter::enqueue_scheduled(const scheduled_params& params) {
  auto text = params.request.validate();
  if (!text)
    return std::move(text.error());
  auto now = impl_->now_ms();
  auto& name = params.schedule_name();
  return flatten(impl_->in_transaction(
      "enqueueing a scheduled job",
      [&](pqxx::work& tx) -> caf::expected<std::optional<job>> {
        // Serializes nodes scheduling the same job; released on commit.
        tx.exec_prepared("bgj_schedule_lock", name);
        auto latest = tx.exec_prepared("bgj_schedule_latest", name);
        if (params.trigger) {
          if (!latest.empty()) {
            // The latest occurrence: replaced while it waits; running, it
            // stays.
            auto job_id = latest[0][1].as<int64_t>();
            auto r = tx.exec_params(
                "SELECT reserved_by IS NOT NULL FROM jobs WHERE id = $1",
                job_id);
            if (!r.empty() && r[0][0].as<bool>() && !params.allow_running)
              return make_error(errc::invalid_state,
                                "schedule '" + printable(name) +
                                    "' has a run in progress; its overlap "
                                    "policy allows no other");
            if (!r.empty() && !r[0][0].as<bool>()) {
              tx.exec_params(
                  "DELETE FROM jobs WHERE id = $1 AND reserved_by IS NULL",
                  job_id);
              tx.exec_params("DELETE FROM bg_jobs_schedule WHERE job_id = $1",
                             job_id);
            }
          }
        } else {
          bool as_seen = latest.empty() != params.previous.has_value() &&
                         (latest.empty() || latest[0][0].as<int64_t>() ==
                                                to_unix_ms(*params.previous));
          if (!as_seen)
            return std::optional<job>{};
          if (!tx.exec_params("SELECT 1 FROM bg_jobs_paused"
                              " WHERE kind = 'schedule' AND name = $1",
                              name)
                   .empty())
            return std::optional<job>{}; // paused: nothing is enqueued
          if (params.require_stored &&
              tx.exec_params("SELECT 1 FROM bg_jobs_schedules WHERE name = $1",
                             name)
                  .empty())
            return std::optional<job>{}; // removed meanwhile
        }
        job j;
        j.name = params.request.name();
        j.payload = params.request.payload();
        j.created_at = from_unix_ms(now);
        // A triggered run is due now, by the store's clock.
        auto occurrence =
            params.trigger ? from_unix_ms(now) : params.occurrence;
        j.available_at = occurrence;
        j.priority = params.request.priority();
        j.concurrency_key = params.request.concurrency_key();
        j.second_concurrency_key = params.request.second_concurrency_key();
        j.meta = params.request.meta();
        j.tags = params.request.tags();
        j.trace = params.request.trace();
        auto attrs = detail::attrs_text(j.meta, j.tags, j.trace);
        std::string skip_text;
        if (params.skip_until)
          skip_text = std::to_string(to_unix_ms(*params.skip_until));
        j.id = tx.exec_prepared("bgj_schedule_insert", j.name, *text, now,
                                to_unix_ms(occurrence), j.priority,
                                key_or_null(j.concurrency_key),
                                key_or_null(j.second_concurrency_key),
                                key_or_null(attrs), name,
                                params.catch_up_left,
                                key_or_null(skip_text))[0][0]
                   .as<int64_t>();
        note_extras(tx, j.id, params.request, occurrence);
        tx.exec_prepared("bgj_schedule_prune", name);
        return std::optional<job>{std::move(j)};
      }));
}

caf::expected<std::optional<scheduled_run>>
postgres_adapter::last_scheduled_run(const std::string& name) {
  return impl_->in_transaction(
      "reading the schedule",
      [&](pqxx::work& tx) -> std::optional<scheduled_run> {
        auto r = tx.exec_prepared("bgj_schedule_state", name);
        if (r.empty())
          return std::nullopt;
        scheduled_run run;
        run.scheduled_at = field_time(r[0][0]);
        run.job_id = r[0][1].as<int64_t>();
        run.pending = r[0][2].as<bool>();
        if (!r[0][3].is_null())
          run.finished_at = field_time(r[0][3]);
        run.running = r[0][4].as<bool>();
        run.catch_up_left = r[0][5].as<int>();
        if (!r[0][6].is_null())
          run.skip_until = field_time(r[0][6]);
        if (!r[0][7].is_null())
          run.enqueued_at = field_time(r[0][7]);
        return run;
      });
}

caf::expected<bool>
postgres_adapter::mark_scheduled_run(const std::string& name,
                                     timestamp scheduled_at, int catch_up_left,
                                     std::optional<timestamp> skip_until) {
  std::string skip_text;
  if (skip_until)
    skip_text = std::to_string(to_unix_ms(*skip_until));
  return impl_->in_statement(
      "recording a catch-up", [&](pqxx::transaction_base& tx) {
        return tx
                   .exec_params(
                       "UPDATE bg_jobs_schedule SET catch_up_left = $3,"
                       " skip_until = " BG_JOBS_TS("$4") " WHERE name = $1"
                       " AND scheduled_at = " BG_JOBS_TS("$2")
                       " AND job_id IN (SELECT id FROM jobs"
                       "   WHERE reserved_by IS NULL)",
                       name, to_unix_ms(scheduled_at), catch_up_left,
                       key_or_null(skip_text))
                   .affected_rows() > 0;
      });
}

caf::expected<bool> postgres_adapter::put_schedule(const stored_schedule& sc) {
  if (auto why = name_problem(sc.name); !why.empty())
    return make_error(errc::invalid_argument,
                      "schedule name '" + printable(sc.name) + "' " + why);
  auto now = impl_->now_ms();
  return flatten(impl_->in_transaction(
      "storing a schedule", [&](pqxx::work& tx) -> caf::expected<bool> {
        tx.exec_prepared("bgj_schedule_lock", sc.name);
        auto row = tx.exec_params(
            "SELECT declared, definition FROM bg_jobs_schedules"
            " WHERE name = $1",
            sc.name);
        if (!sc.declared && !row.empty() && row[0][0].as<bool>())
          return make_error(errc::invalid_state,
                            "schedule '" + printable(sc.name) +
                                "' is declared in a node's code; change it "
                                "there");
        tx.exec_params(
            "INSERT INTO bg_jobs_schedules (name, definition, declared,"
            " seen_at, updated_at) VALUES ($1, $2, $3, " BG_JOBS_TS("$4") ", "
            BG_JOBS_TS("$4") ") ON CONFLICT (name) DO UPDATE"
            " SET definition = excluded.definition,"
            " declared = excluded.declared, seen_at = excluded.seen_at,"
            " updated_at = CASE WHEN bg_jobs_schedules.definition ="
            " excluded.definition AND bg_jobs_schedules.declared ="
            " excluded.declared THEN bg_jobs_schedules.updated_at"
            " ELSE excluded.updated_at END",
            sc.name, sc.definition, sc.declared, now);
        if (row.empty() || row[0][0].as<bool>() != sc.declared ||
            row[0][1].as<std::string>() != sc.definition)
          tx.exec_params("SELECT pg_notify($1, $2)", impl_->channel,
                         std::string{schedules_changed});
        return row.empty();
      }));
}

caf::expected<std::vector<stored_schedule>> postgres_adapter::list_schedules() {
  return impl_->in_statement(
      "reading schedules", [&](pqxx::transaction_base& tx) {
        std::vector<stored_schedule> result;
        for (const auto& r : tx.exec(
                 "SELECT name, definition, declared, " BG_JOBS_MS(
                     "seen_at") ", " BG_JOBS_MS("updated_at")
                                " FROM bg_jobs_schedules ORDER BY name")) {
          stored_schedule sc;
          sc.name = r[0].as<std::string>();
          sc.definition = r[1].as<std::string>();
          sc.declared = r[2].as<bool>();
          sc.seen_at = field_time(r[3]);
          sc.updated_at = field_time(r[4]);
          result.push_back(std::move(sc));
        }
        return result;
      });
}

caf::expected<schedule_removal>
postgres_adapter::remove_schedule(const std::string& name,
                                  std::optional<timestamp> unseen_since) {
  auto now = impl_->now_ms();
  return flatten(impl_->in_transaction(
      "removing a schedule",
      [&](pqxx::work& tx) -> caf::expected<schedule_removal> {
        tx.exec_prepared("bgj_schedule_lock", name);
        schedule_removal result;
        auto row = tx.exec_params("SELECT declared, " BG_JOBS_MS(
                                      "seen_at") " FROM bg_jobs_schedules"
                                                 " WHERE name = $1",
                                  name);
        if (row.empty())
          return result;
        bool declared = row[0][0].as<bool>();
        if (!unseen_since && declared)
          return make_error(errc::invalid_state,
                            "schedule '" + printable(name) +
                                "' is declared in a node's code; it stops "
                                "when no node declares it");
        if (unseen_since && (!declared || row[0][1].as<int64_t>() >=
                                              to_unix_ms(*unseen_since)))
          return result;
        auto moved = tx.exec_params(
            "WITH m AS (DELETE FROM jobs WHERE reserved_by IS NULL AND id ="
            "   ANY (ARRAY(SELECT job_id FROM bg_jobs_schedule"
            "   WHERE name = $1)) RETURNING *)"
            " INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
            "   created_at, available_at, failed_at, priority, cancelled,"
            "   errors, concurrency_key, second_concurrency_key, attrs)"
            " SELECT id, name, payload, attempts, 'the schedule was removed',"
            "   created_at, available_at, " BG_JOBS_TS("$2") ", priority,"
            "   true, errors, concurrency_key, second_concurrency_key, attrs"
            " FROM m RETURNING id",
            name, now);
        if (!moved.empty())
          result.cancelled_job = moved[0][0].as<int64_t>();
        tx.exec_params("DELETE FROM bg_jobs_schedule WHERE name = $1", name);
        tx.exec_params("DELETE FROM bg_jobs_paused WHERE kind = 'schedule'"
                       " AND name = $1",
                       name);
        tx.exec_params("DELETE FROM bg_jobs_schedules WHERE name = $1", name);
        tx.exec_params("SELECT pg_notify($1, $2)", impl_->channel,
                       std::string{schedules_changed});
        result.removed = true;
        return result;
      }));
}

// -- reads
// -----------------------------------------------------------------------

caf::expected<std::vector<job>>
postgres_adapter::get_running_jobs_of_owner(const std::string& owner) {
  return impl_->jobs_of("reading jobs", "bgj_running_by", &owner, false);
}

caf::expected<std::vector<std::pair<int64_t, std::string>>>
postgres_adapter::cancels_asked(const std::string& owner,
                                const std::vector<int64_t>& ids) {
  using asked = std::vector<std::pair<int64_t, std::string>>;
  if (ids.empty())
    return asked{};
  return impl_->in_statement(
      "reading cancels asked for", [&](pqxx::transaction_base& tx) {
        asked result;
        for (const auto& r : tx.exec_prepared(
                 "bgj_cancels_asked", owner,
                 id_literal(ids, [](int64_t id) { return id; })))
          result.emplace_back(r[0].as<int64_t>(), r[1].as<std::string>());
        return result;
      });
}

// -- wake-ups
// ----------------------------------------------------------------------

caf::expected<std::vector<std::string>>
postgres_adapter::await_wakeups(std::chrono::milliseconds timeout,
                                int interrupt_fd) {
  try {
    if (!impl_->receiver)
      impl_->receiver = std::make_unique<wakeup_receiver>(
          *impl_->conn, impl_->channel, impl_->wakeups);
    if (impl_->conn->get_notifs() == 0) {
      // The connection's socket and the interrupt, whichever comes first.
      pollfd pfd[2] = {{impl_->conn->sock(), POLLIN, 0},
                       {interrupt_fd, POLLIN, 0}};
      if (pfd[0].fd < 0)
        return make_error(errc::connection_lost,
                          "waiting for notifications: connection lost");
      ::poll(pfd, interrupt_fd < 0 ? 1 : 2, static_cast<int>(timeout.count()));
      impl_->conn->get_notifs();
    }
    if (!impl_->conn->is_open())
      return make_error(errc::connection_lost,
                        "waiting for notifications: connection lost");
  } catch (...) {
    return failure("waiting for notifications");
  }
  std::vector<std::string> names;
  names.swap(impl_->wakeups);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

} // namespace bg_jobs
