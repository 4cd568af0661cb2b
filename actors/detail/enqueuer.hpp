#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"
#include "bg_jobs/actors/detail/store_connection.hpp"
#include "bg_jobs/control/detail/control_plane.hpp"
#include "bg_jobs/core/job.hpp"
#include "bg_jobs/core/job_request.hpp"

namespace bg_jobs::detail {

/// How a node stores jobs: the name check of its plan, one connection, the
/// wake-up of the queues and the `job_enqueued` events. The front door
/// uses one for the enqueue messages; `instance::enqueue` another, so that
/// a caller outside the actors pays no message round trip. Not
/// thread-safe: one caller at a time.
class enqueuer {
public:
  enqueuer() = default;
  enqueuer(node_context ctx, std::string who);

  caf::expected<job> enqueue(const job_request& r);

  caf::expected<std::vector<int64_t>>
  enqueue_many(const std::vector<job_request>& rs);

  /// Stores `w` (its tasks' names checked, keys derived and values sealed
  /// as single enqueues are) and wakes the queues of its first tasks.
  caf::expected<workflow_ids> enqueue_workflow(const workflow& w,
                                               int64_t into = 0);

  /// Adds `more`'s tasks to workflow `id` (checked, keyed and sealed as
  /// `enqueue_workflow`'s) and wakes this node's queues.
  caf::expected<workflow_ids> add_tasks(int64_t id, const workflow& more);

  /// Wakes this node's queues of `job_name` ("*": every idle one) after
  /// `delay` (0: at once), through the router.
  void wake(const std::string& job_name,
            std::chrono::milliseconds delay = std::chrono::milliseconds{0});

  /// The connection, or the error that says why there is none.
  caf::expected<std::shared_ptr<db_adapter>> connection();

  store_connection& store() { return store_; }

  /// The queue of this node that runs `job_name`, or empty.
  std::string queue_of(const std::string& job_name) const;

private:
  /// Whether a queue of this node runs `job_name` (only those are woken
  /// here; other processes' are woken through the store).
  bool runs_here(const std::string& job_name) const;

  /// How long until `at` (plus a millisecond), if it is in the next hour.
  std::optional<std::chrono::milliseconds> due_in(timestamp at) const;

  /// Refuses a request for a job name this node does not accept, or (when
  /// it runs the job's queue) with a rate cost above the queue's burst.
  caf::error check_name(const job_request& r);

  /// Whether the worker of `r`'s name would give it a concurrency key.
  bool derives_key(const job_request& r) const;

  /// Gives `r` the concurrency key its worker derives, or says why not.
  caf::error derive_key(job_request& r) const;

  node_context ctx_;
  store_connection store_;
};

/// Applies operator actions' effects on the node of `ctx`: emits their
/// events, wakes its queues and asks them to stop the running jobs.
action_sink in_node(node_context ctx);

/// The node's shared connection (in an enqueuer), with the lock that lets
/// one caller at a time use it: the threads that call `instance::enqueue`,
/// the registry and the scheduler.
struct direct_enqueue {
  std::mutex mtx;
  enqueuer door;
};

} // namespace bg_jobs::detail
