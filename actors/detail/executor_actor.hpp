#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/event_bus.hpp"
#include "bg_jobs/actors/detail/job_rules.hpp"
#include "bg_jobs/actors/detail/node_context.hpp"
#include "bg_jobs/actors/detail/outcome_buffer.hpp"
#include "bg_jobs/core/clock.hpp"
#include "bg_jobs/core/worker.hpp"

namespace bg_jobs::detail {

/// What a handler thread reports to its queue of one job it was handed.
struct attempt_report {
  /// The executor's slot, and the executor (the queue drops the report of
  /// one that no longer holds the slot).
  size_t slot = 0;
  caf::actor_addr from;
  int64_t job_id = 0;
  /// Not started: the job reached its start deadline (`held_job`) first.
  bool stale = false;
  /// The completion decided by the queue's rules, when it ran.
  pending_outcome done;
  int64_t duration_us = 0;
};

/// The reports of a queue's handler threads on their way to it. A thread
/// adds its report and, when the inbox was empty, sends the queue one
/// `reports_atom`; the queue takes every report kept at once. A busy queue
/// so gets one message for many attempts, not one each. Every report is
/// taken: one added to a non-empty inbox is taken by the message sent for
/// the report that made it non-empty, which is handled after it.
class report_inbox {
public:
  /// Adds `r`; true when the inbox was empty, and the queue must be told.
  bool add(attempt_report r) {
    std::lock_guard<std::mutex> guard{mtx_};
    reports_.push_back(std::move(r));
    return reports_.size() == 1;
  }

  /// Takes every report kept, in the order added.
  std::vector<attempt_report> take() {
    std::vector<attempt_report> out;
    std::lock_guard<std::mutex> guard{mtx_};
    out.swap(reports_);
    return out;
  }

private:
  std::mutex mtx_;
  std::vector<attempt_report> reports_;
};

/// What an executor needs besides its queue.
struct executor_args {
  std::string queue_name;
  /// The executor's index in its queue's pool.
  size_t slot = 0;
  /// The queue's workers and retry rules.
  std::shared_ptr<const job_rules> rules;
  std::shared_ptr<event_bus> bus;
  std::shared_ptr<bg_jobs::clock> clock;
  /// The node's shared connection, for a handler's reads (the outputs a
  /// task depends on).
  std::shared_ptr<direct_enqueue> shared;
  /// How often the handler's progress is stored and reported, at most.
  std::chrono::milliseconds progress_interval{1000};
  /// Where its thread's reports go (`report_inbox`).
  std::shared_ptr<report_inbox> inbox;
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

/// The queue's side of the hand-over to an executor's handler thread, and
/// the one place the jobs handed to that executor are kept until the queue
/// has their results: those not started yet, the one running, and those
/// whose result is on its way to the queue.
class executor_handoff {
public:
  executor_handoff() = default;
  explicit executor_handoff(std::shared_ptr<handler_slot> slot)
      : slot_(std::move(slot)) {}

  /// Gives `j` to the handler thread, after the jobs it was given before;
  /// the thread emits `job_started` as it starts it, decides the attempt's
  /// completion by the queue's rules, and reports it to `queue` through
  /// the queue's `report_inbox`.
  /// A job past its `start_by` is not started: the thread reports it as
  /// stale instead.
  void run(held_job h, const caf::actor_addr& queue) const;

  /// The jobs kept here.
  size_t size() const;

  /// Whether the handler runs `job_id` now.
  bool runs(int64_t job_id) const;

  /// Raises the cancellation flag the handler sees, if it runs `job_id`:
  /// whatever it returns, the job ends cancelled with `reason`. False when
  /// it does not run it.
  bool request_cancel(int64_t job_id, const std::string& reason) const;

  /// The queue has the result of `job_id`: returns the job and forgets it.
  std::optional<job> reported(int64_t job_id) const;

  /// Takes `job_id` back unless the handler started it.
  std::optional<job> take_unstarted(int64_t job_id) const;

  /// Takes back every job the handler has not started.
  std::vector<job> take_all_unstarted() const;

  /// Takes every job kept here, the one that runs (or, failing that, the
  /// first whose result is on its way) first; a late result of one of them
  /// is dropped by the queue.
  std::vector<job> take_all() const;

  /// The ids of the jobs kept here.
  void ids(std::vector<int64_t>& out) const;

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
