#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"

namespace bg_jobs::detail {

/// Spawns the router, linked to `parent`: the one way wake-ups reach
/// queues. Queues announce themselves, `(route_atom, queue, actor)`; a
/// `(wake_atom, job_name)` from the front door, the store listener or a
/// scheduler goes to the queue that runs that name by the node plan, and
/// `"*"` (some process wrote to the store) to every queue.
caf::actor spawn_router(caf::event_based_actor* parent, node_context ctx);

} // namespace bg_jobs::detail
