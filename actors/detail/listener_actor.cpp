#include "bg_jobs/actors/detail/listener_actor.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/detail/store_connection.hpp"
#include "bg_jobs/actors/messages.hpp"

namespace bg_jobs::detail {

namespace {

using listen_atom = caf::atom_constant<caf::atom("listen")>;

constexpr std::chrono::milliseconds slice{100};

struct listener_state {
  node_context ctx;
  store_connection store;

  static inline const char* name = "bg_jobs.listener";

  /// Waits one slice; returns the delay before the next one.
  std::chrono::milliseconds listen(caf::event_based_actor* self,
                                   std::chrono::milliseconds wait) {
    auto db = store.get();
    if (!db)
      return std::max(store.backoff(), std::chrono::milliseconds{1});
    auto names = db->await_wakeups(wait);
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
                             node_context ctx) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.store = store_connection{st.ctx, "listener", {}};
  // Listen before answering ready: an enqueue right after build() wakes.
  st.listen(self, std::chrono::milliseconds{0});
  self->send(self, listen_atom::value);
  return {
      [=](ready_atom) { return caf::unit; },
      [=](reregister_atom) {},
      [=](listen_atom) {
        auto delay = self->state.listen(self, slice);
        if (delay.count() == 0)
          self->send(self, listen_atom::value);
        else
          self->delayed_send(self, delay, listen_atom::value);
      },
  };
}

} // namespace

caf::actor spawn_listener(caf::event_based_actor* parent, node_context ctx) {
  return parent->spawn<caf::linked + caf::detached>(listener_actor,
                                                    std::move(ctx));
}

} // namespace bg_jobs::detail
