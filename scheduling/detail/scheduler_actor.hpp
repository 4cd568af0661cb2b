#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"

namespace bg_jobs::detail {

/// Spawns the node's scheduler, linked to `parent` (the supervisor): a
/// detached actor with one connection that carries every scheduled job of
/// `ctx.plan`. For each it keeps the next occurrence enqueued once the
/// previous one has finished: for a cron schedule the next matching time
/// after the latest occurrence (or the latest missed one, by the job's
/// missed-runs policy); for an interval, the end of the previous run plus
/// the interval. The store's `(name, occurrence)` uniqueness and the
/// `previous` check make every occurrence enqueued once across restarts
/// and nodes. When an occurrence falls due it sends `(wake_atom, job_name)`
/// to the router. It registers itself as `scheduler` and as
/// `<job name>/scheduler` for each job.
caf::actor spawn_scheduler(caf::event_based_actor* parent, node_context ctx);

} // namespace bg_jobs::detail
