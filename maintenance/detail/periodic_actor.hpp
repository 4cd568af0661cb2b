#pragma once

#include <memory>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"
#include "bg_jobs/maintenance/maintenance.hpp"

namespace bg_jobs::detail {

/// Spawns the periodic actor, linked to `parent`: a detached actor with its
/// own connection that runs each service whenever its interval is due (the
/// first round at start), or at once when the store announces what the
/// service is woken by (`wake_atom`, from the router; at most every
/// 100 ms), and reports rescued jobs (`job_rescued`) and errors
/// (`db_error`) as events.
caf::actor
spawn_periodic(caf::event_based_actor* parent, node_context ctx,
               std::vector<std::shared_ptr<maintenance_service>> services);

} // namespace bg_jobs::detail
