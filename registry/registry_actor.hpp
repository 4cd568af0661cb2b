#pragma once

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/runtime_context.hpp"

namespace bg_jobs {

/// `(register_atom, std::string name, std::string owner, caf::actor)` →
/// `caf::unit`: names and monitors an actor; `owner` is the reservation
/// owner whose jobs are released when it dies (empty: none).
using register_atom = caf::atom_constant<caf::atom("register")>;

/// Spawns the registry, linked to `parent`: a detached actor with its own
/// connection that maps names to actors and monitors each one. When an
/// actor with an owner dies, the jobs it had reserved are released at once.
/// With `release_leftovers`, it first releases what this node left reserved
/// in an earlier run, before it answers `ready_atom`.
caf::actor spawn_registry(caf::event_based_actor* parent, runtime_context ctx,
                          bool release_leftovers);

} // namespace bg_jobs
