// The SQLite adapter's concurrency limits: the claim of a limited queue and
// the stored limits.

#include "bg_jobs/adapters/sqlite/detail/sqlite_internal.hpp"

namespace bg_jobs {

using namespace detail::sqlite;

namespace detail::sqlite {

// The claim of a limited queue, as on PostgreSQL (see
// BG_JOBS_PG_LIMITED_CLAIM); ?6 is how many ready jobs it looks at. Exact
// as it stands: writes take turns. The claim of a queue with a rate limit
// (?7 its name) also passes over jobs whose rate key has no start left
// (`rcap`, each key's starts by the generic cell rate algorithm: `tat` its
// theoretical arrival time, `t` the time one start takes to come back,
// `(burst - 1) * t` the most it may run ahead) and takes a key's jobs only
// while their costs, added up in claim order, fit what it has; its jobs'
// `reserved_at` is the store's time of the claim.
#define BG_JOBS_SQLITE_LIMITED(rate_ctes, cand_cols, cand_join, cand_filter,   \
                               rated, rated_ok, reserved_at)                   \
    "WITH lim AS (SELECT kind, key, max_running FROM bg_jobs_limits"           \
    "   WHERE queue = ?5),"                                                    \
    " held AS (SELECT concurrency_key AS k1, second_concurrency_key AS k2"     \
    "   FROM jobs WHERE reserved_by IS NOT NULL"                               \
    "   AND name IN (SELECT value FROM json_each(?3))),"                       \
    " busy AS (SELECT k, count(*) AS n FROM (SELECT k1 AS k FROM held"         \
    "   WHERE k1 IS NOT NULL UNION ALL SELECT k2 FROM held"                    \
    "   WHERE k2 IS NOT NULL) GROUP BY k),"                                    \
    " room AS MATERIALIZED (SELECT b.k, coalesce(kl.max_running,"              \
    "   (SELECT max_running FROM lim WHERE kind = 'per_key')) - b.n AS free"   \
    "   FROM busy b LEFT JOIN lim kl ON kl.kind = 'key' AND kl.key = b.k),"    \
    rate_ctes                                                                  \
    " cand AS (SELECT id, concurrency_key AS k1,"                              \
    "   second_concurrency_key AS k2, priority, available_at" cand_cols        \
    "   FROM jobs c" cand_join                                                 \
    "   WHERE reserved_by IS NULL AND available_at <= ?1"                      \
    "     AND name IN (SELECT value FROM json_each(?3))"                       \
    "     AND (c.expires_at IS NULL OR c.expires_at > ?1)"                     \
    "     AND NOT EXISTS (SELECT 1 FROM bg_jobs_paused"                        \
    "       WHERE kind = 'queue' AND name = ?5)"                               \
    "     AND (concurrency_key IS NULL OR concurrency_key NOT IN ("            \
    "       SELECT k FROM room WHERE free <= 0))"                              \
    "     AND (second_concurrency_key IS NULL OR second_concurrency_key"       \
    "       NOT IN (SELECT k FROM room WHERE free <= 0))" cand_filter          \
    BG_JOBS_SQLITE_SEQUENCE_HEAD                                               \
    "   ORDER BY priority, available_at, id LIMIT ?6),"                        \
    rated                                                                      \
    " pairs AS (SELECT id, k1 AS k, priority, available_at FROM cand"          \
    "   WHERE k1 IS NOT NULL UNION ALL SELECT id, k2, priority, available_at"  \
    "   FROM cand WHERE k2 IS NOT NULL),"                                      \
    " ranked AS (SELECT id, k, priority, available_at, row_number() OVER"     \
    "   (PARTITION BY k ORDER BY priority, available_at, id) AS rn"            \
    "   FROM pairs),"                                                          \
    " verdict AS (SELECT r.id, r.priority, r.available_at, max(r.rn) AS turn," \
    "   min(CASE WHEN r.rn <= coalesce(rm.free, kl.max_running,"               \
    "     (SELECT max_running FROM lim WHERE kind = 'per_key'), 2147483647)"   \
    "   THEN 1 ELSE 0 END) AS fits FROM ranked r"                             \
    "   LEFT JOIN room rm ON rm.k = r.k"                                       \
    "   LEFT JOIN lim kl ON kl.kind = 'key' AND kl.key = r.k"                  \
    "   GROUP BY r.id, r.priority, r.available_at),"                           \
    " lined AS (SELECT id, row_number() OVER (ORDER BY turn, priority,"        \
    "   available_at, id) AS pos FROM (SELECT id, turn, priority, available_at"\
    "   FROM verdict WHERE fits = 1" rated_ok " UNION ALL SELECT id, 1,"       \
    "   priority, available_at FROM cand WHERE k1 IS NULL AND k2 IS NULL"      \
    rated_ok "))"                                                              \
    " UPDATE jobs SET reserved_at = " reserved_at ", reserved_by = ?2,"        \
    "   attempts = attempts + 1"                                               \
    " WHERE id IN (SELECT id FROM lined WHERE pos <= min(?4,"                  \
    "   coalesce((SELECT max_running FROM lim WHERE kind = 'total')"           \
    "     - (SELECT count(*) FROM held), ?4)))"                                \
    " RETURNING " BG_JOBS_JOB_COLUMNS

// In a sequenced queue only the oldest job of a key in `jobs` may go, and
// (unless failed jobs are skipped) none while a failed job holds the key.
#define BG_JOBS_SQLITE_SEQUENCE_HEAD                                           \
    "     AND (c.concurrency_key IS NULL OR NOT EXISTS (SELECT 1 FROM lim"     \
    "       WHERE kind IN ('sequence', 'sequence_skip_failed'))"               \
    "       OR (NOT EXISTS (SELECT 1 FROM jobs o"                              \
    "           WHERE o.concurrency_key = c.concurrency_key AND o.id < c.id"   \
    "           AND o.name IN (SELECT value FROM json_each(?3)))"              \
    "         AND NOT EXISTS (SELECT 1 FROM jobs_failed f"                     \
    "           WHERE f.concurrency_key = c.concurrency_key"                   \
    "           AND f.cancelled = 0 AND f.unblocked = 0"                       \
    "           AND EXISTS (SELECT 1 FROM lim WHERE kind = 'sequence')"        \
    "           AND f.name IN (SELECT value FROM json_each(?3)))))"

// A rate limit's numbers and the store's now: `t` the milliseconds one
// start takes to come back.
#define BG_JOBS_SQLITE_RATE_LIMIT(name)                                        \
    " rl AS MATERIALIZED (SELECT burst, period_ms * 1.0 / allowed AS t, "      \
    BG_JOBS_SQLITE_NOW_MS " AS now FROM bg_jobs_rate_limits"                   \
    "   WHERE name = " name "),"
// The starts each key of the rate limit has left now (keys without a row
// have the whole burst).
#define BG_JOBS_SQLITE_RATE_CAP(name)                                          \
    " rcap AS MATERIALIZED (SELECT k.key AS k, CASE"                           \
    "   WHEN k.blocked_until > rl.now THEN 0"                                  \
    "   WHEN rl.now + (rl.burst - 1) * rl.t - max(k.tat, rl.now) < 0 THEN 0"   \
    "   ELSE CAST((rl.now + (rl.burst - 1) * rl.t - max(k.tat, rl.now))"       \
    "     / rl.t + 1e-9 AS INTEGER) + 1 END AS cap"                            \
    "   FROM bg_jobs_rate_keys k, rl WHERE k.name = " name "),"

const char sql_reserve_limited[] = BG_JOBS_SQLITE_LIMITED("", "", "", "", "",
                                                          "", "?1");

const char sql_reserve_rated[] = BG_JOBS_SQLITE_LIMITED(
    BG_JOBS_SQLITE_RATE_LIMIT("?7") BG_JOBS_SQLITE_RATE_CAP("?7"),
    ", coalesce(ro.rate_key, '') AS rk, coalesce(ro.cost, 1) AS rc",
    " LEFT JOIN bg_jobs_rate_of ro ON ro.job_id = c.id",
    " AND coalesce(ro.rate_key, '') NOT IN (SELECT k FROM rcap"
    "   WHERE cap <= 0)",
    " rated AS (SELECT c.id, rl.t IS NULL OR sum(min(c.rc, rl.burst)) OVER"
    "   (PARTITION BY c.rk ORDER BY c.priority, c.available_at, c.id)"
    "   <= coalesce(r.cap, rl.burst) AS ok FROM cand c LEFT JOIN rl ON 1"
    "   LEFT JOIN rcap r ON r.k = c.rk),",
    " AND id NOT IN (SELECT id FROM rated WHERE NOT ok)",
    // A start is stamped with the store's time the rate counted it at.
    "coalesce(CAST((SELECT now FROM rl) AS INTEGER), ?1)");

} // namespace detail::sqlite

namespace {

const char sql_limits_of[] =
    "SELECT kind, key, max_running FROM bg_jobs_limits WHERE queue = ?1"
    " ORDER BY kind = 'key', key, kind";
const char sql_limits_clear[] = "DELETE FROM bg_jobs_limits WHERE queue = ?1";
const char sql_limit_delete[] =
    "DELETE FROM bg_jobs_limits WHERE queue = ?1 AND kind = ?2 AND key = ?3";
const char sql_limit_put[] =
    "INSERT INTO bg_jobs_limits (queue, kind, key, max_running, updated_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (queue, kind, key) DO UPDATE"
    " SET max_running = excluded.max_running, updated_at = excluded.updated_at";

const char sql_keys_in_use[] =
    "WITH k AS (SELECT concurrency_key AS k, reserved_by IS NOT NULL AS r,"
    "   reserved_by IS NULL AND available_at <= ?2 AS w"
    "   FROM jobs WHERE concurrency_key IS NOT NULL"
    "   AND name IN (SELECT value FROM json_each(?1))"
    " UNION ALL SELECT second_concurrency_key, reserved_by IS NOT NULL,"
    "   reserved_by IS NULL AND available_at <= ?2"
    "   FROM jobs WHERE second_concurrency_key IS NOT NULL"
    "   AND name IN (SELECT value FROM json_each(?1)))"
    " SELECT k, sum(r), sum(w) FROM k GROUP BY k HAVING sum(r OR w) > 0"
    " ORDER BY 3 DESC, 2 DESC, k LIMIT ?3";

const char sql_blocked_keys[] =
    "SELECT f.concurrency_key, min(f.id), (SELECT count(*) FROM jobs j"
    "   WHERE j.concurrency_key = f.concurrency_key"
    "   AND j.name IN (SELECT value FROM json_each(?2)))"
    " FROM jobs_failed f WHERE f.concurrency_key IS NOT NULL"
    " AND f.cancelled = 0 AND f.unblocked = 0"
    " AND f.name IN (SELECT value FROM json_each(?2))"
    " AND EXISTS (SELECT 1 FROM bg_jobs_limits WHERE queue = ?1"
    "   AND kind = 'sequence')"
    " GROUP BY f.concurrency_key ORDER BY f.concurrency_key";

const char sql_unblock_key[] =
    "UPDATE jobs_failed SET unblocked = 1 WHERE concurrency_key = ?2"
    " AND cancelled = 0 AND unblocked = 0"
    " AND name IN (SELECT value FROM json_each(?1))";

} // namespace

caf::expected<void>
sqlite_adapter::set_limits(const std::string& queue,
                           const std::vector<concurrency_limit>& limits) {
  if (auto err = check_limits(queue, limits))
    return err;
  auto now = to_unix_ms(options_.clock->now());
  auto r = in_transaction([&]() -> caf::expected<int> {
    auto cleared = execute(
        sql_limits_clear, [&](statement& q) { q.bind(1, queue); },
        "setting limits");
    if (!cleared)
      return cleared;
    for (const auto& l : limits) {
      std::string kind = to_string(l.kind);
      auto put = execute(
          sql_limit_put,
          [&](statement& q) {
            q.bind(1, queue).bind(2, kind).bind(3, l.key);
            q.bind(4, int64_t{l.max_running}).bind(5, now);
          },
          "setting limits");
      if (!put)
        return put;
    }
    return 0;
  });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<void>
sqlite_adapter::set_limit(const std::string& queue,
                          const concurrency_limit& limit) {
  if (auto err = check_limit_change(queue, limit))
    return err;
  std::string kind = to_string(limit.kind);
  auto now = to_unix_ms(options_.clock->now());
  auto r = limit.max_running == 0
               ? execute(
                     sql_limit_delete,
                     [&](statement& q) {
                       q.bind(1, queue).bind(2, kind).bind(3, limit.key);
                     },
                     "removing a limit")
               : execute(
                     sql_limit_put,
                     [&](statement& q) {
                       q.bind(1, queue).bind(2, kind).bind(3, limit.key);
                       q.bind(4, int64_t{limit.max_running}).bind(5, now);
                     },
                     "setting a limit");
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<std::vector<concurrency_limit>>
sqlite_adapter::stored_limits(const std::string& queue) {
  auto s = prepare(sql_limits_of);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, queue);
  std::vector<concurrency_limit> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    concurrency_limit l;
    l.kind = parse_limit_kind(column_text(q.get(), 0)).value_or(limit_kind::key);
    l.key = column_text(q.get(), 1);
    l.max_running = sqlite3_column_int(q.get(), 2);
    out.push_back(std::move(l));
  }
  if (rc != SQLITE_DONE)
    return failure(rc, "reading limits");
  return out;
}

caf::expected<std::vector<key_usage>>
sqlite_adapter::keys_in_use(const std::string& queue,
                            const std::vector<std::string>& job_names,
                            int max_keys) {
  auto limits = stored_limits(queue);
  if (!limits)
    return std::move(limits.error());
  auto s = prepare(sql_keys_in_use);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  auto names = nlohmann::json(job_names).dump();
  q.bind(1, names)
      .bind(2, to_unix_ms(options_.clock->now()))
      .bind(3, int64_t{max_keys});
  std::vector<key_usage> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    key_usage u;
    u.key = column_text(q.get(), 0);
    u.running = sqlite3_column_int64(q.get(), 1);
    u.waiting = sqlite3_column_int64(q.get(), 2);
    u.max_running = limit_of_key(*limits, u.key);
    out.push_back(std::move(u));
  }
  if (rc != SQLITE_DONE)
    return failure(rc, "reading the keys in use");
  return out;
}

caf::expected<std::vector<blocked_key>>
sqlite_adapter::blocked_keys(const std::string& queue,
                             const std::vector<std::string>& job_names) {
  auto s = prepare(sql_blocked_keys);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  auto names = nlohmann::json(job_names).dump();
  q.bind(1, queue).bind(2, names);
  std::vector<blocked_key> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    out.push_back({column_text(q.get(), 0), sqlite3_column_int64(q.get(), 1),
                   sqlite3_column_int64(q.get(), 2)});
  if (rc != SQLITE_DONE)
    return failure(rc, "reading the blocked keys");
  return out;
}

caf::expected<int64_t>
sqlite_adapter::unblock_key(const std::vector<std::string>& job_names,
                            const std::string& key) {
  auto names = nlohmann::json(job_names).dump();
  auto r = execute(
      sql_unblock_key, [&](statement& q) { q.bind(1, names).bind(2, key); },
      "unblocking a key");
  if (!r)
    return std::move(r.error());
  return int64_t{*r};
}

} // namespace bg_jobs
