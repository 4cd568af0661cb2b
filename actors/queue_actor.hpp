#pragma once

#include <string>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/queue_spec.hpp"
#include "bg_jobs/actors/runtime_context.hpp"

namespace bg_jobs {

/// `(reregister_atom)`: the registry restarted; register executors again.
using reregister_atom = caf::atom_constant<caf::atom("reregister")>;

/// Spawns a queue, linked to `parent` (its supervisor): a detached actor
/// with its own connection. It polls for jobs (and is woken early by
/// `(wake_atom, name)`), reserves at most as many jobs as it has idle
/// executors, hands them out, and persists every outcome: success, retry
/// with backoff, snooze, or a move to `jobs_failed` past `max_retries`.
/// Jobs it reserves are owned by `owner`. Answers `(ready_atom)` once
/// started and `(shutdown_atom, int64_t grace_ms)` once stopped.
caf::actor spawn_queue(caf::event_based_actor* parent, queue_spec spec,
                       runtime_context ctx, std::string owner);

} // namespace bg_jobs
