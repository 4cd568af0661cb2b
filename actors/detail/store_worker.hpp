#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"
#include "bg_jobs/actors/detail/outcome_buffer.hpp"
#include "bg_jobs/adapters/db_adapter.hpp"

namespace bg_jobs::detail {

/// One claim of a queue: the outcomes decided since its last message, the
/// jobs it holds (its executors' and those reserved ahead) and the
/// reservation to make; then the jobs reserved, or why none were.
struct claim_call {
  /// When the queue sent it: every job it reserves was reserved later.
  std::chrono::steady_clock::time_point sent = std::chrono::steady_clock::now();
  std::vector<pending_outcome> outcomes;
  std::vector<int64_t> held;
  reserve_params params;
  std::vector<job> reserved;
  /// Set when nothing was reserved because a store call failed.
  caf::error error;
  /// After a short claim of a queue with a rate limit: milliseconds until
  /// the rate lets the first job it held back go (none: it holds none).
  std::optional<int64_t> rate_wait;
};

using claim_call_ptr = std::shared_ptr<claim_call>;

/// The outcomes a queue decided, on their way to its store worker.
using outcome_batch = std::vector<pending_outcome>;

/// Spawns the store worker of a queue, linked to `queue`: a detached actor
/// with the queue's one connection, through which every store call of the
/// queue goes, so that the queue itself never blocks. It keeps the
/// outcomes the queue sends until they are written (with the next claim,
/// or on their own when the queue asks), emits each one's event once
/// written, reconciles the store after a call whose reply was lost, and
/// reads cancels of the queue's running jobs asked for on other nodes.
///
/// Messages, all from its queue:
/// - `(claim_atom, claim_call_ptr)` → `claim_call_ptr`: writes the
///   outcomes it keeps (and those the call carries) and reserves.
/// - `(write_outcomes_atom, outcome_batch)`: writes what it keeps now.
/// - `(check_cancels_atom, std::vector<int64_t>)`: sends `(cancel_atom,
///   id, reason)` to the queue for each of those jobs (the ones it holds)
///   still reserved by its owner and asked to cancel.
/// - `(finish_atom, outcome_batch)` → `caf::unit`: writes what it keeps
///   (reconnecting at once if need be) and releases every reservation of
///   the owner left in the store.
///
/// The queue registers it under its own owner, so that a claim that
/// commits after the queue died is released when the worker exits (a
/// detached actor exits only between calls). Outcomes it still keeps when
/// its queue dies are written before it exits.
caf::actor spawn_store_worker(caf::event_based_actor* queue, node_context ctx,
                              std::string queue_name, std::string owner);

} // namespace bg_jobs::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(bg_jobs::detail::claim_call_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(bg_jobs::detail::outcome_batch)
