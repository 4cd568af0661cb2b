#include "bg_jobs/maintenance/detail/periodic_actor.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/detail/store_connection.hpp"
#include "bg_jobs/actors/messages.hpp"

namespace bg_jobs::detail {

namespace {

using upkeep_atom = caf::atom_constant<caf::atom("upkeep")>;

/// The least time between two rounds of a service that announcements wake.
constexpr std::chrono::milliseconds wake_gap{100};

struct periodic_state {
  node_context ctx;
  store_connection store;
  std::vector<std::shared_ptr<maintenance_service>> services;
  std::vector<std::chrono::steady_clock::time_point> due;
  /// When each service's last round started.
  std::vector<std::chrono::steady_clock::time_point> started;
  /// The upkeep message that counts (the others were overtaken by a wake)
  /// and when it comes.
  uint64_t round = 0;
  std::chrono::steady_clock::time_point next_at;
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
      started[i] = before;
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

  /// Sends the next upkeep message, in `delay`; any sent before no longer
  /// counts.
  void schedule(caf::event_based_actor* self, std::chrono::milliseconds delay) {
    next_at = std::chrono::steady_clock::now() + delay;
    self->delayed_send(self, delay, upkeep_atom::value, ++round);
  }

  /// The store announced `name` ("*": something it did not tell apart):
  /// the services it wakes are due now, or `wake_gap` after their last
  /// round. Store-wide ones only while this node holds the upkeep.
  void wake(caf::event_based_actor* self, const std::string& name) {
    using namespace std::chrono;
    auto now = steady_clock::now();
    auto at = steady_clock::time_point::max();
    for (size_t i = 0; i < services.size(); ++i) {
      auto& s = *services[i];
      auto by = s.woken_by();
      if (by == nullptr || (name != "*" && name != by) ||
          (s.store_wide() && now >= leader_until))
        continue;
      due[i] = std::min(due[i], std::max(now, started[i] + wake_gap));
      at = std::min(at, due[i]);
    }
    if (at < next_at)
      schedule(self, std::max(ceil<milliseconds>(at - now), milliseconds{0}));
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
  st.started.assign(st.services.size(), std::chrono::steady_clock::time_point{});
  st.schedule(self, std::chrono::milliseconds{0});
  self->set_exit_handler([self](caf::exit_msg& msg) {
    self->state.resign();
    self->quit(std::move(msg.reason));
  });
  return {
      [=](upkeep_atom, uint64_t round) {
        auto& st = self->state;
        if (round != st.round || st.services.empty())
          return;
        st.schedule(self, st.run());
      },
      [=](wake_atom, const std::string& name) { self->state.wake(self, name); },
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
