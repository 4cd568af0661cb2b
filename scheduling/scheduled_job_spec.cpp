#include "bg_jobs/scheduling/scheduled_job_spec.hpp"

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

caf::expected<schedule> scheduled_job_spec::build_schedule() const {
  auto s = builder_ ? builder_->build() : schedule::cron(cron_);
  if (!s)
    return make_error(errc::invalid_schedule,
                      "scheduled job '" + job_name() +
                          "': " + message_of(s.error()));
  return s;
}

caf::error scheduled_job_spec::validate() const {
  if (auto s = build_schedule(); !s)
    return std::move(s.error());
  if (priority_ < min_priority || priority_ > max_priority)
    return make_error(errc::invalid_config,
                      "scheduled job '" + job_name() + "': priority " +
                          std::to_string(priority_) + " is out of range " +
                          std::to_string(min_priority) + " to " +
                          std::to_string(max_priority));
  if (late_after_.count() <= 0)
    return make_error(errc::invalid_config,
                      "scheduled job '" + job_name() +
                          "': late_after must be positive");
  return to_queue_spec().validate();
}

queue_spec scheduled_job_spec::to_queue_spec() const {
  return queue_spec{job_name()}
      .with_max_concurrent_jobs(1)
      .with_poll_interval(poll_interval_)
      .with_max_retries(max_retries_)
      .with_init_timeout(init_timeout_)
      .with_backoff(backoff_)
      .with_worker(worker_)
      .with_event_listeners(listeners_);
}

} // namespace bg_jobs
