#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"

namespace bg_jobs::detail {

/// Spawns the queue of `ctx.plan->queues[index]`, linked to `parent` (its
/// supervisor): a detached actor with its own connection. It registers with
/// the registry (as the owner of what it reserves: `<node>/<queue>/<n>`, a
/// new `n` per incarnation) and the router, then polls for jobs (and is
/// woken early by `(wake_atom, name)`), reserves at most as many jobs as it
/// has idle executors, hands them out, and has its outcome_buffer persist every
/// outcome its retry policy decides. When a store call's reply goes
/// missing, it releases what it reserved but does not hold before it
/// reserves again. Answers `(ready_atom)` once started and `(shutdown_atom,
/// int64_t grace_ms)` by stopping: it quits once stopped.
caf::actor spawn_queue(caf::event_based_actor* parent, node_context ctx,
                       size_t index);

} // namespace bg_jobs::detail
