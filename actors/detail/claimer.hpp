#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"
#include "bg_jobs/adapters/db_adapter.hpp"

namespace bg_jobs::detail {

/// One claim of a queue: the outcomes to persist and the reservation to
/// make, then what the store did (`done`, or `error` when the call failed
/// as a whole).
struct claim_call {
  /// When the queue sent it: every job it reserves was reserved later.
  std::chrono::steady_clock::time_point sent = std::chrono::steady_clock::now();
  std::vector<completion> outcomes;
  reserve_params params;
  std::optional<complete_reserve_result> done;
  caf::error error;
};

using claim_call_ptr = std::shared_ptr<claim_call>;

/// Spawns a queue's claimer, linked to `queue`: a detached actor with a
/// store connection of its own that runs the queue's complete-and-reserve
/// calls, so that the queue goes on handing jobs to its executors while
/// the store works. Answers `(claim_atom, claim_call_ptr)` with the call
/// filled in. The queue registers it with the registry under its own
/// owner, so that a claim that commits after the queue died is released
/// when the claimer exits (a detached actor exits only between calls).
caf::actor spawn_claimer(caf::event_based_actor* queue, node_context ctx,
                         std::string queue_name);

} // namespace bg_jobs::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(bg_jobs::detail::claim_call_ptr)
