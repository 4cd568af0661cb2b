#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/core/queue_spec.hpp"
#include "bg_jobs/core/worker.hpp"
#include "bg_jobs/scheduling/schedule.hpp"

namespace bg_jobs {

/// What a cron-scheduled job does about runs it missed (the node was down,
/// or the previous run was still going): an occurrence still waiting
/// `late_after` past its time is missed.
enum class missed_runs {
  /// One run for all that were missed: the waiting occurrence is replaced
  /// by the latest one that fell due, which runs at once (the default).
  run_latest_once,
  /// None: the waiting occurrence is dropped, and the schedule resumes with
  /// its next time.
  skip,
};

/// A job that runs on a schedule: its worker, when it runs, and how. Each
/// scheduled job gets a scheduler (which enqueues every occurrence once,
/// even with several nodes) and a queue of one executor that runs it.
class scheduled_job_spec {
public:
  /// Runs `w` on the builder schedule `s` (`new_schedule()...` or
  /// `new_interval_minutes(5)`).
  scheduled_job_spec(worker w, schedule_builder s)
      : worker_(std::move(w)), builder_(std::move(s)) {}

  /// Runs `w` on the cron expression `cron` (5 or 6 fields, or an alias).
  scheduled_job_spec(worker w, std::string cron)
      : worker_(std::move(w)), cron_(std::move(cron)) {}

  /// Retries of a failed occurrence (default 3).
  scheduled_job_spec& with_max_retries(int n) {
    max_retries_ = n;
    return *this;
  }

  /// How often the scheduler and its queue check the store (1000 ms).
  scheduled_job_spec& with_poll_interval(std::chrono::milliseconds d) {
    poll_interval_ = d;
    return *this;
  }

  scheduled_job_spec& with_init_timeout(std::chrono::milliseconds d) {
    init_timeout_ = d;
    return *this;
  }

  scheduled_job_spec& with_backoff(backoff b) {
    backoff_ = b;
    return *this;
  }

  /// What to do about missed runs of a cron schedule (default: run the
  /// latest missed one once). Intervals count from the end of the previous
  /// run, so a late run simply moves the next one.
  scheduled_job_spec& with_missed_runs(
      missed_runs policy,
      std::chrono::milliseconds late_after = std::chrono::minutes{1}) {
    missed_ = policy;
    late_after_ = late_after;
    return *this;
  }

  /// The priority of every occurrence (default 0, the most urgent; see
  /// `job_request::with_priority`).
  scheduled_job_spec& with_priority(int p) {
    priority_ = p;
    return *this;
  }

  int priority() const { return priority_; }

  /// The job request of one occurrence (its time is set by the scheduler).
  job_request request() const {
    return job_request{job_name(), payload_}.with_priority(priority_);
  }

  /// The payload of every occurrence (default `{}`).
  scheduled_job_spec& with_payload(nlohmann::json payload) {
    payload_ = std::move(payload);
    return *this;
  }

  /// Listeners for this scheduled job's events (added to, never replaced).
  scheduled_job_spec& with_event_listener(event_listener l) {
    listeners_.push_back(std::move(l));
    return *this;
  }

  scheduled_job_spec& with_event_listeners(std::vector<event_listener> ls) {
    for (auto& l : ls)
      listeners_.push_back(std::move(l));
    return *this;
  }

  const std::string& job_name() const { return worker_.job_name(); }
  const nlohmann::json& payload() const { return payload_; }
  std::chrono::milliseconds poll_interval() const { return poll_interval_; }
  bg_jobs::missed_runs missed_runs() const { return missed_; }
  std::chrono::milliseconds late_after() const { return late_after_; }

  /// The schedule, or an `invalid_schedule` error naming the job.
  caf::expected<schedule> build_schedule() const;

  /// Checks the schedule and limits.
  caf::error validate() const;

  /// The queue that runs this job: named after it, one job at a time.
  queue_spec to_queue_spec() const;

private:
  worker worker_;
  std::optional<schedule_builder> builder_;
  std::string cron_;
  int max_retries_ = 3;
  std::chrono::milliseconds poll_interval_{1000};
  std::chrono::milliseconds init_timeout_{1000};
  backoff backoff_ = backoff::exponential();
  nlohmann::json payload_ = nlohmann::json::object();
  int priority_ = min_priority;
  std::vector<event_listener> listeners_;
  bg_jobs::missed_runs missed_ = missed_runs::run_latest_once;
  std::chrono::milliseconds late_after_{std::chrono::minutes{1}};
};

} // namespace bg_jobs
