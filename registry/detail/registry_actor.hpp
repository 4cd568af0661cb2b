#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"

namespace bg_jobs::detail {

/// Spawns the registry, linked to `parent`: a detached actor with its own
/// connection that maps names to actors and monitors each one. Actors
/// register themselves, `(register_atom, name, owner, actor)`; when one with
/// an owner dies, the jobs it had reserved are released at once (reconnecting
/// first if the connection went stale). With `release_leftovers`, it first
/// releases what this node left reserved in an earlier run, before it
/// answers `ready_atom`.
caf::actor spawn_registry(caf::event_based_actor* parent, node_context ctx,
                          bool release_leftovers);

} // namespace bg_jobs::detail
