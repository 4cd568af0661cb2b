#include "bg_jobs/maintenance/detail/periodic_actor.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/detail/store_connection.hpp"

namespace bg_jobs::detail {

namespace {

using upkeep_atom = caf::atom_constant<caf::atom("upkeep")>;

struct periodic_state {
  node_context ctx;
  store_connection store;
  std::vector<std::shared_ptr<maintenance_service>> services;
  std::vector<std::chrono::steady_clock::time_point> due;
  /// Until when this node surely holds the store-wide upkeep's lease.
  std::chrono::steady_clock::time_point leader_until;
  bool leader = false;

  static inline const char* name = "bg_jobs.maintenance";

  /// Runs every service that is due; returns how long until the next one.
  std::chrono::milliseconds run() {
    using namespace std::chrono;
    auto now = steady_clock::now();
    for (size_t i = 0; i < services.size(); ++i) {
      if (now < due[i])
        continue;
      // A service's failure may drop the connection: each takes its own
      // handle, and one that finds none waits for the next round.
      auto db = store.get();
      if (!db)
        return std::max(store.backoff(), milliseconds{1});
      auto& s = *services[i];
      // Store-wide upkeep only on the node that holds the lease, and only
      // while it surely does.
      if (s.store_wide() && steady_clock::now() >= leader_until) {
        due[i] = now + s.interval();
        continue;
      }
      auto before = steady_clock::now();
      auto report = s.run_once(*db, ctx.now());
      // After the round: its interval may depend on what it found.
      due[i] = now + s.interval();
      if (report.leader)
        lead(*report.leader, before + report.held_for);
      for (auto& j : report.rescued) {
        event e{event_kind::job_rescued};
        e.message = j.last_error.value_or("rescued");
        e.job = std::move(j);
        ctx.emit(std::move(e));
      }
      for (auto& e : report.events)
        ctx.emit(std::move(e));
      for (auto& err : report.errors)
        store.failed(err, s.name());
    }
    auto next = *std::min_element(due.begin(), due.end());
    return std::max(duration_cast<milliseconds>(next - now), milliseconds{1});
  }

  /// Records the outcome of a round of the leader's lease.
  void lead(bool held, std::chrono::steady_clock::time_point until) {
    leader_until = held ? until : std::chrono::steady_clock::time_point{};
    if (held == leader)
      return;
    leader = held;
    event e{event_kind::maintenance_leader};
    e.message = held ? ctx.node + " runs the store-wide upkeep (rescue, "
                                  "pruning, vacuum)"
                     : ctx.node + " no longer runs the store-wide upkeep";
    ctx.emit(std::move(e));
  }

  /// Gives the lease up, so that another node takes over at once.
  void resign() {
    if (!leader)
      return;
    if (auto db = store.get())
      db->release_lease(leader_service::lease_name, ctx.node);
    leader = false;
  }
};

caf::behavior
periodic_actor(caf::stateful_actor<periodic_state>* self, node_context ctx,
               std::vector<std::shared_ptr<maintenance_service>> services) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.store = store_connection{st.ctx, "maintenance", {}};
  st.services = std::move(services);
  st.due.assign(st.services.size(), std::chrono::steady_clock::now());
  self->send(self, upkeep_atom::value);
  self->set_exit_handler([self](caf::exit_msg& msg) {
    self->state.resign();
    self->quit(std::move(msg.reason));
  });
  return {
      [=](upkeep_atom) {
        if (self->state.services.empty())
          return;
        self->delayed_send(self, self->state.run(), upkeep_atom::value);
      },
      [=](reregister_atom) {},
  };
}

} // namespace

caf::actor
spawn_periodic(caf::event_based_actor* parent, node_context ctx,
               std::vector<std::shared_ptr<maintenance_service>> services) {
  return parent->spawn<caf::linked + caf::detached>(
      periodic_actor, std::move(ctx), std::move(services));
}

} // namespace bg_jobs::detail
