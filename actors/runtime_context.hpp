#pragma once

#include <memory>
#include <string>

#include "bg_jobs/actors/event_bus.hpp"
#include "bg_jobs/adapters/db_adapter.hpp"

namespace bg_jobs {

/// What every actor of one bg_jobs tree shares.
struct runtime_context {
  /// Opens a connection for an actor that talks to the store.
  adapter_factory connect;
  /// This process's node name, the first part of every reservation owner.
  std::string node;
  std::shared_ptr<event_bus> bus;
  /// Whether a listener wakes queues on enqueues from other processes.
  bool listen = false;
};

} // namespace bg_jobs
