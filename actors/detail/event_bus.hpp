#pragma once

#include <memory>
#include <mutex>

#include <caf/actor.hpp>

#include "bg_jobs/core/clock.hpp"
#include "bg_jobs/core/event.hpp"

namespace bg_jobs::detail {

/// Where actors of one bg_jobs tree send their events: the current event
/// actor, which the supervisor replaces if it ever restarts. Stamps each
/// event with the tree's clock. Does nothing when no listener is configured.
class event_bus {
public:
  event_bus(bool active, std::shared_ptr<bg_jobs::clock> clk)
      : active_(active), clock_(std::move(clk)) {}

  bool active() const { return active_; }

  /// Sends `e` to the event actor, if any.
  void emit(event e) const;

  void retarget(caf::actor target) {
    std::lock_guard<std::mutex> guard{mtx_};
    target_ = std::move(target);
  }

  caf::actor target() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return target_;
  }

private:
  bool active_;
  std::shared_ptr<bg_jobs::clock> clock_;
  mutable std::mutex mtx_;
  caf::actor target_;
};

} // namespace bg_jobs::detail
