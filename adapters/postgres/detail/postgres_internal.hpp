#pragma once

// What the files of the PostgreSQL adapter share: column and time
// expressions, reading rows, errors, and the connection's state (`impl`).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <libpq-fe.h>
#include <pqxx/pqxx>

#include "bg_jobs/adapters/detail/prepared_job.hpp"

#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/job_request.hpp"

// clang-format off
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
  " last_error, priority, cancel_reason, concurrency_key,"                     \
  " second_concurrency_key, attrs"
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
      "     AND (expires_at IS NULL OR expires_at > $1::bigint)"               \
      "     AND NOT EXISTS (SELECT 1 FROM bg_jobs_paused"                      \
      "       WHERE kind = 'queue' AND name = $5)"                             \
      "   ORDER BY priority, available_at, id LIMIT $4"                        \
      "   FOR UPDATE SKIP LOCKED))"                                            \
      " RETURNING " BG_JOBS_PG_JOB_COLUMNS
// The claim of a limited queue (see detail/admission.hpp) runs in the
// queue's turn: after an advisory lock of the queue (and of its rate
// limit), in one transaction, so claims of one queue take turns and each
// sees the reservations of the claims before it. It is one statement:
// $1 now, $2 owner, $3 names (JSON), $4 how many ready jobs it looks at
// (`limited_scan`), $5 queue, $6 how many it wants, $7 the rate limit
// (rated only). Its CTEs, in order:
// - `lim`, `f`: the queue's limits (a key's own, the default per key, the
//   total, whether keys are sequences and whether a failed job holds its
//   key);
// - `hj`, `held`: the slots held by the jobs $3 names, by their two keys,
//   counted only if the queue has a concurrency limit or a sequence (not
//   for a rate limit alone); `fullk`, the keys with no room left; `busy`,
//   in a sequence, the (first) keys whose jobs hold a reservation;
// - `cand`: up to $4 ready jobs in claim order, `ord`, passing over jobs
//   of full keys and, in a sequence, every job but the oldest unreserved
//   one of a key that is not busy and that no failed job holds;
// - `m`: the limits of keys that have their own, and the held slots, by
//   key, as two JSON objects: looked up per candidate, where a join's
//   plan would depend on estimates of `cand`;
// - `w`: how many it may take ($6, and no more than the total less the
//   slots held), whether candidates have keys (`keys`: 0 none, 1 only
//   first keys, 2 second keys too), and whether every candidate's rate
//   fits (`all_fit`, `true` without a rate limit);
// - `fits`: the candidates with whether their rate fits (`rate_fits`,
//   computed only when not `all_fit`);
// - `keyed`: each candidate once per key (once if it has none), with the
//   key's room (its limit less its held slots), looked up before `ranked`
//   sorts them, so that the sort does not carry the JSON objects;
// - `ranked`: the n-th candidate of a key fits if n is at most its room;
// - `picks`: the candidates all of whose keys fit (and whose rate fits),
//   every key's first before any key's second (a candidate's turn is its
//   highest n), within a turn in claim order, at most `w.most`. Without
//   keys among the candidates, that is claim order; with first keys only,
//   a candidate's turn is its rank within its key (one window, no
//   aggregation). Only with second keys do `keyed` and `ranked` (a sort,
//   an aggregation and another sort) run. The branches of `fits` and
//   `picks` are chosen by one-time filters;
// - `r`: their reservation, each only if still unreserved (the candidates
//   are not locked; the queue's turn keeps other claims of the queue out).
//   They are looked up by primary key, whatever the statistics say: the
//   ids are an InitPlan, and the test of `reserved_by` is written so that
//   it does not match the claim index's predicate (with it, after an
//   ANALYZE that saw an empty table, the planner read that whole index).
// `detail::admit` is the same admission in C++, which SQLite runs.
#define BG_JOBS_PG_LIMITED_CLAIM(rate_with, rate_cols, rate_join,             \
                                 rate_filter, rate_fits, all_fit, at,          \
                                 rate_charge)                                  \
  "WITH lim AS MATERIALIZED (SELECT kind, key, max_running::bigint AS n"       \
  "   FROM bg_jobs_limits WHERE queue = $5),"                                  \
  " f AS MATERIALIZED (SELECT"                                                 \
  "   (SELECT n FROM lim WHERE kind = 'per_key') AS per_key,"                  \
  "   (SELECT n FROM lim WHERE kind = 'total') AS total,"                      \
  "   EXISTS (SELECT 1 FROM lim"                                               \
  "     WHERE kind IN ('sequence', 'sequence_skip_failed')) AS seq,"           \
  "   EXISTS (SELECT 1 FROM lim WHERE kind = 'sequence') AS failed_holds),"    \
  " hj AS MATERIALIZED (SELECT concurrency_key AS k1,"                         \
  "   second_concurrency_key AS k2, count(*) AS n FROM jobs"                   \
  "   WHERE reserved_by IS NOT NULL"                                           \
  "   AND name = ANY (ARRAY(SELECT json_array_elements_text($3::json)))"       \
  "   AND EXISTS (SELECT 1 FROM lim WHERE kind <> 'rate') GROUP BY 1, 2),"     \
  " held AS MATERIALIZED (SELECT k, sum(n) AS n FROM"                          \
  "   (SELECT k1 AS k, n FROM hj WHERE k1 IS NOT NULL"                         \
  "    UNION ALL SELECT k2, n FROM hj WHERE k2 IS NOT NULL) x GROUP BY k),"    \
  " m AS MATERIALIZED (SELECT"                                                 \
  "   (SELECT jsonb_object_agg(key, n) FROM lim WHERE kind = 'key') AS lim,"   \
  "   (SELECT jsonb_object_agg(k, n) FROM held) AS held),"                     \
  " fullk AS MATERIALIZED (SELECT h.k FROM held h, f, m"                       \
  "   WHERE coalesce((m.lim ->> h.k)::bigint, f.per_key) - h.n <= 0),"         \
  " busy AS MATERIALIZED (SELECT DISTINCT k1 AS k FROM hj, f"                  \
  "   WHERE f.seq AND k1 IS NOT NULL)" rate_with ","                           \
  " cand AS MATERIALIZED (SELECT c.id, c.concurrency_key AS k1,"               \
  "   c.second_concurrency_key AS k2, row_number() OVER"                       \
  "   (ORDER BY c.priority, c.available_at, c.id) AS ord" rate_cols            \
  "   FROM jobs c" rate_join                                                   \
  "   WHERE c.reserved_by IS NULL AND c.available_at <= " BG_JOBS_TS("$1")     \
  "   AND c.name = ANY (ARRAY(SELECT json_array_elements_text($3::json)))"     \
  "   AND (c.expires_at IS NULL OR c.expires_at > $1::bigint)"                 \
  "   AND NOT EXISTS (SELECT 1 FROM bg_jobs_paused"                            \
  "     WHERE kind = 'queue' AND name = $5)"                                   \
  "   AND (c.concurrency_key IS NULL"                                          \
  "     OR c.concurrency_key NOT IN (SELECT k FROM fullk))"                    \
  "   AND (c.second_concurrency_key IS NULL"                                   \
  "     OR c.second_concurrency_key NOT IN (SELECT k FROM fullk))"             \
  "   AND (c.concurrency_key IS NULL OR NOT (SELECT seq FROM f)"               \
  "     OR (c.concurrency_key NOT IN (SELECT k FROM busy)"                     \
  "       AND NOT EXISTS (SELECT 1 FROM jobs o"                                \
  "         WHERE o.concurrency_key = c.concurrency_key AND o.id < c.id"       \
  "         AND o.reserved_by IS NULL"                                         \
  "         AND o.name = ANY (ARRAY(SELECT json_array_elements_text("          \
  "           $3::json))))"                                                    \
  "       AND (NOT (SELECT failed_holds FROM f)"                               \
  "         OR NOT EXISTS (SELECT 1 FROM jobs_failed x"                        \
  "         WHERE x.concurrency_key = c.concurrency_key AND NOT x.cancelled"   \
  "         AND NOT x.unblocked"                                               \
  "         AND x.name = ANY (ARRAY(SELECT json_array_elements_text("          \
  "           $3::json)))))))" rate_filter                                     \
  "   ORDER BY c.priority, c.available_at, c.id LIMIT $4),"                    \
  " w AS MATERIALIZED (SELECT greatest(0, least($6::bigint,"                   \
  "   coalesce((SELECT total FROM f) - (SELECT coalesce(sum(n), 0) FROM hj),"  \
  "   $6::bigint))) AS most,"                                                  \
  "   CASE WHEN EXISTS (SELECT 1 FROM cand WHERE k2 IS NOT NULL) THEN 2"       \
  "   WHEN EXISTS (SELECT 1 FROM cand WHERE k1 IS NOT NULL) THEN 1"            \
  "   ELSE 0 END AS keys, " all_fit " AS all_fit),"                            \
  " fits AS (SELECT id, k1, k2, ord, true AS rate_fits FROM cand"              \
  "   WHERE (SELECT all_fit FROM w)"                                           \
  "   UNION ALL SELECT id, k1, k2, ord, " rate_fits " FROM cand"               \
  "   WHERE NOT (SELECT all_fit FROM w)),"                                     \
  " keyed AS MATERIALIZED (SELECT p.ord, p.id, p.rate_fits, p.k,"              \
  "   CASE WHEN p.k IS NOT NULL"                                               \
  "   THEN coalesce((m.lim ->> p.k)::bigint, f.per_key)"                       \
  "     - coalesce((m.held ->> p.k)::bigint, 0) END AS room"                   \
  "   FROM (SELECT c.ord, c.id, c.rate_fits, x.k FROM fits c"                  \
  "     CROSS JOIN LATERAL (VALUES (1, c.k1), (2, c.k2)) AS x(i, k)"           \
  "     WHERE x.k IS NOT NULL OR (x.i = 1 AND c.k2 IS NULL)) p, f, m),"        \
  " ranked AS (SELECT ord, id, rate_fits, room, CASE WHEN k IS NULL"           \
  "   THEN 1 ELSE row_number() OVER (PARTITION BY k ORDER BY ord) END AS n"    \
  "   FROM keyed),"                                                            \
  " picks AS ((SELECT id FROM fits WHERE (SELECT keys FROM w) = 0"             \
  "   AND rate_fits ORDER BY ord LIMIT (SELECT most FROM w))"                  \
  "   UNION ALL (SELECT x.id FROM (SELECT id, ord, k1, rate_fits,"             \
  "     row_number() OVER (PARTITION BY k1 ORDER BY ord) AS n FROM fits"       \
  "     WHERE (SELECT keys FROM w) = 1) x, f, m"                               \
  "   WHERE x.rate_fits AND (x.k1 IS NULL"                                     \
  "     OR coalesce((m.lim ->> x.k1)::bigint, f.per_key) IS NULL"              \
  "     OR x.n <= coalesce((m.lim ->> x.k1)::bigint, f.per_key)"               \
  "       - coalesce((m.held ->> x.k1)::bigint, 0))"                           \
  "   ORDER BY CASE WHEN x.k1 IS NULL THEN 1 ELSE x.n END, x.ord"              \
  "   LIMIT (SELECT most FROM w))"                                             \
  "   UNION ALL (SELECT id FROM ranked WHERE (SELECT keys FROM w) = 2"         \
  "   GROUP BY ord, id"                                                        \
  "   HAVING bool_and(room IS NULL OR n <= room) AND bool_and(rate_fits)"      \
  "   ORDER BY max(n), ord LIMIT (SELECT most FROM w))),"                      \
  " r AS (UPDATE jobs SET reserved_at = " BG_JOBS_TS(at) ","                   \
  "   reserved_by = $2, attempts = attempts + 1"                               \
  "   WHERE id = ANY (ARRAY(SELECT id FROM picks))"                            \
  "   AND num_nonnulls(reserved_by) = 0"                                       \
  "   RETURNING " BG_JOBS_PG_JOB_COLUMNS ")" rate_charge                       \
  " SELECT * FROM r"
#define BG_JOBS_PG_LIMITED_CLAIM_UNRATED                                       \
  BG_JOBS_PG_LIMITED_CLAIM("", "", "", "", "true", "true", "$1", "")
// The same under the rate limit $7: not the jobs whose rate key has no
// start left (`rcap`: each key's starts by the generic cell rate
// algorithm, as on SQLite; `rm`, the same as a JSON object); a job fits
// only while the costs (each at most the burst) of its rate key's
// candidates, added up in claim order, fit its key's starts
// (`rate_fits`; when all the candidates' costs together fit the smallest
// room of their keys, every job fits and nothing is added up). A job's
// rate key and cost are looked up only while some job has its own
// (`rof`); those without are the key '' at cost 1. The reservation is
// stamped with the server's time the rate counted it at, and takes the
// costs of the jobs it reserved from their keys' buckets (`charged`).
#define BG_JOBS_PG_LIMITED_CLAIM_RATED                                         \
  BG_JOBS_PG_LIMITED_CLAIM(                                                    \
      ", rl AS MATERIALIZED (SELECT burst, period_ms::float8 / allowed"        \
      "   AS t, " BG_JOBS_PG_NOW_MS " AS now FROM bg_jobs_rate_limits"         \
      "   WHERE name = $7),"                                                   \
      " rcap AS MATERIALIZED (SELECT k.key AS k, CASE"                         \
      "   WHEN k.blocked_until > rl.now THEN 0"                                \
      "   WHEN rl.now + (rl.burst - 1) * rl.t - greatest(k.tat, rl.now) < 0"   \
      "   THEN 0 ELSE floor((rl.now + (rl.burst - 1) * rl.t"                   \
      "     - greatest(k.tat, rl.now)) / rl.t + 1e-9)::bigint + 1 END AS cap"  \
      "   FROM bg_jobs_rate_keys k, rl WHERE k.name = $7),"                    \
      " rm AS MATERIALIZED (SELECT jsonb_object_agg(k, cap) AS caps FROM rcap),"\
      " rof AS MATERIALIZED (SELECT EXISTS (SELECT 1 FROM bg_jobs_rate_of)"    \
      "   AS yes)",                                                            \
      ", CASE WHEN (SELECT t FROM rl) IS NOT NULL"                             \
      "   THEN coalesce(ro.rate_key, '') END AS rate_key,"                     \
      " least(coalesce(ro.cost, 1), (SELECT burst FROM rl)) AS units,"         \
      " coalesce(((SELECT caps FROM rm) ->> coalesce(ro.rate_key, ''))"        \
      "   ::bigint, (SELECT burst FROM rl)) AS rate_room",                     \
      " LEFT JOIN (SELECT * FROM bg_jobs_rate_of"                              \
      "   WHERE (SELECT yes FROM rof)) ro ON ro.job_id = c.id",                \
      " AND coalesce(ro.rate_key, '') NOT IN (SELECT k FROM rcap"              \
      "   WHERE cap <= 0)",                                                    \
      "rate_key IS NULL OR sum(units) OVER (PARTITION BY rate_key"             \
      "   ORDER BY ord) <= rate_room",                                         \
      "(SELECT coalesce(sum(units), 0) <= coalesce(min(rate_room), 0)"         \
      "   FROM cand WHERE rate_key IS NOT NULL)",                              \
      "coalesce((SELECT floor(now)::bigint FROM rl), $1::bigint)",             \
      ", rc AS (SELECT '' AS k, count(*) * least(1, rl.burst) AS units"        \
      "   FROM r, rl WHERE NOT (SELECT yes FROM rof) GROUP BY rl.burst"        \
      "   UNION ALL SELECT coalesce(ro.rate_key, ''),"                         \
      "   sum(least(coalesce(ro.cost, 1), rl.burst)) FROM r"                   \
      "   LEFT JOIN bg_jobs_rate_of ro ON ro.job_id = r.id CROSS JOIN rl"      \
      "   WHERE (SELECT yes FROM rof) GROUP BY 1),"                            \
      " charged AS (INSERT INTO bg_jobs_rate_keys AS k (name, key, tat)"       \
      "   SELECT $7, rc.k, rl.now + rc.units * rl.t FROM rc, rl"               \
      "   ON CONFLICT (name, key) DO UPDATE SET tat = greatest(k.tat,"         \
      "     (SELECT now FROM rl)) + (excluded.tat - (SELECT now FROM rl)))")
// The store's now in milliseconds since the epoch.
#define BG_JOBS_PG_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)"
#define BG_JOBS_PG_AFTER(p, at, id)                                            \
  " AND (priority, available_at, id) > (" p                                    \
  "::integer, " BG_JOBS_TS(at) ", " id "::bigint)"

// The succeeded history of the rows a CTE `m` deleted, at `at`, as CTEs
// that follow it (each after a comma). With the history kept, every row
// moves to `jobs_succeeded` (`s`). Without it (`postgres_options::
// succeeded_history` false), only a workflow's task does (its workflow
// reads it, through the triggers on that table). The others leave no row
// (BG_JOBS_PG_DROP_SUCCEEDED, for successes without an output) or none
// but their progress (_WITH_OUTPUT takes that and their output too; the
// batched paths leave them out, as the two more deletes slowed those
// down), which the next prune takes (postgres_adapter::prune_jobs).
#define BG_JOBS_PG_TO_SUCCEEDED(at, only)                                      \
  ", s AS (INSERT INTO jobs_succeeded (id, name, payload, attempts,"           \
  "   created_at, available_at, succeeded_at, priority, errors, attrs)"        \
  "   SELECT id, name, payload, attempts, created_at, available_at, "          \
  BG_JOBS_TS(at) ", priority, errors, attrs FROM m" only " RETURNING id)"
#define BG_JOBS_PG_KEEP_SUCCEEDED(at) BG_JOBS_PG_TO_SUCCEEDED(at, "")
#define BG_JOBS_PG_DROP_SUCCEEDED(at)                                          \
  BG_JOBS_PG_TO_SUCCEEDED(at, " WHERE EXISTS (SELECT 1 FROM bg_jobs_tasks t"   \
                              "   WHERE t.job_id = m.id)")
#define BG_JOBS_PG_DROP_SUCCEEDED_WITH_OUTPUT(at)                              \
  BG_JOBS_PG_DROP_SUCCEEDED(at)                                                \
  ", o AS (DELETE FROM bg_jobs_outputs WHERE job_id IN (SELECT id FROM m)"     \
  "   AND job_id NOT IN (SELECT id FROM s))"                                   \
  ", p AS (DELETE FROM bg_jobs_progress WHERE job_id IN (SELECT id FROM m)"    \
  "   AND job_id NOT IN (SELECT id FROM s))"

// The successes $1 (one id, or an array for the second) of owner $3 at $2;
// rows: the ids completed.
#define BG_JOBS_PG_SUCCEED(history)                                            \
  "WITH m AS (DELETE FROM jobs WHERE id = $1"                                  \
  "   AND reserved_by IS NOT DISTINCT FROM $3 AND cancel_reason IS NULL"       \
  "   RETURNING *)" history " SELECT id FROM m"
#define BG_JOBS_PG_SUCCEED_MANY(history)                                       \
  "WITH m AS (DELETE FROM jobs WHERE id = ANY($1::bigint[])"                   \
  "   AND reserved_by IS NOT DISTINCT FROM $3 AND cancel_reason IS NULL"       \
  "   RETURNING *)" history " SELECT id FROM m"

// The successes $6 of owner $7 (at $1) and the next claim in one
// statement; `history` is one of the two above. Rows flagged true are the
// completed ids.
#define BG_JOBS_PG_COMPLETE_CLAIM(after, history)                                               \
  "WITH m AS (DELETE FROM jobs WHERE id = ANY($6::bigint[])"                                    \
  "   AND reserved_by IS NOT DISTINCT FROM $7 AND cancel_reason IS NULL"                        \
  "   RETURNING *)" history                                                                     \
            ", c AS (" BG_JOBS_PG_CLAIM(                                                         \
                after) ")"                                                                      \
                       " SELECT *, false FROM c UNION ALL"                                      \
                       " SELECT id, '', '', 0, 0::bigint, 0::bigint, NULL::bigint, NULL, NULL," \
                       "   0, NULL, NULL, NULL, NULL, true FROM m"

// clang-format on

namespace bg_jobs::detail::postgres {

inline constexpr char notify_channel[] = "bg_jobs";

struct statement_def {
  const char* name;
  const char* sql;
};

inline nlohmann::json parse_payload(const pqxx::field& f) {
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

inline timestamp field_time(const pqxx::field& f) {
  return from_unix_ms(f.as<int64_t>());
}

inline job read_job(const pqxx::row& r) {
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
  if (!r[11].is_null())
    j.concurrency_key = r[11].as<std::string>();
  if (!r[12].is_null())
    j.second_concurrency_key = r[12].as<std::string>();
  if (!r[13].is_null())
    detail::read_attrs(std::string_view{r[13].c_str(), r[13].size()}, j);
  return j;
}

/// Sorts by priority, available_at, then id: the order of a claim, which
/// RETURNING does not keep.
inline void sort_in_claim_order(std::vector<job>& jobs) {
  std::sort(jobs.begin(), jobs.end(), [](const job& a, const job& b) {
    return std::tie(a.priority, a.available_at, a.id) <
           std::tie(b.priority, b.available_at, b.id);
  });
}

/// Reads job rows; `claim_order` sorts them by available_at, then id (the
/// order of a claim, which RETURNING does not keep), else they stay in the
/// statement's order.
inline std::vector<job> read_jobs(const pqxx::result& res, bool claim_order = true) {
  std::vector<job> jobs;
  jobs.reserve(res.size());
  for (const auto& r : res)
    jobs.emplace_back(read_job(r));
  if (claim_order)
    sort_in_claim_order(jobs);
  return jobs;
}

/// Ids as a PostgreSQL array literal, `id_of` giving each element's.
template <class Range, class F>
std::string id_literal(const Range& items, F id_of) {
  std::string out = "{";
  for (const auto& x : items)
    out += (out.size() > 1 ? "," : "") + std::to_string(id_of(x));
  return out + "}";
}

/// A stored limit from the columns (kind, key, max_running) of `row`
/// starting at `first`.
inline concurrency_limit limit_of_row(const pqxx::row& row, int first) {
  concurrency_limit l;
  l.kind = parse_limit_kind(row[first].as<std::string>())
               .value_or(limit_kind::key);
  l.key = row[first + 1].as<std::string>();
  l.max_running = row[first + 2].as<int>();
  return l;
}

inline const char* nullable(const std::optional<std::string>& x) {
  return x ? x->c_str() : nullptr;
}

/// A concurrency key as stored: NULL when there is none.
inline const char* key_or_null(const std::string& key) {
  return key.empty() ? nullptr : key.c_str();
}

/// Validates a connection string with libpq and adds a connect timeout.
inline caf::expected<std::string> prepare_url(const std::string& url) {
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

/// A unique request refused when its job was to absorb it (a merge too
/// large): thrown out of `insert_unique`, so that its transaction rolls back.
struct absorb_refused {
  caf::error error;
};

/// Turns a libpqxx exception into an `errc` error.
inline caf::error failure(const char* what) {
  try {
    throw;
  } catch (const absorb_refused& e) {
    return e.error;
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

/// Whether `r` asks for a rate key or cost of its own, or an expiry.
inline bool has_extras(const job_request& r) {
  return !r.rate_key().empty() || r.rate_cost() != 1 || r.expiry();
}

/// Records the rate key and cost and the expiry (from `now`) of job `id` as
/// `r` asks, in `tx`.
inline void note_extras(pqxx::transaction_base& tx, int64_t id,
                        const job_request& r, timestamp now) {
  if (auto at = r.resolve_expires_at(now))
    tx.exec_prepared("bgj_expiry_note", id, to_unix_ms(*at));
  if (!r.rate_key().empty() || r.rate_cost() != 1)
    tx.exec_prepared("bgj_rate_note", id, r.rate_key(), r.rate_cost());
}

/// Stores `j` for the unique `request` in `tx` unless an equal job counts;
/// returns the stored job, or the one that counts with `conflict` set. The
/// key's primary key makes concurrent enqueues wait for each other: the
/// first one to commit stores its job, the others find it.
inline job insert_unique(pqxx::transaction_base& tx, job j, const std::string& text,
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
    // A request that may change the holder takes the key's row first, so
    // that requests of one key take turns: each reads what the one before
    // it wrote (a merge loses no patch, a started holder gets one new job).
    if (u.on_conflict != unique_conflict::keep)
      tx.exec_params("SELECT 1 FROM bg_jobs_unique WHERE unique_key = $1"
                     " FOR UPDATE",
                     key);
    auto found = tx.exec_params(
        "SELECT " BG_JOBS_PG_JOB_COLUMNS " FROM jobs WHERE id ="
        " (SELECT job_id FROM bg_jobs_unique WHERE unique_key = $1)"
        " UNION ALL SELECT id, name, payload, attempts, " BG_JOBS_MS("created_at") ", " BG_JOBS_MS(
            "available_at") ", NULL, NULL, NULL, priority, NULL, NULL, NULL,"
                            " attrs FROM jobs_succeeded WHERE id ="
                            " (SELECT job_id FROM bg_jobs_unique WHERE unique_key = $1)",
        key);
    if (found.empty())
      throw std::runtime_error("unique key '" + printable(key) +
                               "' names a job that is gone");
    auto existing = read_job(found[0]);
    existing.conflict = true;
    auto change = absorb(existing, {j, text, {}}, u);
    if (!change)
      throw absorb_refused{std::move(change.error())};
    if (!*change)
      return existing;
    if (!existing.reserved_by) {
      // Waiting: it takes the request, unless a claim reserved it meanwhile
      // (the UPDATE checks again) or it succeeded (a succeeded holder).
      auto updated = tx.exec_params(
          "UPDATE jobs SET payload = $2, available_at = " BG_JOBS_TS("$3")
          " WHERE id = $1 AND reserved_by IS NULL RETURNING id",
          existing.id, (*change)->payload,
          to_unix_ms((*change)->available_at));
      if (!updated.empty()) {
        existing.payload = nlohmann::json::parse((*change)->payload);
        existing.available_at = (*change)->available_at;
        return existing;
      }
      if (tx.exec_params("SELECT 1 FROM jobs WHERE id = $1", existing.id)
              .empty())
        return existing;
    }
    // Started: never changed. The request is a new job, which takes the
    // key over.
  }
  j.id =
      tx.exec_params("INSERT INTO jobs (name, payload, attempts, created_at,"
                     " available_at, priority, concurrency_key,"
                     " second_concurrency_key, attrs) VALUES ($1, $2, 0, "
                     BG_JOBS_TS("$3") ", " BG_JOBS_TS("$4") ", $5, $6, $7,"
                     " $8) RETURNING id",
                     j.name, text, now_ms, to_unix_ms(j.available_at),
                     j.priority, key_or_null(j.concurrency_key),
                     key_or_null(j.second_concurrency_key),
                     key_or_null(detail::attrs_text(j.meta, j.tags, j.trace)))
              [0][0]
          .as<int64_t>();
  tx.exec_params("UPDATE bg_jobs_unique SET job_id = $2 WHERE unique_key = $1",
                 key, j.id);
  tx.exec_params("SELECT pg_notify($1, $2)", channel, j.name);
  return j;
}

/// Cancels the workflow task `id` that waits for its parents with
/// `reason` at `now_ms` (its trigger takes the step after it); false when
/// no task waits under that id.
inline bool cancel_blocked(pqxx::transaction_base& tx, int64_t id,
                           const std::string& reason, int64_t now_ms) {
  return tx.exec_params(
               "WITH m AS (DELETE FROM bg_jobs_blocked WHERE id = $1"
               "   RETURNING *)"
               " INSERT INTO jobs_failed (id, name, payload, attempts,"
               "   exception, created_at, available_at, failed_at, priority,"
               "   cancelled, errors, concurrency_key, second_concurrency_key,"
               "   attrs)"
               " SELECT id, name, payload, attempts, $2, created_at,"
               "   available_at, " BG_JOBS_TS("$3") ", priority, true, errors,"
               "   concurrency_key, second_concurrency_key, attrs FROM m",
               id, reason, now_ms)
             .affected_rows() > 0;
}

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
    return std::chrono::floor<std::chrono::milliseconds>(
        std::chrono::system_clock::now() +
        std::chrono::microseconds{offset_us_.load()});
  }

  /// Measures the offset on `conn` (outside a transaction), in
  /// microseconds, from the quickest of a few round trips: the server's
  /// time is read half-way through it give or take half of it. Processes
  /// that measured it apart so agree on the store's time to within tens of
  /// microseconds, and a job one of them enqueues for "now" is due for
  /// the claim of another that follows it. (From one round trip in whole
  /// milliseconds, as the first on a new connection is slow, they could
  /// disagree by a millisecond or two for as long as they ran, and such a
  /// job waited for the next wake-up: 10 ms at 100 enqueues a second.)
  /// Returns that round trip, in microseconds.
  int64_t measure(pqxx::connection& conn) {
    pqxx::nontransaction tx{conn};
    int64_t best_trip = std::numeric_limits<int64_t>::max();
    for (int i = 0; i < 4; ++i) {
      auto before = local_us();
      auto server = tx.exec("SELECT (extract(epoch FROM clock_timestamp())"
                            " * 1000000)::int8")[0][0]
                        .as<int64_t>();
      auto after = local_us();
      if (after - before < best_trip) {
        best_trip = after - before;
        offset_us_ = server - (before + (after - before) / 2);
      }
    }
    return best_trip;
  }

  int64_t offset_us() const {
    return offset_us_.load();
  }

private:
  static int64_t local_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  std::atomic<int64_t> offset_us_{0};
};

} // namespace bg_jobs::detail::postgres

namespace bg_jobs {

using namespace detail::postgres;

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
  /// JIT compilation is off: the costs these settings add to any plan that
  /// still sorts would otherwise make it compile such a plan (a second per
  /// statement).
  void pin_claim_plan(pqxx::transaction_base& tx) {
    if (claim_plan_pinned)
      return;
    tx.exec("SET enable_seqscan = off; SET enable_bitmapscan = off;"
            " SET enable_sort = off; SET jit = off");
    claim_plan_pinned = true;
  }

  /// `pin_claim_plan` outside any transaction; an error if that failed.
  caf::error pin_outside() {
    if (claim_plan_pinned)
      return caf::none;
    auto pinned = in_statement("pinning the claim's plan",
                               [&](pqxx::transaction_base& tx) {
                                 pin_claim_plan(tx);
                                 return true;
                               });
    return pinned ? caf::none : std::move(pinned.error());
  }

  /// What the claim of a limited queue did (`limited_claim`): the ids of
  /// the successes it recorded first, and the jobs it reserved.
  struct limited_round {
    std::set<int64_t> moved;
    std::vector<job> reserved;
  };

  /// What the claim of a limited queue runs under, in its transaction:
  /// the ranking's sorts are allowed, and the statement runs its generic
  /// plan, made once per connection. The plan made for each call's
  /// parameters (which PostgreSQL keeps choosing for this statement) took
  /// longer to make than the statement took to run. The statement is
  /// written so that its plan does not depend on the parameters; the
  /// adapter tests check the generic plan on an empty, a full and a
  /// bloated table (`explain_limited_claims`).
  static constexpr const char* limited_claim_settings[] = {
      "SET LOCAL enable_sort = on",
      "SET LOCAL plan_cache_mode = force_generic_plan"};

  /// The claim of a limited queue (`bgj_limited_claim`, or
  /// `bgj_rated_claim` under a rate limit), after the successes `ids` (a
  /// PostgreSQL array literal) of `owner` if there are any, at `now`, in
  /// the queue's turn, in one round trip: BEGIN, the advisory locks of the
  /// queue (and of its rate limit), the successes, the claim and COMMIT go
  /// as one string of statements (`pqxx::pipeline`). The locks make
  /// claims of the queue, and of every queue drawing from the rate limit
  /// (and what code outside jobs takes from it), take turns until commit;
  /// each later statement takes its snapshot after them, so the claim sees
  /// every earlier claim's reservations and the slots the successes gave
  /// back. The claim ranks jobs, which takes sorts (of the few rows it
  /// looks at): allowed in this transaction (`limited_claim_settings`).
  /// After an error the statements behind it do not run, and the
  /// transaction is rolled back.
  limited_round limited_claim(pqxx::transaction_base& tx,
                              const reserve_params& p,
                              const std::string& names,
                              const std::string* ids, const char* owner,
                              int64_t now) {
    bool rated = !p.rate_limit.empty();
    auto claim = std::string{rated ? "EXECUTE bgj_rated_claim("
                                   : "EXECUTE bgj_limited_claim("} +
                 std::to_string(now) + ", " + tx.quote(p.reserved_by) + ", " +
                 tx.quote(names) + ", " +
                 std::to_string(limited_scan(p.limit)) + ", " +
                 tx.quote(p.queue) + ", " + std::to_string(p.limit);
    if (rated)
      claim += ", " + tx.quote(p.rate_limit);
    claim += ")";
    limited_round out;
    // Prepared on first use, which EXECUTE in a string does not do.
    conn->prepare_now(rated ? "bgj_rated_claim" : "bgj_limited_claim");
    if (ids)
      conn->prepare_now("bgj_succeed_many");
    try {
      pqxx::pipeline pipe{tx};
      pipe.retain(8);
      std::vector<pqxx::pipeline::query_id> steps;
      steps.push_back(pipe.insert("BEGIN"));
      for (auto setting : limited_claim_settings)
        steps.push_back(pipe.insert(setting));
      steps.push_back(pipe.insert("SELECT pg_advisory_xact_lock(7220159,"
                                  " hashtext(" + tx.quote(p.queue) + "))"));
      if (rated)
        steps.push_back(pipe.insert("SELECT pg_advisory_xact_lock(7220160,"
                                    " hashtext(" + tx.quote(p.rate_limit) +
                                    "))"));
      std::optional<pqxx::pipeline::query_id> succeeded;
      if (ids)
        succeeded = pipe.insert("EXECUTE bgj_succeed_many(" + tx.quote(*ids) +
                                ", " + std::to_string(now) + ", " +
                                (owner ? tx.quote(owner) : "NULL") + ")");
      auto claimed = pipe.insert(claim);
      auto commit = pipe.insert("COMMIT");
      // In order, so that an error is reported by the statement that
      // raised it.
      for (auto step : steps)
        pipe.retrieve(step);
      if (succeeded)
        for (const auto& row : pipe.retrieve(*succeeded))
          out.moved.insert(row[0].as<int64_t>());
      out.reserved = read_jobs(pipe.retrieve(claimed));
      pipe.retrieve(commit);
      pipe.complete();
    } catch (const pqxx::broken_connection&) {
      throw;
    } catch (...) {
      try {
        tx.exec("ROLLBACK");
      } catch (...) {
      }
      throw;
    }
    return out;
  }

  /// Prepares every statement of the adapter on this connection.
  void prepare_all();

  /// The text of the statement `name` as this adapter prepares it (some
  /// depend on its options); null for a name it does not prepare.
  const char* statement_sql(std::string_view name) const;

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

  /// Runs `f`, a statement that finds reserved jobs by the partial index
  /// of reservations, in a transaction that rules out a sequential scan.
  /// Right after many jobs were inserted, before any ANALYZE, the planner
  /// takes most rows for reserved and reads the whole table (240-330 ms a
  /// statement at a million waiting jobs, on the way to a node's first
  /// claim) where the index holds none.
  template <class F>
  auto by_reservations(const char* what, F f)
      -> caf::expected<decltype(f(std::declval<pqxx::transaction_base&>()))> {
    try {
      pqxx::work tx{*conn};
      tx.exec("SET LOCAL enable_seqscan = off");
      auto result = f(tx);
      tx.commit();
      return result;
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


} // namespace bg_jobs
