// The SQLite adapter's rate limits: their definitions, their keys' state,
// what the claim of a queue with a rate limit takes from them, and what
// code outside jobs takes. Writes take turns on SQLite, so a key's state is
// read and written by one transaction at a time.

#include "bg_jobs/adapters/detail/rates.hpp"
#include "bg_jobs/adapters/sqlite/detail/sqlite_internal.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/job_request.hpp"

namespace bg_jobs {

using namespace detail::sqlite;

namespace {

const char sql_rate_put[] =
    "INSERT INTO bg_jobs_rate_limits (name, allowed, period_ms, burst,"
    " updated_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO UPDATE"
    " SET allowed = excluded.allowed, period_ms = excluded.period_ms,"
    " burst = excluded.burst, updated_at = excluded.updated_at";

const char sql_rate_get[] =
    "SELECT allowed, period_ms, burst, " BG_JOBS_SQLITE_NOW_MS
    " FROM bg_jobs_rate_limits WHERE name = ?1";

const char sql_rate_key_get[] =
    "SELECT tat, blocked_until FROM bg_jobs_rate_keys"
    " WHERE name = ?1 AND key = ?2";

const char sql_rate_key_put[] =
    "INSERT INTO bg_jobs_rate_keys (name, key, tat) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (name, key) DO UPDATE SET tat = excluded.tat";

const char sql_rate_block[] =
    "INSERT INTO bg_jobs_rate_keys (name, key, blocked_until)"
    " VALUES (?1, ?2, " BG_JOBS_SQLITE_NOW_MS " + ?3)"
    " ON CONFLICT (name, key) DO UPDATE"
    " SET blocked_until = max(blocked_until, excluded.blocked_until)";

// The keys not refilled (or blocked), the least available first.
const char sql_rate_keys[] =
    "SELECT key, tat, blocked_until FROM bg_jobs_rate_keys"
    " WHERE name = ?1 AND (tat > ?2 OR blocked_until > ?2)"
    " ORDER BY max(tat, blocked_until) DESC, key LIMIT ?3";

// A handler's back-pressure: blocks the key of job ?4 (if it has none, the
// key '') of the rate limit ?1 for ?3 ms.
const char sql_rate_block_job[] =
    "INSERT INTO bg_jobs_rate_keys (name, key, blocked_until)"
    " SELECT ?1, coalesce((SELECT rate_key FROM bg_jobs_rate_of"
    "   WHERE job_id = ?4), ''), " BG_JOBS_SQLITE_NOW_MS " + ?3 WHERE true"
    " ON CONFLICT (name, key) DO UPDATE"
    " SET blocked_until = max(blocked_until, excluded.blocked_until)";

const char sql_rate_note[] =
    "INSERT OR IGNORE INTO bg_jobs_rate_of (job_id, rate_key, cost)"
    " VALUES (?1, ?2, ?3)";

// Takes the costs (each at most the burst) of the jobs ?2 (a JSON array of
// ids) from their keys' buckets of the rate limit ?1.
const char sql_rate_charge[] =
    "WITH rl AS (SELECT burst, period_ms * 1.0 / allowed AS t, "
    BG_JOBS_SQLITE_NOW_MS " AS now FROM bg_jobs_rate_limits WHERE name = ?1),"
    " c AS (SELECT coalesce(ro.rate_key, '') AS k,"
    "   sum(min(coalesce(ro.cost, 1), rl.burst)) AS units"
    "   FROM json_each(?2) j LEFT JOIN bg_jobs_rate_of ro"
    "   ON ro.job_id = j.value, rl GROUP BY 1)"
    " INSERT INTO bg_jobs_rate_keys (name, key, tat)"
    " SELECT ?1, c.k, rl.now + c.units * rl.t FROM c, rl WHERE true"
    " ON CONFLICT (name, key) DO UPDATE SET tat = max(tat, "
    BG_JOBS_SQLITE_NOW_MS ") + (excluded.tat - " BG_JOBS_SQLITE_NOW_MS ")";

// The wait until the first of the queue's ready jobs (among the first
// thousand in claim order) that the rate limit ?1 holds back could start:
// per key, its first job's cost against the key's state.
const char sql_rate_wait[] =
    "WITH rl AS (SELECT burst, period_ms * 1.0 / allowed AS t, "
    BG_JOBS_SQLITE_NOW_MS " AS now FROM bg_jobs_rate_limits WHERE name = ?1),"
    " ready AS (SELECT id, priority, available_at FROM jobs"
    "   WHERE reserved_by IS NULL AND available_at <= ?2"
    "   AND name IN (SELECT value FROM json_each(?3))"
    "   ORDER BY priority, available_at, id LIMIT 1000),"
    " firsts AS (SELECT k, cost FROM (SELECT coalesce(ro.rate_key, '') AS k,"
    "   coalesce(ro.cost, 1) AS cost, row_number() OVER (PARTITION BY"
    "   coalesce(ro.rate_key, '') ORDER BY r.priority, r.available_at, r.id)"
    "   AS rn FROM ready r LEFT JOIN bg_jobs_rate_of ro ON ro.job_id = r.id)"
    "   WHERE rn = 1),"
    " due AS (SELECT max(k.blocked_until, max(k.tat, rl.now)"
    "   + (min(f.cost, rl.burst) - 1) * rl.t - (rl.burst - 1) * rl.t) AS at,"
    "   rl.now AS now FROM firsts f, rl JOIN bg_jobs_rate_keys k"
    "   ON k.name = ?1 AND k.key = f.k)"
    " SELECT min(at) - min(now) FROM due WHERE at > now";

} // namespace

caf::expected<void> sqlite_adapter::note_extras(int64_t id,
                                                const job_request& r,
                                                timestamp now) {
  if (auto at = r.resolve_expires_at(now)) {
    auto ms = to_unix_ms(*at);
    auto done = execute(
        "UPDATE jobs SET expires_at = ?2 WHERE id = ?1",
        [&](statement& q) { q.bind(1, id).bind(2, ms); },
        "recording a job's expiry");
    if (!done)
      return std::move(done.error());
  }
  if (r.rate_key().empty() && r.rate_cost() == 1)
    return caf::unit;
  auto& key = r.rate_key();
  auto done = execute(
      sql_rate_note,
      [&](statement& q) { q.bind(1, id).bind(2, key).bind(3, r.rate_cost()); },
      "recording a job's rate key");
  if (!done)
    return std::move(done.error());
  return caf::unit;
}

caf::expected<void> sqlite_adapter::block_job_rate(const completion& c) {
  auto ms = std::clamp<int64_t>(c.block_ms, 0, detail::max_block_ms);
  auto done = execute(
      sql_rate_block_job,
      [&](statement& q) {
        q.bind(1, c.rate_limit).bind(3, ms).bind(4, c.job_id);
      },
      "blocking a rate key");
  if (!done)
    return std::move(done.error());
  return caf::unit;
}

caf::expected<void>
sqlite_adapter::charge_rates(const std::string& name,
                             const std::vector<job>& reserved) {
  if (reserved.empty())
    return caf::unit;
  nlohmann::json ids = nlohmann::json::array();
  for (auto& j : reserved)
    ids.push_back(j.id);
  auto text = ids.dump();
  auto done = execute(
      sql_rate_charge, [&](statement& q) { q.bind(1, name).bind(2, text); },
      "taking the claimed jobs' rate");
  if (!done)
    return std::move(done.error());
  return caf::unit;
}

caf::expected<void> sqlite_adapter::set_rate_limit(const rate_limit& limit) {
  if (auto err = check_rate_limit(limit))
    return err;
  auto now = to_unix_ms(options_.clock->now());
  auto done = execute(
      sql_rate_put,
      [&](statement& q) {
        q.bind(1, limit.name).bind(2, limit.allowed);
        q.bind(3, int64_t{limit.period.count()}).bind(4, limit.bucket());
        q.bind(5, now);
      },
      "setting a rate limit");
  if (!done)
    return std::move(done.error());
  return caf::unit;
}

namespace {

/// A stored rate limit and the store's now, as read by `sql_rate_get`.
struct stored_rate {
  rate_limit limit;
  double now = 0;

  detail::rate_numbers numbers() const {
    return {limit.allowed, limit.period.count(), limit.bucket()};
  }
};

/// Steps `sql_rate_get` (bound to `name`): the limit, if stored, goes to
/// `out`. Returns the step's result code.
int step_rate(sqlite3_stmt* s, const std::string& name,
              std::optional<stored_rate>& out) {
  int rc = sqlite3_step(s);
  if (rc != SQLITE_ROW)
    return rc;
  out.emplace();
  out->limit.name = name;
  out->limit.allowed = sqlite3_column_int64(s, 0);
  out->limit.period = std::chrono::milliseconds{sqlite3_column_int64(s, 1)};
  out->limit.burst = sqlite3_column_int64(s, 2);
  out->now = sqlite3_column_double(s, 3);
  return rc;
}


} // namespace

caf::expected<std::optional<rate_limit_state>>
sqlite_adapter::rate_state(const std::string& name, int max_keys) {
  if (auto err = detail::check_rate_key(name, {}))
    return err;
  auto s = prepare(sql_rate_get);
  if (!s)
    return std::move(s.error());
  std::optional<stored_rate> found;
  {
    statement q{*s};
    q.bind(1, name);
    if (int rc = step_rate(q.get(), name, found);
        rc != SQLITE_ROW && rc != SQLITE_DONE)
      return failure(rc, "reading a rate limit");
  }
  if (!found)
    return std::optional<rate_limit_state>{};
  rate_limit_state out;
  out.limit = found->limit;
  auto n = found->numbers();
  auto keys = prepare(sql_rate_keys);
  if (!keys)
    return std::move(keys.error());
  statement q{*keys};
  q.bind(1, name);
  sqlite3_bind_double(q.get(), 2, found->now);
  q.bind(3, int64_t{std::clamp(max_keys, 0, 10000)});
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    rate_key_state k;
    k.key = column_text(q.get(), 0);
    auto tat = sqlite3_column_double(q.get(), 1);
    auto blocked = sqlite3_column_double(q.get(), 2);
    k.available = n.available(tat, blocked, found->now);
    k.blocked_ms = blocked > found->now
                       ? static_cast<int64_t>(std::ceil(blocked - found->now))
                       : 0;
    out.keys.push_back(std::move(k));
  }
  if (rc != SQLITE_DONE)
    return failure(rc, "reading a rate limit's keys");
  return std::optional<rate_limit_state>{std::move(out)};
}

caf::expected<rate_decision>
sqlite_adapter::consume_rate(const std::string& name, const std::string& key,
                             int64_t cost) {
  if (auto err = detail::check_rate_key(name, key))
    return err;
  return in_transaction([&]() -> caf::expected<rate_decision> {
    auto s = prepare(sql_rate_get);
    if (!s)
      return std::move(s.error());
    std::optional<stored_rate> found;
    {
      statement q{*s};
      q.bind(1, name);
      if (int rc = step_rate(q.get(), name, found);
          rc != SQLITE_ROW && rc != SQLITE_DONE)
        return failure(rc, "reading a rate limit");
    }
    if (!found)
      return make_error(errc::invalid_argument,
                        "no rate limit named '" + printable(name) + "'");
    auto n = found->numbers();
    if (cost < 1 || cost > n.burst)
      return make_error(errc::invalid_argument,
                        "the cost must be 1 to the burst of '" + name +
                            "' (" + std::to_string(n.burst) + "), got " +
                            std::to_string(cost));
    double tat = 0, blocked = 0;
    {
      auto k = prepare(sql_rate_key_get);
      if (!k)
        return std::move(k.error());
      statement q{*k};
      q.bind(1, name).bind(2, key);
      int rc = q.step();
      if (rc == SQLITE_ROW) {
        tat = sqlite3_column_double(q.get(), 0);
        blocked = sqlite3_column_double(q.get(), 1);
      } else if (rc != SQLITE_DONE) {
        return failure(rc, "reading a rate key");
      }
    }
    rate_decision d;
    d.wait_ms = n.wait(tat, blocked, found->now, cost);
    d.admitted = d.wait_ms == 0;
    if (!d.admitted)
      return d;
    auto put = prepare(sql_rate_key_put);
    if (!put)
      return std::move(put.error());
    statement q{*put};
    q.bind(1, name).bind(2, key);
    sqlite3_bind_double(q.get(), 3, n.charged(tat, found->now, cost));
    if (int rc = q.step(); rc != SQLITE_DONE)
      return failure(rc, "taking from a rate key");
    return d;
  });
}

caf::expected<void> sqlite_adapter::block_rate_key(const std::string& name,
                                                   const std::string& key,
                                                   int64_t ms) {
  if (auto err = detail::check_rate_key(name, key))
    return err;
  if (ms < 0 || ms > detail::max_block_ms)
    return make_error(errc::invalid_argument,
                      "a rate key is blocked for 0 ms to 30 days, got " +
                          std::to_string(ms) + " ms");
  auto done = execute(
      sql_rate_block,
      [&](statement& q) { q.bind(1, name).bind(2, key).bind(3, ms); },
      "blocking a rate key");
  if (!done)
    return std::move(done.error());
  return caf::unit;
}

caf::expected<std::optional<int64_t>>
sqlite_adapter::rate_wait(const reserve_params& params) {
  if (params.rate_limit.empty() || params.job_names.empty())
    return std::optional<int64_t>{};
  auto s = prepare(sql_rate_wait);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  auto names = nlohmann::json(params.job_names).dump();
  q.bind(1, params.rate_limit)
      .bind(2, to_unix_ms(options_.clock->now()))
      .bind(3, names);
  int rc = q.step();
  if (rc != SQLITE_ROW)
    return failure(rc, "reading when a rate allows the next start");
  if (sqlite3_column_type(q.get(), 0) == SQLITE_NULL)
    return std::optional<int64_t>{};
  auto ms = sqlite3_column_double(q.get(), 0);
  return std::optional<int64_t>{
      std::max<int64_t>(1, static_cast<int64_t>(std::ceil(ms)))};
}

} // namespace bg_jobs
