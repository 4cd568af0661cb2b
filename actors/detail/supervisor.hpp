#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/core/event.hpp"

namespace bg_jobs::detail {

/// How a supervisor starts, restarts and stops one child.
struct child_spec {
  std::string name;
  /// Spawns the child, linked to the supervisor.
  std::function<caf::actor(caf::event_based_actor* sup)> start;
  /// The supervisor is ready only once the child answered `(ready_atom)`.
  bool await_ready = false;
  /// The children after this one start only once it is ready.
  bool barrier = false;
  std::chrono::milliseconds ready_timeout{30000};
  /// Shutdown stops the highest tier first, all its children at once, and
  /// the next tier once every child of that one has exited.
  int tier = 0;
  /// Asks the child to stop (default: an exit message); it must then exit.
  std::function<void(caf::event_based_actor* sup, const caf::actor& child)>
      stop;
  /// After this child restarted, every other child receives
  /// `(reregister_atom)`: others keep their handles of it.
  bool others_reregister = false;
};

/// A one-for-one supervisor's settings.
struct supervisor_config {
  /// Started in order.
  std::vector<child_spec> children;
  /// Restarts allowed within `restart_period` before it gives up.
  int max_restarts = 5;
  std::chrono::milliseconds restart_period{1000};
  /// How long a tier may take to stop before its children are killed.
  std::chrono::milliseconds stop_timeout{30000};
  /// Receives the supervisor's events (restart, give-up, shutdown).
  std::function<void(event)> emit;
  /// Runs when the supervisor exits, whatever the reason.
  std::function<void()> on_exit;
};

/// Spawns a one-for-one supervisor: it starts the children in order,
/// restarts a child that died abnormally from its spec, and after more
/// restarts than the intensity allows emits `supervisor_gave_up`, stops the
/// rest and exits with `errc::restart_limit_exceeded`. Answers
/// `(ready_atom)` once every child started and `(shutdown_atom)` once every
/// child stopped, tier by tier; an exit message stops it the same way.
caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_config cfg);

} // namespace bg_jobs::detail
