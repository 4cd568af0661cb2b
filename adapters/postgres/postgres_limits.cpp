// The PostgreSQL adapter's concurrency limits: the stored limits, the keys
// in use and the keys a sequence's failed job blocks. The claim of a
// limited queue is `impl::limited_claim`.

#include "bg_jobs/adapters/postgres/detail/postgres_internal.hpp"
#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"

namespace bg_jobs {

using namespace detail::postgres;

caf::expected<void>
postgres_adapter::set_limits(const std::string& queue,
                             const std::vector<concurrency_limit>& limits) {
  if (auto err = check_limits(queue, limits))
    return err;
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("setting limits", [&](pqxx::work& tx) {
    tx.exec_prepared("bgj_limits_clear", queue);
    for (const auto& l : limits)
      tx.exec_prepared("bgj_limit_put", queue, to_string(l.kind), l.key,
                       l.max_running, now);
    return true;
  });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<void>
postgres_adapter::set_limit(const std::string& queue,
                            const concurrency_limit& limit) {
  if (auto err = check_limit_change(queue, limit))
    return err;
  auto now = impl_->now_ms();
  auto r = impl_->in_statement("setting a limit", [&](pqxx::transaction_base&
                                                          tx) {
    if (limit.max_running == 0)
      tx.exec_prepared("bgj_limit_delete", queue, to_string(limit.kind),
                       limit.key);
    else
      tx.exec_prepared("bgj_limit_put", queue, to_string(limit.kind),
                       limit.key, limit.max_running, now);
    return true;
  });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<std::vector<concurrency_limit>>
postgres_adapter::stored_limits(const std::string& queue) {
  return impl_->in_statement(
      "reading limits", [&](pqxx::transaction_base& tx) {
        std::vector<concurrency_limit> out;
        for (const auto& row : tx.exec_prepared("bgj_limits_of", queue))
          out.push_back(limit_of_row(row, 0));
        return out;
      });
}

caf::expected<std::vector<key_usage>>
postgres_adapter::keys_in_use(const std::string& queue,
                              const std::vector<std::string>& job_names,
                              int max_keys) {
  auto limits = stored_limits(queue);
  if (!limits)
    return std::move(limits.error());
  auto names = nlohmann::json(job_names).dump();
  return impl_->in_statement(
      "reading the keys in use", [&](pqxx::transaction_base& tx) {
        std::vector<key_usage> out;
        for (const auto& row : tx.exec_prepared("bgj_keys_in_use", names,
                                                impl_->now_ms(), max_keys)) {
          key_usage u;
          u.key = row[0].as<std::string>();
          u.running = row[1].as<int64_t>();
          u.waiting = row[2].as<int64_t>();
          u.max_running = limit_of_key(*limits, u.key);
          out.push_back(std::move(u));
        }
        return out;
      });
}

caf::expected<std::vector<blocked_key>>
postgres_adapter::blocked_keys(const std::string& queue,
                               const std::vector<std::string>& job_names) {
  auto names = nlohmann::json(job_names).dump();
  return impl_->in_statement(
      "reading the blocked keys", [&](pqxx::transaction_base& tx) {
        std::vector<blocked_key> out;
        for (const auto& row :
             tx.exec_prepared("bgj_blocked_keys", queue, names))
          out.push_back({row[0].as<std::string>(), row[1].as<int64_t>(),
                         row[2].as<int64_t>()});
        return out;
      });
}

caf::expected<int64_t>
postgres_adapter::unblock_key(const std::vector<std::string>& job_names,
                              const std::string& key) {
  auto names = nlohmann::json(job_names).dump();
  return impl_->in_statement(
      "unblocking a key", [&](pqxx::transaction_base& tx) {
        return static_cast<int64_t>(
            tx.exec_prepared("bgj_unblock_key", names, key).affected_rows());
      });
}

} // namespace bg_jobs
