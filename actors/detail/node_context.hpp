#pragma once

#include <memory>
#include <mutex>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/actor_cast.hpp>

#include "bg_jobs/actors/detail/event_bus.hpp"
#include "bg_jobs/actors/detail/node_plan.hpp"
#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/clock.hpp"

namespace bg_jobs::detail {

/// The current incarnation of each actor of the tree that others address:
/// the supervisor updates an entry whenever it (re)starts that actor. Holds
/// weak addresses, so that it never keeps an actor alive.
class actor_directory {
public:
  enum role {
    registry,
    router,
    front_door,
    events,
    scheduler,
    maintenance,
    role_count
  };

  void set(role r, const caf::actor& a) {
    std::lock_guard<std::mutex> guard{mtx_};
    addrs_[r] = a.address();
  }

  caf::actor get(role r) const {
    std::lock_guard<std::mutex> guard{mtx_};
    return caf::actor_cast<caf::actor>(addrs_[r]);
  }

  void clear() {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& a : addrs_)
      a = caf::actor_addr{};
  }

private:
  mutable std::mutex mtx_;
  caf::actor_addr addrs_[role_count];
};

/// What every actor of one bg_jobs tree shares: the plan it was built from,
/// the store, the clock, where events go and where the other actors are.
struct direct_enqueue;
class spare_connections;

/// Marks the node instance `id` of this process as gone, so that a later
/// node may take its name over (done when its tree is seen to exit).
void forget_node_instance(const std::string& id);

struct node_context {
  std::shared_ptr<const node_plan> plan;
  /// Opens a connection for an actor that talks to the store.
  adapter_factory connect;
  /// Connections opened ahead for start-up, by the name of the
  /// `store_connection` that takes them (may be null).
  std::shared_ptr<spare_connections> spares;
  /// This process's node name, the first part of every reservation owner.
  std::string node;
  /// This start's claim on the name (`db_adapter::claim_node`).
  std::string instance;
  std::shared_ptr<bg_jobs::clock> clock;
  std::shared_ptr<event_bus> bus;
  std::shared_ptr<actor_directory> dir;
  /// The node's shared connection: `instance::enqueue`'s, and the one the
  /// registry and the scheduler make their few calls on, one caller at a
  /// time.
  std::shared_ptr<direct_enqueue> shared;

  timestamp now() const { return clock->now(); }

  /// Sends `e` to the event actor (stamped with the clock).
  void emit(event e) const { bus->emit(std::move(e)); }
};

} // namespace bg_jobs::detail
