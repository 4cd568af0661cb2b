#include "bg_jobs/actors/detail/job_rules.hpp"

#include "bg_jobs/actors/detail/sealing.hpp"

namespace bg_jobs::detail {

job_rules::job_rules(const queue_spec& spec, std::string owner,
                     std::shared_ptr<const keyring> keys)
    : queue_(spec.name()), owner_(std::move(owner)),
      queue_policy_(retry_settings{spec.max_retries(), spec.retry_backoff()}),
      queue_timeout_(spec.job_timeout()) {
  keys_ = std::move(keys);
  timeouts_ = queue_timeout_.has_value();
  if (spec.rate_limit())
    rate_limit_ = spec.rate_limit()->name;
  for (auto& w : spec.workers()) {
    if (!workers_.emplace(w.job_name(), w).second)
      continue;
    names_.push_back(w.job_name());
    timeouts_ = timeouts_ || w.timeout().has_value();
    if (w.max_retries())
      worker_policies_.emplace(
          w.job_name(),
          retry_policy{{*w.max_retries(),
                        w.retry_backoff().value_or(spec.retry_backoff())}});
  }
}

caf::error job_rules::open(job& j) const {
  return open_job(j, keys_.get());
}

const worker* job_rules::worker_of(const std::string& name) const {
  auto i = workers_.find(name);
  return i != workers_.end() ? &i->second : nullptr;
}

const retry_policy& job_rules::policy(const job& j) const {
  auto i = worker_policies_.find(j.name);
  return i != worker_policies_.end() ? i->second : queue_policy_;
}

std::optional<std::chrono::milliseconds>
job_rules::timeout_of(const std::string& name) const {
  if (auto w = worker_of(name); w && w->timeout())
    return w->timeout();
  return queue_timeout_;
}

pending_outcome job_rules::decide(const job& j, const outcome& o,
                                  timestamp now, std::minstd_rand& rng,
                                  std::chrono::microseconds duration) const {
  auto d = policy(j).on_outcome(j, o, owner_, now, rng);
  if (d.change.block_ms > 0)
    d.change.rate_limit = rate_limit_;
  return pending_outcome::of(std::move(d), j, queue_, duration);
}

pending_outcome job_rules::release(job j, const std::string& why,
                                   bool count_attempt, timestamp now) const {
  auto d = policy(j).on_release(j, why, count_attempt, owner_, now);
  return pending_outcome::of(std::move(d), std::move(j), queue_);
}

} // namespace bg_jobs::detail
