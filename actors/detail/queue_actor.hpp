#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"

namespace bg_jobs::detail {

/// Spawns the queue of `ctx.plan->queues[index]`, linked to `parent` (its
/// supervisor). It registers with the registry (as the owner of what it
/// reserves: `<node>/<queue>/<n>`, a new `n` per incarnation) and the
/// router, then polls for jobs (and is woken early by `(wake_atom, name)`),
/// reserves at most as many jobs as it has idle executors (and a few ahead),
/// hands them out, and sends every outcome its retry policy decides to its
/// store worker, which makes all of its store calls: the queue never
/// blocks. It is detached all the same: its thread sleeps while it waits,
/// where waking CAF's scheduler threads for its timers costs an idle node
/// about 0.4 ms of CPU a second more (the scheduler's threads poll before
/// they sleep). Answers `(ready_atom)` once started and `(shutdown_atom,
/// int64_t grace_ms)` by stopping: it quits once stopped.
caf::actor spawn_queue(caf::event_based_actor* parent, node_context ctx,
                       size_t index);

} // namespace bg_jobs::detail
