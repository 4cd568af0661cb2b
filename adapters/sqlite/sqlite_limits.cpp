// The SQLite adapter's concurrency limits: the claim of a limited queue and
// the stored limits.

#include "bg_jobs/adapters/detail/admission.hpp"
#include "bg_jobs/adapters/sqlite/detail/sqlite_internal.hpp"

namespace bg_jobs {

using namespace detail::sqlite;

namespace {

// The claim of a limited queue (see detail/admission.hpp), in its
// transaction: writes take turns, so what it reads stays true until it
// commits.

// The slots held by the jobs ?1 names, by their keys.
const char sql_limited_held[] =
    "SELECT concurrency_key, second_concurrency_key, count(*) FROM jobs"
    " WHERE reserved_by IS NOT NULL"
    " AND name IN (SELECT value FROM json_each(?1)) GROUP BY 1, 2";

// Up to ?4 ready jobs of the names ?2 in claim order, at ?1, unless the
// queue ?3 is paused: not those of the full keys ?5 and, in a sequence
// (?6), only the oldest job of each key: none of a key one of whose jobs
// holds a reservation (?8), none behind an older unreserved job of its
// key, and none of a key a failed job holds (?7). With a rate limit (?9):
// not those whose rate key has no
// start left (`rcap`: each key's starts by the generic cell rate
// algorithm, `tat` its theoretical arrival time, `t` the time one start
// takes to come back, `(burst - 1) * t` the most it may run ahead), and
// each with its rate key, its cost (at most the burst), its key's starts
// and the store's now.
#define BG_JOBS_SQLITE_CANDIDATES(rate_with, rate_cols, rate_join,             \
                                  rate_filter)                                 \
  rate_with "SELECT c.id, c.concurrency_key, c.second_concurrency_key"         \
  rate_cols " FROM jobs c" rate_join                                           \
  " WHERE c.reserved_by IS NULL AND c.available_at <= ?1"                      \
  "   AND c.name IN (SELECT value FROM json_each(?2))"                         \
  "   AND (c.expires_at IS NULL OR c.expires_at > ?1)"                         \
  "   AND NOT EXISTS (SELECT 1 FROM bg_jobs_paused"                            \
  "     WHERE kind = 'queue' AND name = ?3)"                                   \
  "   AND (c.concurrency_key IS NULL OR c.concurrency_key NOT IN"              \
  "     (SELECT value FROM json_each(?5)))"                                    \
  "   AND (c.second_concurrency_key IS NULL OR c.second_concurrency_key"       \
  "     NOT IN (SELECT value FROM json_each(?5)))"                             \
  "   AND (c.concurrency_key IS NULL OR ?6 = 0"                                \
  "     OR (c.concurrency_key NOT IN (SELECT value FROM json_each(?8))"        \
  "       AND NOT EXISTS (SELECT 1 FROM jobs o"                                \
  "         WHERE o.concurrency_key = c.concurrency_key AND o.id < c.id"       \
  "         AND o.seq = 1 AND o.reserved_by IS NULL"                           \
  "         AND o.name IN (SELECT value FROM json_each(?2)))"                  \
  "       AND (?7 = 0 OR NOT EXISTS (SELECT 1 FROM jobs_failed f"              \
  "         WHERE f.concurrency_key = c.concurrency_key"                       \
  "         AND f.cancelled = 0 AND f.unblocked = 0"                           \
  "         AND f.name IN (SELECT value FROM json_each(?2))))))" rate_filter   \
  " ORDER BY c.priority, c.available_at, c.id LIMIT ?4"

const char sql_limited_candidates[] = BG_JOBS_SQLITE_CANDIDATES("", "", "", "");

const char sql_rated_candidates[] = BG_JOBS_SQLITE_CANDIDATES(
    "WITH rl AS MATERIALIZED (SELECT burst, period_ms * 1.0 / allowed AS t, "
    BG_JOBS_SQLITE_NOW_MS " AS now FROM bg_jobs_rate_limits"
    "   WHERE name = ?9),"
    " rcap AS MATERIALIZED (SELECT k.key AS k, CASE"
    "   WHEN k.blocked_until > rl.now THEN 0"
    "   WHEN rl.now + (rl.burst - 1) * rl.t - max(k.tat, rl.now) < 0 THEN 0"
    "   ELSE CAST((rl.now + (rl.burst - 1) * rl.t - max(k.tat, rl.now))"
    "     / rl.t + 1e-9 AS INTEGER) + 1 END AS cap"
    "   FROM bg_jobs_rate_keys k, rl WHERE k.name = ?9) ",
    ", CASE WHEN rl.t IS NOT NULL THEN coalesce(ro.rate_key, '') END,"
    " min(coalesce(ro.cost, 1), rl.burst), coalesce(r.cap, rl.burst),"
    " CAST(rl.now AS INTEGER)",
    " LEFT JOIN bg_jobs_rate_of ro ON ro.job_id = c.id LEFT JOIN rl ON 1"
    " LEFT JOIN rcap r ON r.k = coalesce(ro.rate_key, '')",
    " AND coalesce(ro.rate_key, '') NOT IN (SELECT k FROM rcap WHERE cap <= 0)");

// Marks the keyed jobs ?1 names as in a sequence (`seq`), which puts
// those not reserved in the index of keys: a sequenced queue's claim runs
// it first, so that every keyed job of its names is there.
const char sql_mark_sequenced[] =
    "UPDATE jobs SET seq = 1 WHERE seq = 0 AND concurrency_key IS NOT NULL"
    " AND name IN (SELECT value FROM json_each(?1))";

// Reserves the jobs ?3 (a JSON array of ids) still unreserved for ?2 at ?1.
const char sql_limited_reserve[] =
    "UPDATE jobs SET reserved_at = ?1, reserved_by = ?2,"
    " attempts = attempts + 1"
    " WHERE id IN (SELECT value FROM json_each(?3)) AND reserved_by IS NULL"
    " RETURNING " BG_JOBS_JOB_COLUMNS;

} // namespace

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

// A blocked key's waiting jobs: those marked as in a sequence, by the
// index of keys, and those enqueued or retried since its queue's last
// claim, not marked yet.
const char sql_blocked_keys[] =
    "SELECT f.concurrency_key, min(f.id), (SELECT count(*) FROM jobs j"
    "   WHERE j.concurrency_key = f.concurrency_key AND j.seq = 1"
    "   AND j.reserved_by IS NULL"
    "   AND j.name IN (SELECT value FROM json_each(?2)))"
    " + (SELECT count(*) FROM jobs j WHERE j.seq = 0"
    "   AND j.concurrency_key IS NOT NULL"
    "   AND j.concurrency_key = f.concurrency_key AND j.reserved_by IS NULL"
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

namespace bg_jobs {

caf::expected<std::vector<job>>
sqlite_adapter::reserve_limited(const reserve_params& params,
                                const std::string& names) {
  std::vector<job> result;
  auto stored = stored_limits(params.queue);
  if (!stored)
    return std::move(stored.error());
  auto limits = detail::queue_limits::of(*stored);
  if (limits.sequenced) {
    auto marked = execute(
        sql_mark_sequenced, [&](statement& q) { q.bind(1, names); },
        "marking the jobs of a sequence");
    if (!marked)
      return std::move(marked.error());
  }
  detail::held_slots held;
  if (limits.counts_slots()) {
    auto s = prepare(sql_limited_held);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, names);
    int rc;
    while ((rc = q.step()) == SQLITE_ROW)
      held.add(column_text_or_null(q.get(), 0),
               column_text_or_null(q.get(), 1),
               sqlite3_column_int64(q.get(), 2));
    if (rc != SQLITE_DONE)
      return failure(rc, "counting held slots");
  }
  auto full = nlohmann::json(detail::full_keys(limits, held)).dump();
  auto busy = nlohmann::json(detail::busy_heads(limits, held)).dump();
  bool rated = !params.rate_limit.empty();
  auto now = to_unix_ms(options_.clock->now());
  auto reserved_at = now;
  std::vector<detail::admission_candidate> candidates;
  {
    auto s = prepare(rated ? sql_rated_candidates : sql_limited_candidates);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, now).bind(2, names).bind(3, params.queue);
    q.bind(4, int64_t{limited_scan(params.limit)}).bind(5, full);
    q.bind(6, int64_t{limits.sequenced}).bind(7, int64_t{limits.failed_holds});
    q.bind(8, busy);
    if (rated)
      q.bind(9, params.rate_limit);
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) {
      auto* row = q.get();
      detail::admission_candidate c;
      c.id = sqlite3_column_int64(row, 0);
      c.key = column_text_or_null(row, 1);
      c.second_key = column_text_or_null(row, 2);
      if (rated && sqlite3_column_type(row, 3) != SQLITE_NULL) {
        c.rate_key = column_text(row, 3);
        c.rate_units = sqlite3_column_int64(row, 4);
        c.rate_room = sqlite3_column_int64(row, 5);
        // A start is stamped with the store's time the rate counted it at.
        reserved_at = sqlite3_column_int64(row, 6);
      }
      candidates.push_back(std::move(c));
    }
    if (rc != SQLITE_DONE)
      return failure(rc, "reading ready jobs");
  }
  auto ids = detail::admit(candidates, limits, held, params.limit);
  if (ids.empty())
    return result;
  auto chosen = nlohmann::json(ids).dump();
  auto s = prepare(sql_limited_reserve);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, reserved_at).bind(2, params.reserved_by).bind(3, chosen);
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    result.emplace_back(read_job(q.get()));
  if (rc != SQLITE_DONE)
    return failure(rc, "reserving jobs");
  return result;
}

} // namespace bg_jobs
