#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/executor_pool.hpp"
#include "bg_jobs/actors/detail/job_rules.hpp"
#include "bg_jobs/actors/detail/node_context.hpp"
#include "bg_jobs/actors/detail/store_worker.hpp"

namespace bg_jobs::detail {

/// Why a job held ahead goes back unstarted.
inline constexpr const char* held_too_long =
    "held ahead past half the lease (was the process paused?); not started";

/// The jobs a queue holds: those reserved ahead of free executors, in claim
/// order, and those handed to its executors (the pool). Hands the ones held
/// ahead to executors as they free up and, while jobs are quick, a few to
/// each busy one behind its job, so that an executor goes on to its next job
/// without waiting for the queue. How many it holds ahead follows the
/// handlers' recent pace: about 10 ms of work, within the queue's prefetch.
class dispatcher {
public:
  using steady_time = std::chrono::steady_clock::time_point;

  dispatcher() = default;

  dispatcher(node_context ctx, std::shared_ptr<const job_rules> rules,
             size_t prefetch);

  executor_pool& pool() { return pool_; }
  const executor_pool& pool() const { return pool_; }

  /// Jobs held ahead, not yet handed to an executor.
  size_t ahead() const { return ahead_.size(); }

  /// How many jobs to hold ahead now.
  size_t ahead_target() const;

  /// How many more jobs a claim should ask for (0: enough in hand).
  size_t wanted() const;

  /// Whether nothing is held: no job ahead, no executor busy.
  bool empty() const { return ahead_.empty() && pool_.busy() == 0; }

  /// The ids of every job held, ahead or handed over.
  std::vector<int64_t> held() const;

  /// Holds freshly claimed jobs ahead; each must start by `start_by`.
  void hold(std::vector<job> jobs, steady_time start_by);

  /// Hands jobs held ahead to executors while they have room. Outcomes
  /// decided instead of a run (a job held past its start deadline goes
  /// back; one with no attempts left ends by its retry policy) are added
  /// to `decided`. Timeouts are armed by messages to `self`
  /// (`(job_timeout_atom, slot, job_id)`).
  void feed(caf::event_based_actor* self, outcome_batch& decided);

  /// A handler ran for `duration_us`: updates the pace.
  void ran(int64_t duration_us);

  /// Takes back `job_id` if it is held ahead, or handed over and not
  /// started.
  std::optional<job> take_unstarted(caf::event_based_actor* self,
                                    int64_t job_id);

  /// Takes back every job held ahead.
  std::vector<job> take_ahead();

  /// A cancel of `job_id` was asked for: one held and not started ends
  /// cancelled without running (its outcome added to `decided`: true);
  /// the handler running it has its flag raised (false).
  bool cancel(caf::event_based_actor* self, int64_t job_id,
              const std::string& reason, outcome_batch& decided);

  /// Abandons the attempt running in slot `i`, which reached its timeout:
  /// it counts as failed (its outcome added to `decided`), and a fresh
  /// executor takes the slot at once.
  void time_out(caf::event_based_actor* self, size_t i,
                outcome_batch& decided);

  /// The outcome that gives `j` back to the table at once.
  pending_outcome release(job j, const std::string& why, bool count_attempt);

private:
  /// How many jobs an executor may hold: one, unless jobs take less than
  /// 100 us and no timeout applies (a timeout runs from the hand-over).
  size_t hand_depth() const;

  void dispatch(caf::event_based_actor* self, held_job h, size_t depth,
                outcome_batch& decided);

  node_context ctx_;
  std::shared_ptr<const job_rules> rules_;
  size_t prefetch_ = 0;
  executor_pool pool_;
  std::deque<held_job> ahead_;
  std::minstd_rand rng_{std::random_device{}()};
  /// A moving average of the handlers' run time in microseconds; negative
  /// until the first job ends.
  double run_us_ = -1;
};

} // namespace bg_jobs::detail
