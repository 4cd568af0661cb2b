#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"

namespace bg_jobs::detail {

/// Spawns the scheduler of `ctx.plan->scheduled[index]`, linked to `parent`
/// (the supervisor): a detached actor with its own connection and no state of
/// its own beyond the store. It keeps the next occurrence enqueued: for a
/// cron schedule the next matching time after the latest occurrence (or
/// now); for an interval, the end of the previous run plus the interval.
/// The store's `(name, occurrence)` uniqueness and the `previous` check make
/// every occurrence enqueued once across restarts and nodes. When an
/// occurrence falls due it sends `(wake_atom, job_name)` to the router. It
/// registers itself as `<job name>/scheduler`.
caf::actor spawn_scheduler(caf::event_based_actor* parent, node_context ctx,
                           size_t index);

} // namespace bg_jobs::detail
