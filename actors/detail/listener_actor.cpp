#include "bg_jobs/actors/detail/listener_actor.hpp"

#include <cstdint>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/detail/store_connection.hpp"
#include "bg_jobs/actors/messages.hpp"

namespace bg_jobs::detail {

namespace {

using listen_atom = caf::atom_constant<caf::atom("listen")>;

constexpr std::chrono::milliseconds first_slice{10};
constexpr std::chrono::milliseconds slice{10000};

} // namespace

wakeup_interrupt::wakeup_interrupt()
    : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

wakeup_interrupt::~wakeup_interrupt() {
  if (fd_ >= 0)
    ::close(fd_);
}

void wakeup_interrupt::signal() const {
  uint64_t one = 1;
  if (fd_ >= 0 && ::write(fd_, &one, sizeof(one)) < 0) {
    // The counter is saturated: it is signalled already.
  }
}

bool wakeup_interrupt::signalled() const {
  pollfd pfd{fd_, POLLIN, 0};
  return fd_ >= 0 && ::poll(&pfd, 1, 0) > 0;
}

namespace {

struct listener_state {
  node_context ctx;
  store_connection store;
  std::shared_ptr<const wakeup_interrupt> stop;

  static inline const char* name = "bg_jobs.listener";

  /// Waits one slice; returns the delay before the next one.
  std::chrono::milliseconds listen(caf::event_based_actor* self,
                                   std::chrono::milliseconds wait) {
    auto db = store.get();
    if (!db)
      return std::max(store.backoff(), std::chrono::milliseconds{1});
    auto names = db->await_wakeups(wait, stop->fd());
    if (!names) {
      store.failed(names.error(), "listening for enqueues");
      return store.backoff();
    }
    if (auto router = ctx.dir->get(actor_directory::router))
      for (auto& name : *names)
        self->send(router, wake_atom::value, name);
    return std::chrono::milliseconds{0};
  }
};

caf::behavior listener_actor(caf::stateful_actor<listener_state>* self,
                             node_context ctx,
                             std::shared_ptr<const wakeup_interrupt> stop) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.stop = std::move(stop);
  st.store = store_connection{st.ctx, "listener", {}};
  // Listen before answering ready: an enqueue right after build() wakes.
  st.listen(self, std::chrono::milliseconds{0});
  self->send(self, listen_atom::value, true);
  return {
      [=](ready_atom) { return caf::unit; },
      [=](reregister_atom) {},
      [=](listen_atom, bool first) {
        // Once stopped, it only waits for its exit message.
        if (self->state.stop->signalled())
          return;
        auto delay = self->state.listen(self, first ? first_slice : slice);
        if (delay.count() == 0)
          self->send(self, listen_atom::value, false);
        else
          self->delayed_send(self, delay, listen_atom::value, false);
      },
  };
}

} // namespace

caf::actor spawn_listener(caf::event_based_actor* parent, node_context ctx,
                          std::shared_ptr<const wakeup_interrupt> stop) {
  return parent->spawn<caf::linked + caf::detached>(
      listener_actor, std::move(ctx), std::move(stop));
}

} // namespace bg_jobs::detail
