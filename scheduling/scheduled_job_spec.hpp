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
#include "bg_jobs/scheduling/schedule_definition.hpp"

namespace bg_jobs {

/// A job that runs on a schedule: its worker, when it runs, and how. A
/// node's one scheduler enqueues every occurrence once, even with several
/// nodes; by default only once the previous occurrence has finished (so
/// two never run at once: see `with_overlap`). The occurrences run in the
/// queue the job names, or else in the node's shared queue
/// `default_queue`. The schedule is kept in the store under its job's name
/// while some node declares it; once none has for
/// `maintenance_config::schedule_stale_after`, it stops and its waiting
/// occurrence is cancelled.
class scheduled_job_spec {
public:
  /// The queue of scheduled jobs that name none: created when one needs it,
  /// with `default_queue_concurrency` executors and the shortest poll
  /// interval of its jobs. Declaring a queue of this name (with no worker
  /// of its own needed) sets its concurrency and other settings instead.
  static constexpr const char* default_queue = "bg_jobs.scheduled";
  static constexpr int default_queue_concurrency = 2;

  /// Runs `w` on the builder schedule `s` (`new_schedule()...` or
  /// `new_interval_minutes(5)`).
  scheduled_job_spec(worker w, schedule_builder s)
      : worker_(std::move(w)), builder_(std::move(s)) {}

  /// Runs `w` on the cron expression `cron` (5 or 6 fields, or an alias).
  scheduled_job_spec(worker w, std::string cron)
      : worker_(std::move(w)), cron_(std::move(cron)) {}

  /// Runs the occurrences in `queue`, a queue the node declares (its
  /// concurrency then applies to them with its other jobs).
  scheduled_job_spec& with_queue(std::string queue) {
    queue_ = std::move(queue);
    return *this;
  }

  /// The queue named by `with_queue`, or `default_queue`.
  const std::string& queue() const { return queue_; }

  /// Retries of a failed occurrence (default 3).
  scheduled_job_spec& with_max_retries(int n) {
    max_retries_ = n;
    return *this;
  }

  /// How often the scheduler checks the store for this job (1000 ms); the
  /// shared queue polls as often as its most frequent job asks.
  scheduled_job_spec& with_poll_interval(std::chrono::milliseconds d) {
    poll_interval_ = d;
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

  /// What happens to times that fall due while the previous run waits or
  /// runs (default `overlap_policy::one_waiting`).
  scheduled_job_spec& with_overlap(overlap_policy o) {
    overlap_ = o;
    return *this;
  }

  /// Runs missed times of a cron schedule one after another, the oldest
  /// first: at most `max_runs` (1 to 1000), none older than `window`
  /// before now; the rest are skipped.
  scheduled_job_spec& with_catch_up(
      int max_runs,
      std::chrono::milliseconds window = std::chrono::hours{24},
      std::chrono::milliseconds late_after = std::chrono::minutes{1}) {
    missed_ = missed_runs::catch_up;
    catch_up_max_ = max_runs;
    catch_up_window_ = window;
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

  overlap_policy overlap() const { return overlap_; }

  /// The schedule as data, named after its job (what the store keeps).
  schedule_definition definition() const;

  /// The schedule, or an `invalid_schedule` error naming the job.
  caf::expected<schedule> build_schedule() const;

  /// Checks the schedule and limits.
  caf::error validate() const;

  /// The worker of the occurrences, with this job's retries.
  worker to_worker() const;

  /// The listeners given to this scheduled job.
  const std::vector<event_listener>& event_listeners() const {
    return listeners_;
  }

private:
  worker worker_;
  std::optional<schedule_builder> builder_;
  std::string cron_;
  int max_retries_ = 3;
  std::string queue_ = default_queue;
  std::chrono::milliseconds poll_interval_{1000};
  backoff backoff_ = backoff::exponential();
  nlohmann::json payload_ = nlohmann::json::object();
  int priority_ = min_priority;
  std::vector<event_listener> listeners_;
  bg_jobs::missed_runs missed_ = missed_runs::run_latest_once;
  std::chrono::milliseconds late_after_{std::chrono::minutes{1}};
  overlap_policy overlap_ = overlap_policy::one_waiting;
  int catch_up_max_ = 10;
  std::chrono::milliseconds catch_up_window_{std::chrono::hours{24}};
};

} // namespace bg_jobs
