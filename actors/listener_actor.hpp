#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/runtime_context.hpp"

namespace bg_jobs {

/// Spawns the listener, linked to `parent` (the supervisor): a detached
/// actor with its own connection that waits for the store's notifications
/// (PostgreSQL LISTEN) and sends `(wake_atom, job_name)` to `parent` for each
/// job name another process enqueued. It waits in slices of 100 ms, so that
/// it stays responsive to exit messages, and reconnects with backoff when
/// the connection drops.
caf::actor spawn_listener(caf::event_based_actor* parent, runtime_context ctx);

} // namespace bg_jobs
