#include "bg_jobs/core/queue_spec.hpp"

#include <set>

#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/job_request.hpp"

namespace bg_jobs {

caf::error queue_spec::validate() const {
  auto fail = [&](const std::string& what) {
    return make_error(errc::invalid_config, "queue '" + name_ + "': " + what);
  };
  if (auto why = name_problem(name_); !why.empty())
    return make_error(errc::invalid_config,
                      "queue name '" + printable(name_) + "' " + why);
  if (name_.find('/') != std::string::npos)
    return fail("a queue name may not contain '/'");
  if (workers_.empty())
    return fail("has no workers");
  if (max_concurrent_jobs_ < 1 || max_concurrent_jobs_ > max_concurrency)
    return fail("max_concurrent_jobs must be 1 to " +
                std::to_string(max_concurrency) + ", got " +
                std::to_string(max_concurrent_jobs_));
  if (poll_interval_ && poll_interval_->count() <= 0)
    return fail("poll_interval must be positive, got " +
                std::to_string(poll_interval_->count()) + " ms");
  if (prefetch_ < 0 || prefetch_ > 1000)
    return fail("prefetch must be 0 to 1000, got " + std::to_string(prefetch_));
  if (max_retries_ < 0)
    return fail("max_retries may not be negative, got " +
                std::to_string(max_retries_));
  if (init_timeout_.count() <= 0)
    return fail("init_timeout must be positive, got " +
                std::to_string(init_timeout_.count()) + " ms");
  if (auto err = check_limits(limits_))
    return fail(message_of(err));
  if (rate_limit_)
    if (auto err = check_rate_limit(*rate_limit_))
      return fail(message_of(err));
  if (job_timeout_ && job_timeout_->count() <= 0)
    return fail("job_timeout must be positive, got " +
                std::to_string(job_timeout_->count()) + " ms");
  std::set<std::string> names;
  for (auto& w : workers_) {
    if (auto why = name_problem(w.job_name()); !why.empty())
      return fail("worker job name '" + printable(w.job_name()) + "' " + why);
    if (w.timeout() && w.timeout()->count() <= 0)
      return fail("worker '" + w.job_name() + "' has a non-positive timeout");
    if (w.max_retries() && *w.max_retries() < 0)
      return fail("worker '" + w.job_name() +
                  "': max_retries may not be negative, got " +
                  std::to_string(*w.max_retries()));
    if (!names.insert(w.job_name()).second)
      return fail("two workers handle job '" + w.job_name() + "'");
  }
  return caf::none;
}

} // namespace bg_jobs
