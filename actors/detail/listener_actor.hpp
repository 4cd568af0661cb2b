#pragma once

#include <memory>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"

namespace bg_jobs::detail {

/// Ends a listener's wait from any thread (an eventfd). Once signalled it
/// stays signalled: each listener incarnation has its own.
class wakeup_interrupt {
public:
  wakeup_interrupt();
  ~wakeup_interrupt();
  wakeup_interrupt(const wakeup_interrupt&) = delete;
  wakeup_interrupt& operator=(const wakeup_interrupt&) = delete;

  void signal() const;
  bool signalled() const;
  int fd() const { return fd_; }

private:
  int fd_;
};

/// Spawns the listener, linked to `parent`: a detached actor with its own
/// connection that waits for the store's notifications (PostgreSQL LISTEN,
/// SQLite's WAL watch) and sends `(wake_atom, job_name)` to the router for
/// each job name another process enqueued. After a short first wait (so
/// that it answers the supervisor's ready request at once) it waits in
/// slices of 10 s; `stop` ends a wait at once, so whoever stops the
/// listener signals it before the exit message. It reconnects with the
/// store connection's backoff when the connection drops.
caf::actor spawn_listener(caf::event_based_actor* parent, node_context ctx,
                          std::shared_ptr<const wakeup_interrupt> stop);

} // namespace bg_jobs::detail
