#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"
#include "bg_jobs/actors/detail/store_connection.hpp"
#include "bg_jobs/core/detail/retry_policy.hpp"

namespace bg_jobs::detail {

/// An outcome decided for a job: the change to persist and the event that
/// reports it once persisted.
struct pending_outcome {
  completion change;
  event report;

  /// `d`, decided for `j` of `queue`; `duration` is the handler's run time.
  static pending_outcome
  of(decision d, job j, const std::string& queue,
     std::chrono::microseconds duration = std::chrono::microseconds{0});
};

/// A queue's outcomes on their way to the store, kept by its store worker
/// until written in one batch (alone, or in the transaction that claims the
/// next jobs), and each is reported as its event once the store
/// says it applied.
class outcome_buffer {
public:
  outcome_buffer() = default;

  outcome_buffer(node_context ctx, std::string queue, std::string owner)
      : ctx_(std::move(ctx)), queue_(std::move(queue)),
        owner_(std::move(owner)) {}

  /// Keeps `xs` after those kept before.
  void append(std::vector<pending_outcome> xs);

  bool empty() const { return pending_.empty(); }
  size_t size() const { return pending_.size(); }

  /// The jobs whose outcomes wait here (still reserved in the store).
  std::vector<int64_t> job_ids() const;

  /// The changes to persist, oldest first.
  std::vector<completion> changes() const;

  /// The store persisted the first `applied.size()` changes: emits the
  /// event of each that applied, reports each that did not (its
  /// reservation was gone), and forgets them all.
  void report(const std::vector<bool>& applied);

  /// Persists what is pending on its own; a failure keeps it pending and
  /// is reported. With `now`, reconnects at once if the connection was
  /// lost (for shutdown). Returns the error, if any.
  caf::error flush(store_connection& store, bool now = false);

private:
  node_context ctx_;
  std::string queue_;
  std::string owner_;
  std::vector<pending_outcome> pending_;
};

} // namespace bg_jobs::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(bg_jobs::detail::pending_outcome)
