#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/runtime_context.hpp"
#include "bg_jobs/adapters/db_adapter.hpp"

namespace bg_jobs {

/// Settings of the periodic upkeep every node runs: its heartbeat, the
/// rescue of jobs held by dead nodes, and the pruning of history.
struct maintenance_config {
  /// A node without a heartbeat for this long is presumed dead and its
  /// jobs are rescued (30 s). Heartbeats come every third of it.
  std::chrono::milliseconds lease{30000};
  /// What history to keep (24 h of succeeded, 7 days of failed jobs, at
  /// most 100,000 of each, deleted 1,000 rows at a time).
  prune_params retention;
  /// How often to prune (60 s).
  std::chrono::milliseconds prune_every{60000};

  std::chrono::milliseconds interval() const {
    return std::max(lease / 3, std::chrono::milliseconds{10});
  }

  caf::error validate() const;
};

/// What one round of upkeep did.
struct maintenance_report {
  bool heartbeat = false;
  std::vector<job> rescued;
  int64_t pruned = 0;
  std::vector<caf::error> errors;
};

/// One round of upkeep for `node`: heartbeat, rescue, and (with `prune`)
/// one batch of pruning.
maintenance_report run_maintenance_once(db_adapter& db, const std::string& node,
                                        const maintenance_config& cfg,
                                        bool prune);

/// Spawns the rescuer, linked to `parent`: a detached actor with its own
/// connection that runs `run_maintenance_once` on a timer and reports
/// rescued jobs (`job_rescued`) and errors (`db_error`) as events.
caf::actor spawn_rescuer(caf::event_based_actor* parent, runtime_context ctx,
                         maintenance_config cfg);

} // namespace bg_jobs
