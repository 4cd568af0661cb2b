#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"

#include "bg_jobs/adapters/detail/prepared_job.hpp"

#include <algorithm>
#include <map>
#include <set>

#include <poll.h>

#include <libpq-fe.h>
#include <pqxx/pqxx>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

// -- SQL ---------------------------------------------------------------------

namespace {

#define BG_JOBS_MS(col) "(extract(epoch from " col ") * 1000)::bigint"
#define BG_JOBS_TS(param)                                                      \
  "(timestamptz 'epoch' + " param "::bigint * interval '1 millisecond')"
#define BG_JOBS_PG_APPEND_ERROR(at, text)                                      \
  "coalesce(errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object("     \
  "'attempt', attempts, 'at', " at "::bigint, 'error', " text "::text))"
// clang-format off
#define BG_JOBS_PG_JOB_COLUMNS                                                 \
  "id, name, payload, attempts, " BG_JOBS_MS("created_at") ", "                \
  BG_JOBS_MS("available_at") ", " BG_JOBS_MS("reserved_at") ", reserved_by,"   \
  " last_error, priority, cancel_reason"
// clang-format on

// The claim: $1 now, $2 owner, $3 names (JSON), $4 limit, $5 queue; `after`
// bounds the index scan from below.
//
// Its shape leaves the planner one sensible plan whatever the statistics
// say: the ids to take are an InitPlan (`= ANY (ARRAY(...))`, run once) and
// so are the names, so the update finds its rows by primary key. Written as
// `id IN (SELECT ...)` it is a semi join, which after an ANALYZE that saw
// a nearly empty table became a nested loop over every entry of the primary
// key that ran the claim again for each: 10-50 s per claim on a table with
// a million dead rows.
#define BG_JOBS_PG_CLAIM(after)                                                \
  "UPDATE jobs SET reserved_at = " BG_JOBS_TS(                                 \
      "$1") ", reserved_by = $2,"                                              \
            " attempts = attempts + 1"                                         \
            " WHERE id = ANY (ARRAY(SELECT id FROM jobs"                       \
            "   WHERE reserved_by IS NULL AND available_at <= " BG_JOBS_TS(    \
                "$1") after                                                    \
      "     AND name = ANY (ARRAY(SELECT json_array_elements_text($3::json)))" \
      "     AND NOT EXISTS (SELECT 1 FROM bg_jobs_paused"                      \
      "       WHERE kind = 'queue' AND name = $5)"                             \
      "   ORDER BY priority, available_at, id LIMIT $4"                        \
      "   FOR UPDATE SKIP LOCKED))"                                            \
      " RETURNING " BG_JOBS_PG_JOB_COLUMNS
#define BG_JOBS_PG_AFTER(p, at, id)                                            \
  " AND (priority, available_at, id) > (" p                                    \
  "::integer, " BG_JOBS_TS(at) ", " id "::bigint)"
// Successes ($6 ids, $7 their owner) and the claim.
#define BG_JOBS_PG_COMPLETE_CLAIM(after)                                                        \
  "WITH m AS (DELETE FROM jobs WHERE id = ANY($6::bigint[])"                                    \
  "   AND reserved_by IS NOT DISTINCT FROM $7 AND cancel_reason IS NULL"                        \
  "   RETURNING *),"                                                                            \
  " s AS (INSERT INTO jobs_succeeded (id, name, payload, attempts,"                             \
  "   created_at, available_at, succeeded_at, priority)"                                        \
  "   SELECT id, name, payload, attempts, created_at, available_at, " BG_JOBS_TS(               \
      "$1") ", priority FROM m RETURNING id),"                                                  \
            " c AS (" BG_JOBS_PG_CLAIM(                                                         \
                after) ")"                                                                      \
                       " SELECT *, false FROM c UNION ALL"                                      \
                       " SELECT id, '', '', 0, 0::bigint, 0::bigint, NULL::bigint, NULL, NULL," \
                       "   0, NULL, true FROM s"

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
};

constexpr int known_version = std::size(migrations);
static_assert(known_version == db_adapter::schema_version_current);

const char notify_channel[] = "bg_jobs";

// clang-format off
const char pg_enqueue_in[] =
    "INSERT INTO jobs (name, payload, attempts, created_at, available_at,"
    " priority) VALUES ($1, $2, 0, " BG_JOBS_TS("$3") ", " BG_JOBS_TS("$4")
    ", $5) RETURNING id";

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

struct statement_def {
  const char* name;
  const char* sql;
};

// clang-format off
const statement_def statements[] = {
  {"bgj_enqueue",
   "WITH j AS (INSERT INTO jobs (name, payload, attempts, created_at,"
   " available_at, priority) VALUES ($1, $2, 0, " BG_JOBS_TS("$3") ", "
   BG_JOBS_TS("$4") ", $5) RETURNING id)"
   " SELECT id, pg_notify('bg_jobs', $1) FROM j"},
  {"bgj_enqueue_many",
   "WITH r AS (SELECT * FROM json_to_recordset($1::json)"
   "   AS x(name text, payload text, at bigint, p integer)),"
   " j AS (INSERT INTO jobs (name, payload, attempts, created_at,"
   "   available_at, priority) SELECT name, payload, 0, " BG_JOBS_TS("$2")
   ", " BG_JOBS_TS("at") ", p FROM r RETURNING id),"
   " n AS (SELECT pg_notify('bg_jobs', name) FROM (SELECT DISTINCT name"
   "   FROM r) d)"
   " SELECT id FROM j, (SELECT count(*) FROM n) c ORDER BY id"},
  {"bgj_reserve", BG_JOBS_PG_CLAIM("")},
  // The same claim, its index scan starting after the last job this
  // connection claimed ($6..$8): see postgres_adapter::impl::floor.
  {"bgj_reserve_after", BG_JOBS_PG_CLAIM(BG_JOBS_PG_AFTER("$6", "$7", "$8"))},
  // Successes of one owner and the next claim in one statement (one round
  // trip, one commit). The claim cannot take the rows being completed:
  // they are reserved. Rows flagged true are the completed ids.
  {"bgj_complete_reserve", BG_JOBS_PG_COMPLETE_CLAIM("")},
  {"bgj_complete_reserve_after",
   BG_JOBS_PG_COMPLETE_CLAIM(BG_JOBS_PG_AFTER("$8", "$9", "$10"))},
  {"bgj_release_one",
   "UPDATE jobs SET reserved_at = NULL, reserved_by = NULL WHERE id = $1"
   " RETURNING " BG_JOBS_PG_JOB_COLUMNS},
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
  {"bgj_succeed",
   "WITH m AS (DELETE FROM jobs WHERE id = $1"
   "   AND reserved_by IS NOT DISTINCT FROM $3 AND cancel_reason IS NULL"
   "   RETURNING *)"
   " INSERT INTO jobs_succeeded (id, name, payload, attempts, created_at,"
   "   available_at, succeeded_at, priority)"
   " SELECT id, name, payload, attempts, created_at, available_at, "
   BG_JOBS_TS("$2") ", priority FROM m"},
  {"bgj_succeed_many",
   "WITH m AS (DELETE FROM jobs WHERE id = ANY($1::bigint[])"
   "   AND reserved_by IS NOT DISTINCT FROM $3 AND cancel_reason IS NULL"
   "   RETURNING *)"
   " INSERT INTO jobs_succeeded (id, name, payload, attempts, created_at,"
   "   available_at, succeeded_at, priority)"
   " SELECT id, name, payload, attempts, created_at, available_at, "
   BG_JOBS_TS("$2") ", priority FROM m RETURNING id"},
  {"bgj_fail",
   "WITH m AS (DELETE FROM jobs WHERE id = $1"
   "   AND reserved_by IS NOT DISTINCT FROM $3 AND cancel_reason IS NULL"
   "   RETURNING *)"
   " INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
   "   created_at, available_at, failed_at, priority, errors)"
   " SELECT id, name, payload, attempts, $4, created_at, available_at, "
   BG_JOBS_TS("$2") ", priority, " BG_JOBS_PG_APPEND_ERROR("$2", "$4")
   " FROM m"},
  {"bgj_cancel_reserved",
   "WITH m AS (DELETE FROM jobs WHERE id = $1"
   "   AND reserved_by IS NOT DISTINCT FROM $3 RETURNING *)"
   " INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
   "   created_at, available_at, failed_at, priority, cancelled, errors)"
   " SELECT id, name, payload, attempts, coalesce(cancel_reason, $4),"
   " created_at, available_at, " BG_JOBS_TS("$2") ", priority, true, errors"
   " FROM m"},
  // The fallback of an outcome that did not apply: the job is recorded as
  // cancelled only if a cancel was asked for. (A job that is reserved by
  // the same owner again — rescued, then claimed anew, possibly by the very
  // statement that carried the outcome — is another attempt, not a cancel.)
  {"bgj_cancel_asked",
   "WITH m AS (DELETE FROM jobs WHERE id = $1"
   "   AND reserved_by IS NOT DISTINCT FROM $3 AND cancel_reason IS NOT NULL"
   "   RETURNING *)"
   " INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
   "   created_at, available_at, failed_at, priority, cancelled, errors)"
   " SELECT id, name, payload, attempts, cancel_reason,"
   " created_at, available_at, " BG_JOBS_TS("$2") ", priority, true, errors"
   " FROM m"},
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
   "SELECT " BG_JOBS_MS("scheduled_at") " FROM bg_jobs_schedule"
   " WHERE name = $1 ORDER BY scheduled_at DESC LIMIT 1"},
  {"bgj_schedule_insert",
   "WITH j AS (INSERT INTO jobs (name, payload, attempts, created_at,"
   "   available_at, priority) VALUES ($1, $2, 0, " BG_JOBS_TS("$3") ", "
   BG_JOBS_TS("$4") ", $5) RETURNING id),"
   " s AS (INSERT INTO bg_jobs_schedule (name, scheduled_at, job_id)"
   "   SELECT $1, " BG_JOBS_TS("$4") ", id FROM j)"
   " SELECT id, pg_notify('bg_jobs', $1) FROM j"},
  {"bgj_schedule_prune",
   "DELETE FROM bg_jobs_schedule WHERE name = $1 AND scheduled_at <"
   " (SELECT scheduled_at FROM bg_jobs_schedule WHERE name = $1"
   "  ORDER BY scheduled_at DESC LIMIT 1 OFFSET 100)"},
  {"bgj_schedule_state",
   "SELECT " BG_JOBS_MS("s.scheduled_at") ", s.job_id,"
   " EXISTS (SELECT 1 FROM jobs WHERE id = s.job_id),"
   " " BG_JOBS_MS("coalesce((SELECT succeeded_at FROM jobs_succeeded"
   "   WHERE id = s.job_id), (SELECT failed_at FROM jobs_failed"
   "   WHERE id = s.job_id))")
   " FROM bg_jobs_schedule s WHERE s.name = $1"
   " ORDER BY s.scheduled_at DESC LIMIT 1"},
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
  {"bgj_prune_succeeded_age",
   "DELETE FROM jobs_succeeded WHERE id = ANY (ARRAY(SELECT id FROM jobs_succeeded"
   " WHERE succeeded_at < " BG_JOBS_TS("$1")
   " ORDER BY succeeded_at LIMIT $2))"},
  {"bgj_prune_failed_age",
   "DELETE FROM jobs_failed WHERE id = ANY (ARRAY(SELECT id FROM jobs_failed"
   " WHERE failed_at < " BG_JOBS_TS("$1") " ORDER BY failed_at LIMIT $2))"},
  // Count-based pruning: the newest rows beyond the count kept ($1) end
  // at a cutoff row; batches then delete from the oldest end up to it.
  {"bgj_prune_succeeded_cutoff",
   "SELECT " BG_JOBS_MS("succeeded_at") ", id FROM jobs_succeeded"
   " ORDER BY succeeded_at DESC, id DESC OFFSET $1 LIMIT 1"},
  {"bgj_prune_succeeded_upto",
   "DELETE FROM jobs_succeeded WHERE id = ANY (ARRAY(SELECT id"
   " FROM jobs_succeeded WHERE (succeeded_at, id) <= (" BG_JOBS_TS("$1")
   ", $2::bigint) ORDER BY succeeded_at LIMIT $3))"},
  {"bgj_prune_failed_cutoff",
   "SELECT " BG_JOBS_MS("failed_at") ", id FROM jobs_failed"
   " ORDER BY failed_at DESC, id DESC OFFSET $1 LIMIT 1"},
  {"bgj_prune_failed_upto",
   "DELETE FROM jobs_failed WHERE id = ANY (ARRAY(SELECT id"
   " FROM jobs_failed WHERE (failed_at, id) <= (" BG_JOBS_TS("$1")
   ", $2::bigint) ORDER BY failed_at LIMIT $3))"},
  {"bgj_increment",
   "UPDATE jobs SET attempts = attempts + 1 WHERE id = $1"
   " RETURNING " BG_JOBS_PG_JOB_COLUMNS},
  {"bgj_enqueued",
   "SELECT " BG_JOBS_PG_JOB_COLUMNS " FROM jobs"
   " WHERE name = $1 AND reserved_by IS NULL ORDER BY available_at, id"},
  {"bgj_running",
   "SELECT " BG_JOBS_PG_JOB_COLUMNS " FROM jobs"
   " WHERE reserved_by IS NOT NULL ORDER BY id"},
  {"bgj_running_by",
   "SELECT " BG_JOBS_PG_JOB_COLUMNS " FROM jobs"
   " WHERE reserved_by = $1 ORDER BY id"},
  {"bgj_succeeded",
   "SELECT id, name, payload, attempts, " BG_JOBS_MS("created_at") ", "
   BG_JOBS_MS("available_at") ", " BG_JOBS_MS("succeeded_at") ", priority"
   " FROM jobs_succeeded ORDER BY succeeded_at DESC, id DESC LIMIT $1"},
  {"bgj_failed",
   "SELECT id, name, payload, attempts, exception, " BG_JOBS_MS("created_at")
   ", " BG_JOBS_MS("available_at") ", " BG_JOBS_MS("failed_at")
   ", priority, cancelled FROM jobs_failed"
   " ORDER BY failed_at DESC, id DESC LIMIT $1"},
  {"bgj_stats_live",
   "SELECT"
   " (SELECT count(*) FROM jobs"
   "   WHERE reserved_by IS NULL AND available_at <= " BG_JOBS_TS("$1") "),"
   " (SELECT count(*) FROM jobs"
   "   WHERE reserved_by IS NULL AND available_at > " BG_JOBS_TS("$1") "),"
   " (SELECT count(*) FROM jobs WHERE reserved_by IS NOT NULL)"},
};
// clang-format on

nlohmann::json parse_payload(const pqxx::field& f) {
  auto text = f.c_str();
  auto result =
      exceeds_payload_depth(std::string_view{text, f.size()})
          ? nlohmann::json(nlohmann::json::value_t::discarded)
          : nlohmann::json::parse(text, text + f.size(), nullptr, false);
  // Written outside bg_jobs (not JSON, or nested beyond the limit): keep the
  // text as a string, so that the row can still be handled.
  if (result.is_discarded())
    return nlohmann::json(std::string{text, f.size()});
  return result;
}

timestamp field_time(const pqxx::field& f) {
  return from_unix_ms(f.as<int64_t>());
}

job read_job(const pqxx::row& r) {
  job j;
  j.id = r[0].as<int64_t>();
  j.name = r[1].as<std::string>();
  j.payload = parse_payload(r[2]);
  j.attempts = r[3].as<int>();
  j.created_at = field_time(r[4]);
  j.available_at = field_time(r[5]);
  if (!r[6].is_null())
    j.reserved_at = field_time(r[6]);
  if (!r[7].is_null())
    j.reserved_by = r[7].as<std::string>();
  if (!r[8].is_null())
    j.last_error = r[8].as<std::string>();
  j.priority = r[9].as<int>();
  if (!r[10].is_null())
    j.cancel_reason = r[10].as<std::string>();
  return j;
}

/// Sorts by priority, available_at, then id: the order of a claim, which
/// RETURNING does not keep.
void sort_in_claim_order(std::vector<job>& jobs) {
  std::sort(jobs.begin(), jobs.end(), [](const job& a, const job& b) {
    return std::tie(a.priority, a.available_at, a.id) <
           std::tie(b.priority, b.available_at, b.id);
  });
}

/// Reads job rows; `claim_order` sorts them by available_at, then id (the
/// order of a claim, which RETURNING does not keep), else they stay in the
/// statement's order.
std::vector<job> read_jobs(const pqxx::result& res, bool claim_order = true) {
  std::vector<job> jobs;
  jobs.reserve(res.size());
  for (const auto& r : res)
    jobs.emplace_back(read_job(r));
  if (claim_order)
    sort_in_claim_order(jobs);
  return jobs;
}

const char* nullable(const std::optional<std::string>& x) {
  return x ? x->c_str() : nullptr;
}

/// Validates a connection string with libpq and adds a connect timeout.
caf::expected<std::string> prepare_url(const std::string& url) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (!opts) {
    std::string msg = err ? err : "unknown error";
    PQfreemem(err);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' '))
      msg.pop_back();
    return make_error(errc::invalid_argument,
                      "malformed PostgreSQL connection string: " + msg);
  }
  bool has_timeout = false;
  for (auto o = opts; o->keyword; ++o)
    if (std::string{o->keyword} == "connect_timeout" && o->val)
      has_timeout = true;
  PQconninfoFree(opts);
  if (has_timeout)
    return url;
  bool is_uri =
      url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0;
  if (!is_uri)
    return url + " connect_timeout=10";
  return url + (url.find('?') == std::string::npos ? "?" : "&") +
         "connect_timeout=10";
}

/// Turns a libpqxx exception into an `errc` error.
caf::error failure(const char* what) {
  try {
    throw;
  } catch (const pqxx::broken_connection& e) {
    return make_error(errc::connection_lost,
                      std::string{what} + ": connection lost: " + e.what());
  } catch (const pqxx::sql_error& e) {
    std::string msg = std::string{what} + ": " + e.what();
    while (!msg.empty() && msg.back() == '\n')
      msg.pop_back();
    const auto& state = e.sqlstate();
    if (state == "42P01")
      return make_error(errc::schema_missing, msg + " (run migrate_up)");
    if (state.rfind("57P", 0) == 0 || state.rfind("08", 0) == 0)
      return make_error(errc::connection_lost, msg);
    if (state == "40001" || state == "40P01" || state == "55P03")
      return make_error(errc::database_locked, msg);
    return make_error(errc::database_error, msg);
  } catch (const pqxx::in_doubt_error& e) {
    return make_error(errc::connection_lost,
                      std::string{what} + ": outcome unknown: " + e.what());
  } catch (const std::exception& e) {
    return make_error(errc::database_error,
                      std::string{what} + ": " + e.what());
  }
}

/// Stores `j` for the unique `request` in `tx` unless an equal job counts;
/// returns the stored job, or the one that counts with `conflict` set. The
/// key's primary key makes concurrent enqueues wait for each other: the
/// first one to commit stores its job, the others find it.
job insert_unique(pqxx::transaction_base& tx, job j, const std::string& text,
                  const job_request& request, timestamp now,
                  const std::string& channel) {
  auto key = request.unique_key();
  auto& u = *request.unique();
  auto now_ms = to_unix_ms(now);
  // A key stops counting once it expired or its job left the states that
  // count (waiting and running, and succeeded where asked).
  tx.exec_params(
      "DELETE FROM bg_jobs_unique WHERE unique_key = $1 AND ("
      " (expires_at IS NOT NULL AND expires_at <= " BG_JOBS_TS(
          "$2") ")"
                " OR NOT (EXISTS (SELECT 1 FROM jobs WHERE id = job_id)"
                "   OR (counts_succeeded"
                "       AND EXISTS (SELECT 1 FROM jobs_succeeded WHERE id = job_id))))",
      key, now_ms);
  // -1: the key never expires.
  int64_t expires = u.period ? to_unix_ms(now + *u.period) : -1;
  auto claimed = tx.exec_params(
      "INSERT INTO bg_jobs_unique (unique_key, job_id, expires_at,"
      " counts_succeeded) VALUES ($1, 0, CASE WHEN $2::bigint < 0 THEN NULL"
      " ELSE " BG_JOBS_TS(
          "$2") " END, $3)"
                " ON CONFLICT (unique_key) DO NOTHING RETURNING 1",
      key, expires, u.include_succeeded);
  if (claimed.empty()) {
    auto found = tx.exec_params(
        "SELECT " BG_JOBS_PG_JOB_COLUMNS " FROM jobs WHERE id ="
        " (SELECT job_id FROM bg_jobs_unique WHERE unique_key = $1)"
        " UNION ALL SELECT id, name, payload, attempts, " BG_JOBS_MS("created_at") ", " BG_JOBS_MS(
            "available_at") ", NULL, NULL, NULL, priority, NULL"
                            " FROM jobs_succeeded WHERE id ="
                            " (SELECT job_id FROM bg_jobs_unique WHERE unique_key = $1)",
        key);
    if (found.empty())
      throw std::runtime_error("unique key '" + printable(key) +
                               "' names a job that is gone");
    auto existing = read_job(found[0]);
    existing.conflict = true;
    return existing;
  }
  j.id =
      tx.exec_params("INSERT INTO jobs (name, payload, attempts, created_at,"
                     " available_at, priority) VALUES ($1, $2, 0, " BG_JOBS_TS(
                         "$3") ", " BG_JOBS_TS("$4") ", $5) RETURNING id",
                     j.name, text, now_ms, to_unix_ms(j.available_at),
                     j.priority)[0][0]
          .as<int64_t>();
  tx.exec_params("UPDATE bg_jobs_unique SET job_id = $2 WHERE unique_key = $1",
                 key, j.id);
  tx.exec_params("SELECT pg_notify($1, $2)", channel, j.name);
  return j;
}

} // namespace

// -- connection
// ----------------------------------------------------------------

/// Collects the job names of `bg_jobs` notifications.
class wakeup_receiver : public pqxx::notification_receiver {
public:
  wakeup_receiver(pqxx::connection_base& c, const std::string& channel,
                  std::vector<std::string>& out)
      : pqxx::notification_receiver(c, channel), out_(out) {}

  void operator()(const std::string& payload, int) override {
    out_.push_back(payload);
  }

private:
  std::vector<std::string>& out_;
};

/// The store's clock as seen from this process: the system clock plus the
/// offset to the server's `clock_timestamp()`, measured when a connection
/// opens and at every heartbeat. Shared by the connections of one factory
/// and the node that uses them, so that leases, heartbeats, rescues and
/// due times are compared on the server's clock whatever this host's says.
class server_clock : public bg_jobs::clock {
public:
  timestamp now() const override {
    return from_unix_ms(to_unix_ms(clock::system()->now()) + offset_ms_.load());
  }

  /// Measures the offset on `conn` (outside a transaction).
  void measure(pqxx::connection& conn) {
    auto before = to_unix_ms(clock::system()->now());
    pqxx::nontransaction tx{conn};
    auto server =
        tx.exec("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8")
            [0][0]
            .as<int64_t>();
    auto after = to_unix_ms(clock::system()->now());
    offset_ms_ = server - (before + (after - before) / 2);
  }

private:
  std::atomic<int64_t> offset_ms_{0};
};

struct postgres_adapter::impl {
  postgres_options options;
  /// Set unless a test pinned the clock: then `options.clock` is used.
  std::shared_ptr<server_clock> server_time;
  std::unique_ptr<pqxx::connection> conn;
  std::vector<std::string> wakeups;
  std::unique_ptr<wakeup_receiver> receiver;
  /// The notification channel: `bg_jobs`, or `bg_jobs.<schema>`.
  std::string channel = notify_channel;

  int64_t now_ms() const {
    return to_unix_ms(server_time ? server_time->now() : options.clock->now());
  }

  /// Where this connection's next claim starts its index scan: after the
  /// last job its previous claim took, while claims get all they ask for
  /// (a backlog). The index entries of rows claimed since the last VACUUM
  /// are dead and would be skipped one by one from the start of the index;
  /// after the floor they lie behind the scan. A job that sorts before the
  /// floor (a more urgent one enqueued since, or one released with its old
  /// time) is found by a full scan: one runs at least every 100 ms, and
  /// whenever a claim from the floor comes up short.
  struct claim_floor {
    std::string claimant;
    int priority = 0;
    int64_t at_ms = 0;
    int64_t id = 0;
    std::chrono::steady_clock::time_point full_scan_at;
  };
  std::optional<claim_floor> floor;

  /// Where count-based pruning of one history table stops: the row beyond
  /// the newest `kept` (none: the table held no more). Finding it walks
  /// `kept` entries of an index, up to half a second at 100,000 on a busy
  /// server, so a cutoff is used until its rows are gone (a round that
  /// stops on its budget goes on with it). Newer rows only move the true
  /// cutoff forward, so deleting up to an older one keeps more rows (rows
  /// that leave the table otherwise, by a retry or a delete, meanwhile can
  /// make it keep as many fewer).
  struct prune_cutoff {
    std::optional<std::pair<int64_t, int64_t>> row;
    int64_t kept = 0;
    bool exhausted = false;
  };
  std::map<std::string, prune_cutoff> cutoffs;

  /// Deletes up to `batch` rows of `table` beyond the newest `keep`.
  int64_t prune_beyond(pqxx::transaction_base& tx, const std::string& table,
                       int64_t keep, int batch) {
    auto found = cutoffs.find(table);
    if (found == cutoffs.end() || found->second.kept != keep ||
        found->second.exhausted) {
      auto r = tx.exec_prepared("bgj_prune_" + table + "_cutoff", keep);
      prune_cutoff c;
      if (!r.empty())
        c.row = std::make_pair(r[0][0].as<int64_t>(), r[0][1].as<int64_t>());
      c.kept = keep;
      c.exhausted = !c.row;
      found = cutoffs.insert_or_assign(table, c).first;
    }
    auto& c = found->second;
    if (!c.row)
      return 0;
    int64_t n = tx.exec_prepared("bgj_prune_" + table + "_upto", c.row->first,
                                 c.row->second, batch)
                    .affected_rows();
    // Short of a batch: every row up to the cutoff is gone.
    if (n < batch)
      c.exhausted = true;
    return n;
  }

  static std::string claimant_of(const reserve_params& p,
                                 const std::string& names) {
    return p.reserved_by + '\n' + p.queue + '\n' + names;
  }

  /// The floor to claim from, if any.
  const claim_floor* floor_for(const reserve_params& p,
                               const std::string& names) const {
    if (!floor || floor->claimant != claimant_of(p, names) ||
        std::chrono::steady_clock::now() - floor->full_scan_at >
            std::chrono::milliseconds{100})
      return nullptr;
    return &*floor;
  }

  /// Notes a claim (`jobs` in claim order); `full_scan`: it started from
  /// the beginning of the index.
  void claimed(const reserve_params& p, const std::string& names,
               const std::vector<job>& jobs, bool full_scan) {
    if (static_cast<int>(jobs.size()) < p.limit || jobs.empty()) {
      floor.reset();
      return;
    }
    auto at =
        full_scan ? std::chrono::steady_clock::now() : floor->full_scan_at;
    auto& last = jobs.back();
    floor = claim_floor{claimant_of(p, names), last.priority,
                        to_unix_ms(last.available_at), last.id, at};
  }

  /// Completes a claim whose `jobs` came from the floor `f` (or from the
  /// start of the index, without one): a claim from the floor that came
  /// up short takes the rest from the start. Leaves `jobs` in claim order
  /// and notes the next floor.
  void finish_claim(pqxx::transaction_base& tx, const reserve_params& p,
                    const std::string& names, const claim_floor* f,
                    std::vector<job>& jobs) {
    auto want = p.limit - static_cast<int>(jobs.size());
    if (f && want > 0)
      for (auto& j :
           read_jobs(tx.exec_prepared("bgj_reserve", now_ms(), p.reserved_by,
                                      names, want, p.queue),
                     false))
        jobs.push_back(std::move(j));
    sort_in_claim_order(jobs);
    claimed(p, names, jobs, f == nullptr || want > 0);
  }

  /// Whether this connection's planner settings serve the claim.
  bool claim_plan_pinned = false;

  /// Pins the plan of the claim on this connection (once; outside a
  /// transaction block, so that it lasts as long as the connection). The
  /// claim must walk `jobs_claim_idx` in order and stop after its limit:
  /// that costs what it takes, whatever the table holds. After an ANALYZE
  /// that saw a nearly empty `jobs` (right after a vacuum, in a queue
  /// that keeps up), the planner otherwise prefers reading every waiting
  /// row through a bitmap and sorting them, or scanning the table, which
  /// costs the whole backlog, or the whole bloat, per claim until the next
  /// ANALYZE. With these off, the ordered index scan is the only plan left
  /// for the claim; on this connection the other statements (completions
  /// and releases by primary key or owner) have an index to use as well.
  void pin_claim_plan(pqxx::transaction_base& tx) {
    if (claim_plan_pinned)
      return;
    tx.exec("SET enable_seqscan = off; SET enable_bitmapscan = off;"
            " SET enable_sort = off");
    claim_plan_pinned = true;
  }

  void prepare_all() {
    for (auto& s : statements)
      conn->prepare(s.name, on_channel(s.sql));
  }

  /// `sql` with its notifications on this store's channel.
  std::string on_channel(const char* sql) const {
    std::string text{sql};
    const std::string from = "pg_notify('bg_jobs',";
    const std::string to = "pg_notify('" + channel + "',";
    for (auto at = text.find(from); at != std::string::npos;
         at = text.find(from, at + to.size()))
      text.replace(at, from.size(), to);
    return text;
  }

  /// Runs `f` in a transaction and commits; maps exceptions to errors.
  template <class F>
  auto in_transaction(const char* what, F f)
      -> caf::expected<decltype(f(std::declval<pqxx::work&>()))> {
    try {
      pqxx::work tx{*conn};
      auto result = f(tx);
      tx.commit();
      return result;
    } catch (...) {
      return failure(what);
    }
  }

  /// Runs `f`, a single statement, outside a transaction block: it is
  /// atomic by itself, and BEGIN and COMMIT would cost two round trips.
  template <class F>
  auto in_statement(const char* what, F f)
      -> caf::expected<decltype(f(std::declval<pqxx::transaction_base&>()))> {
    try {
      pqxx::nontransaction tx{*conn};
      return f(tx);
    } catch (...) {
      return failure(what);
    }
  }

  caf::expected<std::vector<job>> jobs_of(const char* what, const char* stmt,
                                          const std::string* arg,
                                          bool claim_order = true) {
    return in_statement(what, [&](pqxx::transaction_base& tx) {
      return read_jobs(arg ? tx.exec_prepared(stmt, *arg)
                           : tx.exec_prepared(stmt),
                       claim_order);
    });
  }
};

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
  if (*version > known_version)
    return make_error(errc::schema_too_new,
                      "the database has bg_jobs schema version " +
                          std::to_string(*version) +
                          "; this bg_jobs understands up to " +
                          std::to_string(known_version));
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

// -- schema
// ----------------------------------------------------------------------

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
      tx.exec(migrations[v - 1]);
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
    tx.exec("DROP TABLE IF EXISTS bg_jobs_actions, bg_jobs_leases,"
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

// -- writes
// ----------------------------------------------------------------------

caf::expected<void> postgres_adapter::delete_job(int64_t job_id) {
  auto r = impl_->in_transaction("deleting a job", [&](pqxx::work& tx) {
    for (auto sql : {"DELETE FROM jobs WHERE id = $1 AND reserved_by IS NULL",
                     "DELETE FROM jobs_succeeded WHERE id = $1",
                     "DELETE FROM jobs_failed WHERE id = $1"})
      if (tx.exec_params(sql, job_id).affected_rows() > 0)
        return 0;
    return tx.exec_params("SELECT 1 FROM jobs WHERE id = $1", job_id).empty()
               ? 2
               : 1;
  });
  if (!r)
    return std::move(r.error());
  if (*r == 1)
    return make_error(errc::invalid_state,
                      "job " + std::to_string(job_id) +
                          " is running; it cannot be deleted");
  if (*r == 2)
    return make_error(errc::job_not_found,
                      "no job " + std::to_string(job_id) + " to delete");
  return caf::unit;
}

caf::expected<job> postgres_adapter::enqueue_job(const job_request& request) {
  auto now = impl_->options.clock->now();
  auto prepared = detail::prepare_job(request, now);
  if (!prepared)
    return std::move(prepared.error());
  auto& [j, text] = *prepared;
  if (request.unique())
    return impl_->in_transaction(
        "enqueueing a unique job", [&](pqxx::work& tx) {
          return insert_unique(tx, std::move(j), text, request, now,
                               impl_->channel);
        });
  auto id =
      impl_->in_statement("enqueueing a job", [&](pqxx::transaction_base& tx) {
        return tx
            .exec_prepared("bgj_enqueue", j.name, text, to_unix_ms(now),
                           to_unix_ms(j.available_at), j.priority)[0][0]
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
  auto& [j, text] = *prepared;
  // In the caller's transaction the tables are named with their schema.
  auto insert =
      prefixed_sql(pg_enqueue_in, schema.empty() ? schema : schema + ".");
  auto channel = schema.empty() ? std::string{notify_channel}
                                : std::string{notify_channel} + "." + schema;
  try {
    j.id = tx.exec_params(insert, j.name, text, to_unix_ms(now),
                          to_unix_ms(j.available_at), j.priority)[0][0]
               .as<int64_t>();
    tx.exec_params("SELECT pg_notify($1, $2)", channel, j.name);
  } catch (...) {
    return failure("enqueueing a job in the caller's transaction");
  }
  return j;
}

caf::expected<std::vector<int64_t>>
postgres_adapter::enqueue_jobs(const std::vector<job_request>& requests) {
  auto now = impl_->options.clock->now();
  auto prepared = detail::prepare_jobs(requests, now);
  if (!prepared)
    return std::move(prepared.error());
  auto& jobs = *prepared;
  if (requests.empty())
    return std::vector<int64_t>{};
  if (std::any_of(requests.begin(), requests.end(),
                  [](auto& r) { return r.unique().has_value(); }))
    // One at a time, each unique request checked against its key; still
    // one transaction, all or none.
    return impl_->in_transaction("enqueueing jobs", [&](pqxx::work& tx) {
      std::vector<int64_t> ids;
      for (size_t i = 0; i < requests.size(); ++i) {
        auto& [j, text] = jobs[i];
        if (requests[i].unique()) {
          ids.push_back(insert_unique(tx, std::move(j), text, requests[i], now,
                                      impl_->channel)
                            .id);
          continue;
        }
        ids.push_back(
            tx.exec_prepared("bgj_enqueue", j.name, text, to_unix_ms(now),
                             to_unix_ms(j.available_at), j.priority)[0][0]
                .as<int64_t>());
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
        for (auto& [name, args] : runs) {
          const char* sql = nullptr;
          for (auto& def : statements)
            if (std::string_view{def.name} == name)
              sql = def.sql;
          // The statement's own text, prepared under a name of its own:
          // EXPLAIN takes no bound parameters.
          tx.exec(std::string{"PREPARE bgj_explain AS "} + sql);
          std::string plan;
          for (const auto& row :
               tx.exec("EXPLAIN EXECUTE bgj_explain(" + args + ")"))
            plan += row[0].as<std::string>() + "\n";
          tx.exec("DEALLOCATE bgj_explain");
          plans.push_back(std::move(plan));
        }
        tx.exec("RESET plan_cache_mode");
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
  return impl_->jobs_of("releasing a node's reservations", "bgj_release_node",
                        &prefix);
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
          if (h.who.instance != me.instance &&
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

caf::expected<std::vector<known_queue>> postgres_adapter::known_queues() {
  return impl_->in_statement("reading queues", [&](pqxx::transaction_base& tx) {
    std::vector<std::tuple<std::string, std::string, std::string, int>> rows;
    for (const auto& r :
         tx.exec("SELECT queue, job_name, node, concurrency"
                 " FROM bg_jobs_queues ORDER BY queue, job_name, node"))
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
  return impl_->in_statement("rescuing jobs", [&](pqxx::transaction_base& tx) {
    return read_jobs(tx.exec_prepared("bgj_rescue", cutoff));
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
           c.reserved_by == cs.front().reserved_by;
  return same;
}

/// The ids of `cs` as a PostgreSQL array literal.
std::string id_array(const std::vector<completion>& cs) {
  std::string ids = "{";
  for (auto& c : cs)
    ids += (ids.size() > 1 ? "," : "") + std::to_string(c.job_id);
  ids += '}';
  return ids;
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

caf::expected<complete_reserve_result> postgres_adapter::complete_and_reserve(
    const std::vector<completion>& completions, const reserve_params& params) {
  if (!successes_of_one_owner(completions) || params.job_names.empty())
    return db_adapter::complete_and_reserve(completions, params);
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
          if (row[11].as<bool>())
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
  auto& name = params.request.name();
  return impl_->in_transaction(
      "enqueueing a scheduled job", [&](pqxx::work& tx) -> std::optional<job> {
        // Serializes nodes scheduling the same job; released on commit.
        tx.exec_prepared("bgj_schedule_lock", name);
        auto latest = tx.exec_prepared("bgj_schedule_latest", name);
        bool as_seen = latest.empty() != params.previous.has_value() &&
                       (latest.empty() || latest[0][0].as<int64_t>() ==
                                              to_unix_ms(*params.previous));
        if (!as_seen)
          return std::nullopt;
        if (!tx.exec_params("SELECT 1 FROM bg_jobs_paused"
                            " WHERE kind = 'schedule' AND name = $1",
                            name)
                 .empty())
          return std::nullopt; // paused: nothing is enqueued
        job j;
        j.name = name;
        j.payload = params.request.payload();
        j.created_at = from_unix_ms(now);
        j.available_at = params.occurrence;
        j.priority = params.request.priority();
        j.id = tx.exec_prepared("bgj_schedule_insert", name, *text, now,
                                to_unix_ms(params.occurrence), j.priority)[0][0]
                   .as<int64_t>();
        tx.exec_prepared("bgj_schedule_prune", name);
        return j;
      });
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
        return run;
      });
}

// -- reads
// -----------------------------------------------------------------------

caf::expected<std::vector<job>>
postgres_adapter::get_running_jobs_of_owner(const std::string& owner) {
  return impl_->jobs_of("reading jobs", "bgj_running_by", &owner, false);
}

namespace {

} // namespace

namespace {

/// The size of a history table as the planner sees it: its row estimate
/// scaled to the table's current number of pages.
struct history_size {
  double rows = 0;
  bool estimated = false;
};

history_size size_of(pqxx::transaction_base& tx, const char* table) {
  auto r = tx.exec_params(
      "SELECT c.reltuples::float8, c.relpages::float8,"
      " (pg_relation_size(c.oid) / current_setting('block_size')::int)::float8"
      " FROM pg_class c WHERE c.oid = $1::regclass",
      table)[0];
  auto tuples = r[0].as<double>(), pages = r[1].as<double>(),
       now_pages = r[2].as<double>();
  history_size size;
  // Never analyzed (-1): about 30 history rows to a page.
  size.rows = tuples < 0 ? now_pages * 30
              : pages > 0 ? tuples / pages * now_pages
                          : tuples;
  size.estimated = size.rows > job_stats::exact_history_rows;
  return size;
}

/// The share of each job name among a history table's rows, from the
/// planner's most common values (empty before the first ANALYZE).
std::map<std::string, double> name_shares(pqxx::transaction_base& tx,
                                          const char* table) {
  std::map<std::string, double> shares;
  auto rows = tx.exec_params(
      "SELECT m.v, m.f FROM pg_stats s"
      " JOIN pg_class c ON c.oid = $1::regclass"
      " JOIN pg_namespace n ON n.oid = c.relnamespace"
      " CROSS JOIN LATERAL unnest(s.most_common_vals::text::text[],"
      "   s.most_common_freqs) AS m(v, f)"
      " WHERE s.schemaname = n.nspname AND s.tablename = c.relname"
      "   AND s.attname = 'name'",
      table);
  for (const auto& r : rows)
    shares[r[0].as<std::string>()] = r[1].as<double>();
  return shares;
}

/// The share of cancelled rows in `jobs_failed`, from the statistics.
double cancelled_share(pqxx::transaction_base& tx) {
  auto rows = tx.exec(
      "SELECT m.v, m.f FROM pg_stats s"
      " JOIN pg_class c ON c.oid = 'jobs_failed'::regclass"
      " JOIN pg_namespace n ON n.oid = c.relnamespace"
      " CROSS JOIN LATERAL unnest(s.most_common_vals::text::boolean[],"
      "   s.most_common_freqs) AS m(v, f)"
      " WHERE s.schemaname = n.nspname AND s.tablename = c.relname"
      "   AND s.attname = 'cancelled'");
  for (const auto& r : rows)
    if (r[0].as<bool>())
      return r[1].as<double>();
  return 0;
}

int64_t rounded(double x) { return static_cast<int64_t>(x + 0.5); }

} // namespace

// Counts read in one REPEATABLE READ snapshot. The history tables can hold
// millions of rows: counting them would scan them whole at every refresh
// of a dashboard, so past `exact_history_rows` they are estimated.
caf::expected<job_stats> postgres_adapter::stats() {
  try {
    pqxx::transaction<pqxx::repeatable_read,
                      pqxx::read_only>
        tx{*impl_->conn};
    auto r = tx.exec_prepared("bgj_stats_live", impl_->now_ms())[0];
    job_stats st;
    st.available = r[0].as<int64_t>();
    st.scheduled = r[1].as<int64_t>();
    st.reserved = r[2].as<int64_t>();
    auto succeeded = size_of(tx, "jobs_succeeded");
    if (succeeded.estimated)
      st.succeeded = rounded(succeeded.rows);
    else
      st.succeeded =
          tx.exec("SELECT count(*) FROM jobs_succeeded")[0][0].as<int64_t>();
    auto failed = size_of(tx, "jobs_failed");
    if (failed.estimated) {
      auto share = cancelled_share(tx);
      st.cancelled = rounded(failed.rows * share);
      st.failed = rounded(failed.rows) - st.cancelled;
    } else {
      auto c = tx.exec("SELECT count(*) FILTER (WHERE NOT cancelled),"
                       " count(*) FILTER (WHERE cancelled) FROM jobs_failed")[0];
      st.failed = c[0].as<int64_t>();
      st.cancelled = c[1].as<int64_t>();
    }
    st.history_estimated = succeeded.estimated || failed.estimated;
    tx.commit();
    return st;
  } catch (...) {
    return failure("reading job counts");
  }
}

// -- job control
// -----------------------------------------------------------------

namespace {

// Job records: the same 14 columns from each table ($1 is now in ms).
// clang-format off
#define BG_JOBS_PG_RECORD_OF_JOBS                                              \
  "SELECT id, name, payload, priority, attempts,"                              \
  " CASE WHEN reserved_by IS NOT NULL THEN 2"                                  \
  "      WHEN available_at > " BG_JOBS_TS("$1") " THEN 1 ELSE 0 END, "         \
  BG_JOBS_MS("created_at") ", " BG_JOBS_MS("available_at") ", "                \
  BG_JOBS_MS("reserved_at") ", reserved_by, NULL::bigint, last_error,"         \
  " cancel_reason, errors::text FROM jobs"
#define BG_JOBS_PG_RECORD_OF_SUCCEEDED                                         \
  "SELECT id, name, payload, priority, attempts, 3, "                          \
  BG_JOBS_MS("created_at") ", " BG_JOBS_MS("available_at") ", NULL::bigint,"   \
  " NULL, " BG_JOBS_MS("succeeded_at") ", NULL, NULL, NULL"                    \
  " FROM jobs_succeeded"
#define BG_JOBS_PG_RECORD_OF_FAILED                                            \
  "SELECT id, name, payload, priority, attempts,"                              \
  " CASE WHEN cancelled THEN 5 ELSE 4 END, " BG_JOBS_MS("created_at") ", "     \
  BG_JOBS_MS("available_at") ", NULL::bigint, NULL, "                          \
  BG_JOBS_MS("failed_at") ", exception, NULL, errors::text FROM jobs_failed"
const char pg_record_by_id[] = BG_JOBS_PG_RECORD_OF_JOBS
    " WHERE id = $2"
    " UNION ALL " BG_JOBS_PG_RECORD_OF_SUCCEEDED " WHERE id = $2"
    " UNION ALL " BG_JOBS_PG_RECORD_OF_FAILED " WHERE id = $2";

#define BG_JOBS_PG_RETRY_FROM(m)                                               \
  " INSERT INTO jobs (id, name, payload, attempts, created_at, available_at,"  \
  " priority, errors, last_error)"                                             \
  " SELECT id, name, payload, 0, created_at, " BG_JOBS_TS("$2") ", priority,"  \
  " errors, exception FROM " m

const char pg_stats_live_by_name[] =
    "SELECT name,"
    "   count(*) FILTER (WHERE reserved_by IS NULL"
    "     AND available_at <= " BG_JOBS_TS("$1") "),"
    "   count(*) FILTER (WHERE reserved_by IS NULL"
    "     AND available_at > " BG_JOBS_TS("$1") "),"
    "   count(*) FILTER (WHERE reserved_by IS NOT NULL), "
    BG_JOBS_MS("min(available_at) FILTER (WHERE reserved_by IS NULL"
               "     AND available_at <= " BG_JOBS_TS("$1") ")")
    " FROM jobs GROUP BY name";

// A paused schedule's waiting occurrence is skipped (cancelled).
const char pg_skip_paused_schedule[] =
    "WITH m AS (DELETE FROM jobs WHERE reserved_by IS NULL AND id = ANY"
    "   (ARRAY(SELECT job_id FROM bg_jobs_schedule WHERE name = $1))"
    "   RETURNING *)"
    " INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
    "   created_at, available_at, failed_at, priority, cancelled, errors)"
    " SELECT id, name, payload, attempts, 'skipped: the schedule is paused',"
    "   created_at, available_at, " BG_JOBS_TS("$2") ", priority, true, errors"
    " FROM m";
// clang-format on

job_record read_record(const pqxx::row& r) {
  job_record rec;
  rec.id = r[0].as<int64_t>();
  rec.name = r[1].as<std::string>();
  rec.payload = parse_payload(r[2]);
  rec.priority = r[3].as<int>();
  rec.attempts = r[4].as<int>();
  rec.state = static_cast<job_state>(r[5].as<int>());
  rec.created_at = field_time(r[6]);
  rec.available_at = field_time(r[7]);
  if (!r[8].is_null())
    rec.reserved_at = field_time(r[8]);
  if (!r[9].is_null())
    rec.reserved_by = r[9].as<std::string>();
  if (!r[10].is_null())
    rec.finished_at = field_time(r[10]);
  if (!r[11].is_null())
    rec.error = r[11].as<std::string>();
  if (!r[12].is_null())
    rec.cancel_reason = r[12].as<std::string>();
  if (!r[13].is_null()) {
    auto errors = parse_payload(r[13]);
    if (errors.is_array())
      rec.errors = std::move(errors);
  }
  return rec;
}

std::optional<job_record> record_in(pqxx::transaction_base& tx, int64_t now,
                                    int64_t job_id) {
  auto r = tx.exec_params(pg_record_by_id, now, job_id);
  if (r.empty())
    return std::nullopt;
  return read_record(r[0]);
}

/// The outcome of a state change: the record after it, or why not.
struct change_result {
  std::optional<job_record> record;
  bool changed = false;
};

caf::expected<job_record> settle(caf::expected<change_result> r, int64_t id,
                                 const char* op) {
  if (!r)
    return std::move(r.error());
  if (!r->record)
    return make_error(errc::job_not_found, "no job " + std::to_string(id));
  if (!r->changed)
    return make_error(errc::invalid_state,
                      "job " + std::to_string(id) + " is " +
                          to_string(r->record->state) + "; " + op);
  return std::move(*r->record);
}

/// The statement of one page of `list_jobs`: $1 now, $2 names (JSON) or
/// NULL, $3 to $5 the key after which the page starts, $6 the row limit.
std::string pg_list(job_state state, bool desc, bool after) {
  std::string from, where, order, cmp;
  switch (state) {
  case job_state::waiting:
  case job_state::scheduled:
    from = BG_JOBS_PG_RECORD_OF_JOBS;
    where = state == job_state::waiting
                ? "reserved_by IS NULL AND available_at <= " BG_JOBS_TS("$1")
                : "reserved_by IS NULL AND available_at > " BG_JOBS_TS("$1");
    order = "priority, available_at, id";
    cmp = "(priority, available_at, id) %s ($3::integer, " BG_JOBS_TS(
        "$4") ", $5::bigint)";
    break;
  case job_state::running:
    from = BG_JOBS_PG_RECORD_OF_JOBS;
    where = "reserved_by IS NOT NULL";
    order = "reserved_at, id";
    cmp = "(reserved_at, id) %s (" BG_JOBS_TS("$4") ", $5::bigint)";
    break;
  case job_state::succeeded:
    from = BG_JOBS_PG_RECORD_OF_SUCCEEDED;
    where = "true";
    order = "succeeded_at, id";
    cmp = "(succeeded_at, id) %s (" BG_JOBS_TS("$4") ", $5::bigint)";
    break;
  case job_state::failed:
  case job_state::cancelled:
    from = BG_JOBS_PG_RECORD_OF_FAILED;
    where = state == job_state::failed ? "NOT cancelled" : "cancelled";
    order = "failed_at, id";
    cmp = "(failed_at, id) %s (" BG_JOBS_TS("$4") ", $5::bigint)";
    break;
  }
  // Every parameter is typed even where the state leaves it unused.
  auto sql = from + " WHERE " + where +
             " AND ($1::bigint, $3::integer, $4::bigint, $5::bigint)"
             " IS NOT NULL AND ($2::json IS NULL OR name = ANY"
             " (ARRAY(SELECT json_array_elements_text($2::json))))";
  if (after) {
    auto at = cmp.find("%s");
    cmp.replace(at, 2, desc ? "<" : ">");
    sql += " AND " + cmp;
  }
  return sql + sql_order_by(order, desc) + " LIMIT $6";
}

} // namespace

caf::expected<job_record>
postgres_adapter::cancel_job(int64_t job_id, const std::string& reason) {
  if (auto err = check_reason(reason))
    return err;
  auto why = reason.empty() ? std::string{"cancelled"} : reason;
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("cancelling a job", [&](pqxx::work& tx) {
    change_result out;
    out.changed =
        tx.exec_params(
              "WITH m AS (DELETE FROM jobs WHERE id = $1"
              "   AND reserved_by IS NULL RETURNING *)"
              " INSERT INTO jobs_failed (id, name, payload, attempts,"
              "   exception, created_at, available_at, failed_at, priority,"
              "   cancelled, errors)"
              " SELECT id, name, payload, attempts, $2, created_at,"
              "   available_at, " BG_JOBS_TS("$3") ", priority, true, errors"
                                                   " FROM m",
              job_id, why, now)
            .affected_rows() > 0;
    if (!out.changed)
      out.changed = tx.exec_params("UPDATE jobs SET cancel_reason = $2"
                                   " WHERE id = $1 AND reserved_by IS NOT NULL",
                                   job_id, why)
                        .affected_rows() > 0;
    out.record = record_in(tx, now, job_id);
    return out;
  });
  return settle(std::move(r), job_id,
                "only a waiting or running job can be cancelled");
}

caf::expected<job_record> postgres_adapter::retry_job(int64_t job_id) {
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("retrying a job", [&](pqxx::work& tx) {
    change_result out;
    out.changed =
        tx.exec_params("WITH m AS (DELETE FROM jobs_failed WHERE id = $1"
                       " RETURNING *)" BG_JOBS_PG_RETRY_FROM(
                           "m") " RETURNING pg_notify($3, name)",
                       job_id, now, impl_->channel)
            .affected_rows() > 0;
    out.record = record_in(tx, now, job_id);
    return out;
  });
  return settle(std::move(r), job_id,
                "only a failed or cancelled job can be retried");
}

caf::expected<int64_t> postgres_adapter::retry_failed(const std::string& name) {
  if (auto why = name_problem(name); !why.empty())
    return make_error(errc::invalid_job_name,
                      "job name '" + printable(name) + "' " + why);
  auto now = impl_->now_ms();
  return impl_->in_transaction("retrying failed jobs", [&](pqxx::work& tx) {
    auto n = static_cast<int64_t>(
        tx.exec_params(
              "WITH m AS (DELETE FROM jobs_failed WHERE name = $1"
              " AND NOT cancelled RETURNING *)" BG_JOBS_PG_RETRY_FROM("m"),
              name, now)
            .affected_rows());
    if (n > 0)
      tx.exec_params("SELECT pg_notify($1, $2)", impl_->channel, name);
    return n;
  });
}

caf::expected<void> postgres_adapter::pause(pause_kind kind,
                                            const std::string& name) {
  if (auto err = check_pause_name(kind, name))
    return err;
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("pausing", [&](pqxx::work& tx) {
    if (kind == pause_kind::schedule)
      tx.exec_prepared("bgj_schedule_lock", name);
    tx.exec_params("INSERT INTO bg_jobs_paused (kind, name, paused_at)"
                   " VALUES ($1, $2, " BG_JOBS_TS(
                       "$3") ")"
                             " ON CONFLICT (kind, name) DO NOTHING",
                   std::string{to_string(kind)}, name, now);
    if (kind == pause_kind::schedule)
      tx.exec_params(pg_skip_paused_schedule, name, now);
    return 0;
  });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<void> postgres_adapter::resume(pause_kind kind,
                                             const std::string& name) {
  if (auto err = check_pause_name(kind, name))
    return err;
  auto r = impl_->in_statement("resuming", [&](pqxx::transaction_base& tx) {
    tx.exec_params("DELETE FROM bg_jobs_paused WHERE kind = $1 AND name = $2",
                   std::string{to_string(kind)}, name);
    // Wakes every node's queues: the resumed one may have work.
    tx.exec_params("SELECT pg_notify($1, '*')", impl_->channel);
    return 0;
  });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<std::vector<pause_record>> postgres_adapter::pauses() {
  return impl_->in_statement("reading pauses", [&](pqxx::transaction_base& tx) {
    std::vector<pause_record> result;
    for (const auto& r : tx.exec("SELECT kind, name, " BG_JOBS_MS(
             "paused_at") " FROM bg_jobs_paused ORDER BY kind, name")) {
      pause_record p;
      p.kind = r[0].as<std::string>() == "queue" ? pause_kind::queue
                                                 : pause_kind::schedule;
      p.name = r[1].as<std::string>();
      p.paused_at = field_time(r[2]);
      result.push_back(std::move(p));
    }
    return result;
  });
}

caf::expected<std::vector<name_stats>> postgres_adapter::stats_by_name() {
  try {
    pqxx::transaction<pqxx::repeatable_read,
                      pqxx::read_only>
        tx{*impl_->conn};
    std::map<std::string, name_stats> by_name;
    auto entry = [&](const std::string& name) -> job_stats& {
      auto& n = by_name[name];
      n.name = name;
      return n.counts;
    };
    for (const auto& r : tx.exec_params(pg_stats_live_by_name,
                                        impl_->now_ms())) {
      auto& c = entry(r[0].as<std::string>());
      c.available = r[1].as<int64_t>();
      c.scheduled = r[2].as<int64_t>();
      c.reserved = r[3].as<int64_t>();
      if (!r[4].is_null())
        by_name[r[0].as<std::string>()].oldest_waiting = field_time(r[4]);
    }
    auto succeeded = size_of(tx, "jobs_succeeded");
    if (succeeded.estimated) {
      for (auto& [name, share] : name_shares(tx, "jobs_succeeded"))
        entry(name).succeeded = rounded(succeeded.rows * share);
    } else {
      for (const auto& r : tx.exec("SELECT name, count(*) FROM jobs_succeeded"
                                   " GROUP BY name"))
        entry(r[0].as<std::string>()).succeeded = r[1].as<int64_t>();
    }
    auto failed = size_of(tx, "jobs_failed");
    if (failed.estimated) {
      auto cancelled = cancelled_share(tx);
      for (auto& [name, share] : name_shares(tx, "jobs_failed")) {
        auto& c = entry(name);
        auto rows = failed.rows * share;
        c.cancelled = rounded(rows * cancelled);
        c.failed = rounded(rows) - c.cancelled;
      }
    } else {
      for (const auto& r : tx.exec(
               "SELECT name, count(*) FILTER (WHERE NOT cancelled),"
               " count(*) FILTER (WHERE cancelled) FROM jobs_failed"
               " GROUP BY name")) {
        auto& c = entry(r[0].as<std::string>());
        c.failed = r[1].as<int64_t>();
        c.cancelled = r[2].as<int64_t>();
      }
    }
    tx.commit();
    std::vector<name_stats> result;
    for (auto& [name, n] : by_name) {
      n.counts.history_estimated = succeeded.estimated || failed.estimated;
      // An estimate can round a name's share down to nothing.
      if (n.counts.total() > 0)
        result.push_back(std::move(n));
    }
    return result;
  } catch (...) {
    return failure("reading job counts");
  }
}

caf::expected<job_page> postgres_adapter::list_jobs(const job_query& query) {
  auto start = start_of(query);
  if (!start)
    return std::move(start.error());
  auto after = *start;
  auto sql = pg_list(query.state, query.newest_first, after.has_value());
  auto names = nlohmann::json(query.names).dump();
  const char* names_arg = query.names.empty() ? nullptr : names.c_str();
  page_key key = after.value_or(page_key{});
  auto page =
      impl_->in_statement("listing jobs", [&](pqxx::transaction_base& tx) {
        job_page result;
        for (const auto& r :
             tx.exec_params(sql, impl_->now_ms(), names_arg, key.priority,
                            key.at_ms, key.id, query.limit + 1))
          result.jobs.push_back(read_record(r));
        return result;
      });
  if (!page)
    return page;
  finish_page(*page, query);
  return page;
}

caf::expected<std::vector<finished_bucket>>
postgres_adapter::finished_per_bucket(timestamp since,
                                      std::chrono::milliseconds bucket) {
  if (bucket.count() <= 0)
    return make_error(errc::invalid_argument, "the bucket must be positive");
  return impl_->in_statement("counting finished jobs", [&](pqxx::
                                                               transaction_base&
                                                                   tx) {
    std::vector<std::tuple<int64_t, int64_t, int64_t>> rows;
    for (
        const auto& r : tx.exec_params(
            "SELECT (" BG_JOBS_MS(
                "succeeded_at") " / $2) * $2,"
                                " count(*), 0 FROM jobs_succeeded"
                                " WHERE succeeded_at >= " BG_JOBS_TS(
                                    "$1") " GROUP BY 1"
                                          " UNION ALL SELECT (" BG_JOBS_MS(
                                              "failed_at") " / $2) * $2,"
                                                           " 0, count(*) FROM jobs_failed"
                                                           " WHERE failed_at >= " BG_JOBS_TS(
                                                               "$1") " GROUP BY 1",
            to_unix_ms(since), bucket.count()))
      rows.emplace_back(r[0].as<int64_t>(), r[1].as<int64_t>(),
                        r[2].as<int64_t>());
    return merge_buckets(rows);
  });
}

caf::expected<job_record> postgres_adapter::get_job(int64_t job_id) {
  auto now = impl_->now_ms();
  auto r =
      impl_->in_statement("reading a job", [&](pqxx::transaction_base& tx) {
        change_result out;
        out.record = record_in(tx, now, job_id);
        out.changed = true;
        return out;
      });
  return settle(std::move(r), job_id, "");
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
