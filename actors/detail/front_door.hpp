#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"

namespace bg_jobs::detail {

/// Spawns the front door, linked to `parent`: the bg_jobs actor that users
/// message, registered as `system_registry_key`. A detached actor with its
/// own connection: it answers `(enqueue_atom, job_request)` with the stored
/// `job` and `(enqueue_atom, std::vector<job_request>)` with the new ids,
/// then has the router wake the queues; a name the node plan does not run
/// is a `no_worker_for_job` error (and event), and nothing is written.
/// Lookups and names go to the registry, flushes to the event actor.
caf::actor spawn_front_door(caf::event_based_actor* parent, node_context ctx);

} // namespace bg_jobs::detail
