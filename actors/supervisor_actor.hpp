#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

namespace bg_jobs {

class builder;

/// Spawns the bg_jobs actor: the supervisor at the root of the tree. It
/// links its children (event actor, registry, enqueue actor, queues) and
/// restarts a crashed one from its spec (one-for-one); after more restarts
/// than the configured intensity allows it emits `supervisor_gave_up` and
/// exits with an `errc::restart_limit_exceeded` reason. It also fronts the
/// tree: enqueue, lookup, flush and shutdown messages go to it. With
/// `listen`, a listener child wakes queues on other processes' enqueues.
caf::actor spawn_supervisor(caf::actor_system& sys, const builder& config,
                            bool listen);

} // namespace bg_jobs
