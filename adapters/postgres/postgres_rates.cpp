// The PostgreSQL adapter's rate limits: their definitions, their keys'
// state, and what code outside jobs takes from them. What a claim takes is
// in `impl::limited_claim`; claims and takings of one rate limit hold its
// advisory lock, so a key's state is read and written by one transaction
// at a time.

#include "bg_jobs/adapters/detail/rates.hpp"
#include "bg_jobs/adapters/postgres/detail/postgres_internal.hpp"
#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"

#include <cmath>

namespace bg_jobs {

using namespace detail::postgres;

namespace {

/// A stored rate limit and the server's now.
struct stored_rate {
  rate_limit limit;
  double now = 0;

  detail::rate_numbers numbers() const {
    return {limit.allowed, limit.period.count(), limit.bucket()};
  }
};

std::optional<stored_rate> read_rate(pqxx::transaction_base& tx,
                                     const std::string& name) {
  auto r = tx.exec_params("SELECT allowed, period_ms, burst, " BG_JOBS_PG_NOW_MS
                          " FROM bg_jobs_rate_limits WHERE name = $1",
                          name);
  if (r.empty())
    return std::nullopt;
  stored_rate s;
  s.limit.name = name;
  s.limit.allowed = r[0][0].as<int64_t>();
  s.limit.period = std::chrono::milliseconds{r[0][1].as<int64_t>()};
  s.limit.burst = r[0][2].as<int64_t>();
  s.now = r[0][3].as<double>();
  return s;
}

} // namespace

caf::expected<void>
postgres_adapter::set_rate_limit(const rate_limit& limit) {
  if (auto err = check_rate_limit(limit))
    return err;
  auto done = impl_->in_statement(
      "setting a rate limit", [&](pqxx::transaction_base& tx) {
        tx.exec_params(
            "INSERT INTO bg_jobs_rate_limits (name, allowed, period_ms, burst,"
            " updated_at) VALUES ($1, $2, $3, $4, now())"
            " ON CONFLICT (name) DO UPDATE SET allowed = excluded.allowed,"
            " period_ms = excluded.period_ms, burst = excluded.burst,"
            " updated_at = excluded.updated_at",
            limit.name, limit.allowed, int64_t{limit.period.count()},
            limit.bucket());
        return true;
      });
  if (!done)
    return std::move(done.error());
  return caf::unit;
}

caf::expected<std::optional<rate_limit_state>>
postgres_adapter::rate_state(const std::string& name, int max_keys) {
  if (auto err = detail::check_rate_key(name, {}))
    return err;
  return impl_->in_transaction(
      "reading a rate limit",
      [&](pqxx::work& tx) -> std::optional<rate_limit_state> {
        auto found = read_rate(tx, name);
        if (!found)
          return std::nullopt;
        rate_limit_state out;
        out.limit = found->limit;
        auto n = found->numbers();
        auto rows = tx.exec_params(
            "SELECT key, tat, blocked_until FROM bg_jobs_rate_keys"
            " WHERE name = $1 AND (tat > $2 OR blocked_until > $2)"
            " ORDER BY greatest(tat, blocked_until) DESC, key LIMIT $3",
            name, found->now, std::clamp(max_keys, 0, 10000));
        for (const auto& r : rows) {
          rate_key_state k;
          k.key = r[0].as<std::string>();
          auto tat = r[1].as<double>();
          auto blocked = r[2].as<double>();
          k.available = n.available(tat, blocked, found->now);
          k.blocked_ms =
              blocked > found->now
                  ? static_cast<int64_t>(std::ceil(blocked - found->now))
                  : 0;
          out.keys.push_back(std::move(k));
        }
        return out;
      });
}

caf::expected<rate_decision>
postgres_adapter::consume_rate(const std::string& name, const std::string& key,
                               int64_t cost) {
  if (auto err = detail::check_rate_key(name, key))
    return err;
  caf::error refused;
  auto r = impl_->in_transaction(
      "taking from a rate limit", [&](pqxx::work& tx) -> rate_decision {
        tx.exec_params("SELECT pg_advisory_xact_lock(7220160, hashtext($1))",
                       name);
        rate_decision d;
        auto found = read_rate(tx, name);
        if (!found) {
          refused = make_error(errc::invalid_argument,
                               "no rate limit named '" + printable(name) +
                                   "'");
          return d;
        }
        auto n = found->numbers();
        if (cost < 1 || cost > n.burst) {
          refused = make_error(errc::invalid_argument,
                               "the cost must be 1 to the burst of '" + name +
                                   "' (" + std::to_string(n.burst) +
                                   "), got " + std::to_string(cost));
          return d;
        }
        double tat = 0, blocked = 0;
        auto k = tx.exec_params("SELECT tat, blocked_until FROM"
                                " bg_jobs_rate_keys WHERE name = $1"
                                " AND key = $2 FOR UPDATE",
                                name, key);
        if (!k.empty()) {
          tat = k[0][0].as<double>();
          blocked = k[0][1].as<double>();
        }
        d.wait_ms = n.wait(tat, blocked, found->now, cost);
        d.admitted = d.wait_ms == 0;
        if (d.admitted)
          tx.exec_params("INSERT INTO bg_jobs_rate_keys (name, key, tat)"
                         " VALUES ($1, $2, $3) ON CONFLICT (name, key)"
                         " DO UPDATE SET tat = excluded.tat",
                         name, key, n.charged(tat, found->now, cost));
        return d;
      });
  if (refused)
    return refused;
  return r;
}

caf::expected<void> postgres_adapter::block_rate_key(const std::string& name,
                                                     const std::string& key,
                                                     int64_t ms) {
  if (auto err = detail::check_rate_key(name, key))
    return err;
  if (ms < 0 || ms > detail::max_block_ms)
    return make_error(errc::invalid_argument,
                      "a rate key is blocked for 0 ms to 30 days, got " +
                          std::to_string(ms) + " ms");
  auto done = impl_->in_statement(
      "blocking a rate key", [&](pqxx::transaction_base& tx) {
        tx.exec_params(
            "INSERT INTO bg_jobs_rate_keys AS k (name, key, blocked_until)"
            " VALUES ($1, $2, " BG_JOBS_PG_NOW_MS " + $3)"
            " ON CONFLICT (name, key) DO UPDATE SET blocked_until ="
            " greatest(k.blocked_until, excluded.blocked_until)",
            name, key, ms);
        return true;
      });
  if (!done)
    return std::move(done.error());
  return caf::unit;
}

caf::expected<std::optional<int64_t>>
postgres_adapter::rate_wait(const reserve_params& params) {
  if (params.rate_limit.empty() || params.job_names.empty())
    return std::optional<int64_t>{};
  auto names = nlohmann::json(params.job_names).dump();
  return impl_->in_statement(
      "reading when a rate allows the next start",
      [&](pqxx::transaction_base& tx) -> std::optional<int64_t> {
        // Per key among the first thousand ready jobs in claim order: when
        // its first job's cost fits.
        auto r = tx.exec_params(
            "WITH rl AS (SELECT burst, period_ms::float8 / allowed AS t, "
            BG_JOBS_PG_NOW_MS " AS now FROM bg_jobs_rate_limits"
            "   WHERE name = $1),"
            " ready AS (SELECT id, priority, available_at FROM jobs"
            "   WHERE reserved_by IS NULL AND available_at <= "
            BG_JOBS_TS("$2")
            "   AND name = ANY (ARRAY(SELECT json_array_elements_text("
            "     $3::json)))"
            "   ORDER BY priority, available_at, id LIMIT 1000),"
            " firsts AS (SELECT DISTINCT ON (coalesce(ro.rate_key, ''))"
            "   coalesce(ro.rate_key, '') AS k, coalesce(ro.cost, 1) AS cost"
            "   FROM ready r LEFT JOIN bg_jobs_rate_of ro ON ro.job_id = r.id"
            "   ORDER BY coalesce(ro.rate_key, ''), r.priority,"
            "   r.available_at, r.id),"
            " due AS (SELECT greatest(k.blocked_until, greatest(k.tat, rl.now)"
            "   + (least(f.cost, rl.burst) - 1) * rl.t"
            "   - (rl.burst - 1) * rl.t) AS at, rl.now AS now"
            "   FROM firsts f CROSS JOIN rl JOIN bg_jobs_rate_keys k"
            "   ON k.name = $1 AND k.key = f.k)"
            " SELECT min(at - now) FROM due WHERE at > now",
            params.rate_limit, impl_->now_ms(), names);
        if (r.empty() || r[0][0].is_null())
          return std::nullopt;
        return std::max<int64_t>(
            1, static_cast<int64_t>(std::ceil(r[0][0].as<double>())));
      });
}

} // namespace bg_jobs
