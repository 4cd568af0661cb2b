#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"

namespace bg_jobs::detail {

/// Spawns the listener, linked to `parent`: a detached actor with its own
/// connection that waits for the store's notifications (PostgreSQL LISTEN,
/// SQLite's WAL watch) and sends `(wake_atom, job_name)` to the router for
/// each job name another process enqueued. It waits in slices of 100 ms, so
/// that it stays responsive to exit messages, and reconnects with the
/// store connection's backoff when the connection drops.
caf::actor spawn_listener(caf::event_based_actor* parent, node_context ctx);

} // namespace bg_jobs::detail
