#pragma once

#include <map>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/core/event.hpp"

namespace bg_jobs::detail {

/// The listeners of one bg_jobs tree: global ones, those per queue, and
/// those per job name (a scheduled job's).
struct listener_set {
  std::vector<event_listener> global;
  std::map<std::string, std::vector<event_listener>> per_queue;
  std::map<std::string, std::vector<event_listener>> per_job;
};

/// Spawns the event actor, linked to `parent`: a detached actor that calls
/// the listeners one event at a time, so a listener needs no locking and a
/// slow one never slows a queue. A throwing listener is reported once (a
/// `listener_error` event) and otherwise ignored.
caf::actor spawn_event_actor(caf::event_based_actor* parent,
                             listener_set listeners);

} // namespace bg_jobs::detail
