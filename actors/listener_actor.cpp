#include "bg_jobs/actors/listener_actor.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

namespace {

using listen_atom = caf::atom_constant<caf::atom("listen")>;

constexpr std::chrono::milliseconds slice{100};
constexpr std::chrono::milliseconds max_backoff{5000};

struct listener_state {
  runtime_context ctx;
  caf::actor_addr parent;
  std::unique_ptr<db_adapter> db;
  std::chrono::milliseconds backoff{100};

  static inline const char* name = "bg_jobs.listener";

  void report(const caf::error& err) {
    event e{event_kind::db_error};
    e.message = "listening for enqueues: " + describe(err) + "; retrying in "
                + std::to_string(backoff.count()) + " ms";
    ctx.bus->emit(std::move(e));
  }
};

caf::behavior listener_actor(caf::stateful_actor<listener_state>* self,
                             runtime_context ctx, caf::actor_addr parent) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.parent = std::move(parent);
  // Listen before answering ready: an enqueue right after build() wakes.
  if (auto conn = st.ctx.connect()) {
    st.db = std::move(*conn);
    if (!st.db->await_wakeups(std::chrono::milliseconds{0}))
      st.db.reset();
  }
  self->send(self, listen_atom::value);
  return {
    [=](ready_atom) { return caf::unit; },
    [=](listen_atom) {
      auto& st = self->state;
      if (!st.db) {
        auto conn = st.ctx.connect();
        if (!conn) {
          st.report(conn.error());
          self->delayed_send(self, st.backoff, listen_atom::value);
          st.backoff = std::min(st.backoff * 2, max_backoff);
          return;
        }
        st.db = std::move(*conn);
      }
      auto names = st.db->await_wakeups(slice);
      if (!names) {
        st.db.reset();
        st.report(names.error());
        self->delayed_send(self, st.backoff, listen_atom::value);
        st.backoff = std::min(st.backoff * 2, max_backoff);
        return;
      }
      st.backoff = std::chrono::milliseconds{100};
      if (auto sup = caf::actor_cast<caf::actor>(st.parent))
        for (auto& name : *names)
          self->send(sup, wake_atom::value, name);
      self->send(self, listen_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_listener(caf::event_based_actor* parent, runtime_context ctx) {
  return parent->spawn<caf::linked + caf::detached>(
    listener_actor, std::move(ctx), parent->address());
}

} // namespace bg_jobs
