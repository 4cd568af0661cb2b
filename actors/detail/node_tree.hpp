#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"

namespace bg_jobs::detail {

/// Spawns one node's actor tree under a supervisor (see the README's "How
/// it fits together"): the event actor, the registry, the router, the front
/// door, maintenance and the store listener, then the queues and the
/// schedulers of `ctx.plan`. Returns the supervisor.
caf::actor spawn_node(caf::actor_system& sys, node_context ctx);

} // namespace bg_jobs::detail
