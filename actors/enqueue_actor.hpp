#pragma once

#include <set>
#include <string>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/runtime_context.hpp"

namespace bg_jobs {

/// Spawns the enqueue actor, linked to `parent`: a detached actor with its
/// own connection that answers `(enqueue_atom, job_request)` with the stored
/// `job` and `(enqueue_atom, std::vector<job_request>)` with the new ids. A
/// name outside `job_names` is a `no_worker_for_job` error (and event), and
/// nothing is written.
caf::actor spawn_enqueue_actor(caf::event_based_actor* parent,
                               runtime_context ctx,
                               std::set<std::string> job_names);

} // namespace bg_jobs
