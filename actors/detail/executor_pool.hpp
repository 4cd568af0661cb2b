#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/executor_actor.hpp"
#include "bg_jobs/actors/detail/node_context.hpp"

namespace bg_jobs::detail {

/// A queue's executors: its slots and the idle ones. The jobs handed to an
/// executor are kept in its hand-off only (`executor_handoff`), until the
/// queue has their results. Replaces an executor that died or timed out at
/// once. Resizing
/// starts executors at once; a shrink retires idle ones at once and busy
/// ones when their job ends. Every executor is registered as
/// `<queue>/executor/<slot>`.
class executor_pool {
public:
  executor_pool() = default;

  executor_pool(node_context ctx, std::shared_ptr<const job_rules> rules)
      : ctx_(std::move(ctx)), queue_(rules->queue()),
        rules_(std::move(rules)) {}

  /// Spawns `n` executors, linked to `self`.
  void start(caf::event_based_actor* self, size_t n);

  /// The slots in service (the concurrency).
  size_t size() const { return active_; }
  size_t idle() const { return idle_.size(); }
  /// The slots running a job (a retiring slot counts until its job ends).
  size_t busy() const;

  /// Sets the number of slots in service to `n` (at least 1).
  void resize(caf::event_based_actor* self, size_t n);

  /// Raises the cancellation flag of the handler running `job_id`; false
  /// when no slot holds it.
  bool request_cancel(int64_t job_id, const std::string& reason);

  /// Takes back `job_id` if an executor holds it and has not started it.
  /// (Past the lease's half, the executor itself gives a job back.)
  std::optional<job> take_unstarted(caf::event_based_actor* self,
                                    int64_t job_id);

  /// Takes back every job an executor holds and has not started.
  std::vector<job> take_all_unstarted(caf::event_based_actor* self);

  /// Hands `j` to an idle executor (there must be one); returns its slot.
  size_t run(held_job h, const caf::actor_addr& queue);

  /// Hands `j` to the busy executor in service that holds the fewest jobs,
  /// behind them, if it holds fewer than `depth`; returns its slot.
  std::optional<size_t> run_behind(held_job h, const caf::actor_addr& queue,
                                   size_t depth);

  /// Whether a busy executor in service holds fewer than `depth` jobs.
  bool room_behind(size_t depth) const;

  /// Takes the reports the executors' threads left for the queue.
  std::vector<attempt_report> take_reports() { return inbox_->take(); }

  /// Whether slot `i` runs job `job_id` now.
  bool runs(size_t i, int64_t job_id) const;

  /// The result of `job_id` arrived from `from`: if that executor still
  /// holds slot `i` and kept the job, forgets it, frees the slot when it
  /// holds no other (or retires it) and returns the job.
  std::optional<job> finish(caf::event_based_actor* self, size_t i,
                            int64_t job_id, const caf::actor_addr& from);

  /// Abandons the attempt in slot `i` (it timed out): kills its executor,
  /// puts a fresh one in its place and returns the job it ran.
  job replace(caf::event_based_actor* self, size_t i);

  /// The slot of the executor `addr`, if it is one of ours.
  std::optional<size_t> slot_of(const caf::actor_addr& addr) const;

  /// The executor of slot `i` died: returns the jobs it held, the one it
  /// ran (if any) first, and starts a fresh one unless `restart` is false.
  std::vector<job> on_exit(caf::event_based_actor* self, size_t i,
                           bool restart);

  /// The ids of the jobs the executors hold.
  std::vector<int64_t> held() const;

  /// Forgets the jobs the executors hold (the queue releases them) and
  /// returns them.
  std::vector<job> take_running();

  /// Registers every executor with the registry.
  void register_all(caf::event_based_actor* self) const;

  /// Stops every executor.
  void stop_all(caf::event_based_actor* self);

private:
  struct slot {
    caf::actor executor;
    executor_handoff handoff;
    /// Out of service (scaled down): no executor once its job ended.
    bool retired = false;

    size_t held() const { return handoff.size(); }
  };

  void spawn(caf::event_based_actor* self, size_t i);
  /// Slot `i` may hold no jobs now: it becomes idle (or retires).
  void emptied(caf::event_based_actor* self, size_t i);
  void retire(caf::event_based_actor* self, size_t i);
  void register_one(caf::event_based_actor* self, size_t i) const;

  node_context ctx_;
  std::string queue_;
  std::shared_ptr<const job_rules> rules_;
  std::vector<slot> slots_;
  std::vector<size_t> idle_;
  /// Where every executor's thread reports.
  std::shared_ptr<report_inbox> inbox_ = std::make_shared<report_inbox>();
  size_t active_ = 0;
};

} // namespace bg_jobs::detail
