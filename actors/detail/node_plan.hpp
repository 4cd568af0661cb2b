#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "bg_jobs/actors/detail/event_actor.hpp"
#include "bg_jobs/core/keyring.hpp"
#include "bg_jobs/core/queue_spec.hpp"
#include "bg_jobs/maintenance/maintenance.hpp"
#include "bg_jobs/scheduling/scheduled_job_spec.hpp"

namespace bg_jobs {
class builder;
} // namespace bg_jobs

namespace bg_jobs::detail {

/// The queues a node runs: `declared` with the workers of the scheduled
/// jobs that name them, then the shared queue of the scheduled jobs that
/// name none, unless declared. A scheduled job naming a queue not declared
/// is an `invalid_config` error.
caf::expected<std::vector<queue_spec>>
node_queues(const std::vector<queue_spec>& declared,
            const std::vector<scheduled_job_spec>& scheduled);

/// What one node runs, computed once by `builder::build` from the
/// configuration; every actor reads it instead of deriving its own view.
struct node_plan {
  /// The configured queues with the workers of the scheduled jobs that
  /// name them, then the shared queue of scheduled jobs if one needs it.
  std::vector<queue_spec> queues;
  std::vector<scheduled_job_spec> scheduled;
  /// The queue that runs each job name.
  std::map<std::string, std::string> queue_of_job;
  /// The job names whose workers derive concurrency keys, with how.
  std::map<std::string, worker::key_function> key_of_job;
  /// Names enqueued here for workers elsewhere.
  std::set<std::string> enqueued_for_others;
  /// Every valid name may be enqueued here.
  bool any_job_name = false;
  /// The keys that seal and open what jobs carry; none when unset.
  std::shared_ptr<const keyring> keys;
  listener_set listeners;
  /// Whether any listener is configured (events are built only then).
  bool any_listener = false;
  /// Whether a listener actor wakes queues on other processes' enqueues.
  bool listen = false;
  maintenance_config maintenance;
  std::chrono::milliseconds grace{5000};
  /// How often a job's progress is stored and reported, at most.
  std::chrono::milliseconds progress_interval{1000};
  int max_restarts = 5;
  std::chrono::milliseconds restart_period{1000};

  static node_plan make(const builder& config, bool listen);

  bool runs(const std::string& job_name) const {
    return queue_of_job.count(job_name) > 0;
  }

  /// Whether this node accepts enqueues of `job_name`.
  bool accepts(const std::string& job_name) const {
    return any_job_name || runs(job_name) ||
           enqueued_for_others.count(job_name) > 0;
  }
};

} // namespace bg_jobs::detail
