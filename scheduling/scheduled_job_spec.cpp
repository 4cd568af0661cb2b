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

schedule_definition scheduled_job_spec::definition() const {
  schedule_definition d;
  d.name = job_name();
  d.job = job_name();
  d.payload = payload_;
  d.priority = priority_;
  if (builder_) {
    if (auto plan = builder_->build(); plan && plan->is_interval()) {
      d.every = plan->interval();
    } else if (plan) {
      d.cron = plan->cron_spec()->expression();
      d.time_zone = plan->cron_spec()->time_zone();
    }
  } else {
    d.cron = cron_;
  }
  if (d.time_zone == "UTC")
    d.time_zone.clear();
  d.overlap = overlap_;
  d.missed = missed_;
  d.late_after = late_after_;
  d.catch_up_max = catch_up_max_;
  d.catch_up_window = catch_up_window_;
  return d;
}

caf::error scheduled_job_spec::validate() const {
  if (auto s = build_schedule(); !s)
    return std::move(s.error());
  if (auto err = definition().validate())
    return make_error(errc::invalid_config,
                      "scheduled job '" + job_name() +
                          "': " + message_of(err));
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
  if (poll_interval_.count() <= 0)
    return make_error(errc::invalid_config,
                      "scheduled job '" + job_name() +
                          "': poll_interval must be positive");
  // The worker as a queue would take it (name, retries).
  return queue_spec{queue_}.with_worker(to_worker()).validate();
}

worker scheduled_job_spec::to_worker() const {
  return worker{worker_}.with_retries(max_retries_, backoff_);
}

} // namespace bg_jobs
