#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/event_bus.hpp"
#include "bg_jobs/actors/detail/job_rules.hpp"
#include "bg_jobs/core/clock.hpp"
#include "bg_jobs/core/worker.hpp"

namespace bg_jobs::detail {

/// What an executor needs besides its queue.
struct executor_args {
  std::string queue_name;
  /// The executor's index in its queue's pool.
  size_t slot = 0;
  /// The queue's workers and retry rules.
  std::shared_ptr<const job_rules> rules;
  std::shared_ptr<event_bus> bus;
  std::shared_ptr<bg_jobs::clock> clock;
};

/// A reserved job that has not started, with the latest time it may still
/// start. Its reservation may lapse (another node rescues it) once the
/// reserving claim is older than the lease; past `start_by` it is given
/// back instead of started, so a node back from a long pause starts
/// nothing it held ahead.
struct held_job {
  job j;
  std::chrono::steady_clock::time_point start_by;
};

struct handler_slot;

/// The queue's side of the hand-over to an executor's handler thread.
class executor_handoff {
public:
  executor_handoff() = default;
  explicit executor_handoff(std::shared_ptr<handler_slot> slot)
      : slot_(std::move(slot)) {}

  /// Gives `j` to the handler thread, after the jobs it was given before;
  /// the thread emits `job_started` as it starts it, decides the attempt's
  /// completion by the queue's rules, and sends it to `queue` as a
  /// `result_atom` message.
  /// A job past its `start_by` is not started: the thread reports it with
  /// a `stale_atom` message instead.
  void run(held_job h, const caf::actor_addr& queue) const;

  /// Raises the cancellation flag the handler sees, if it runs `job_id`:
  /// whatever it returns, the job ends cancelled with `reason`.
  void request_cancel(int64_t job_id, const std::string& reason) const;

  /// Takes `job_id` back unless the handler started it; true if taken.
  bool take_unstarted(int64_t job_id) const;

  /// Takes back every job the handler has not started; returns their ids.
  std::vector<int64_t> take_all_unstarted() const;

private:
  std::shared_ptr<handler_slot> slot_;
};

/// An executor: its actor (named, monitored, linked to its queue) and the
/// hand-over to its thread.
struct spawned_executor {
  caf::actor actor;
  executor_handoff handoff;
};

/// Spawns an executor linked to its queue. It runs one job at a time on a
/// thread of its own, so a handler may block without touching CAF's
/// scheduler, and never writes to the store: it reports completions. The queue
/// hands jobs straight to that thread. When the executor actor dies
/// (killed, or abandoned after a timeout) the handler's cancellation flag
/// is raised and its late result goes nowhere; a handler that never
/// returns cannot keep the process from shutting down.
spawned_executor spawn_executor(caf::event_based_actor* queue,
                                executor_args args);

} // namespace bg_jobs::detail
