#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "bg_jobs/core/timestamp.hpp"

namespace bg_jobs {

/// How one reserved job ends: the change an adapter persists for it. A job
/// asked to cancel while it ran (`db_adapter::cancel_job`) is recorded as
/// cancelled whatever the kind.
struct completion {
  enum class kind {
    /// Move the job to `jobs_succeeded`.
    succeeded,
    /// Move the job to `jobs_failed` with `error`.
    failed,
    /// Release the job, available again at `available_at`, keeping `error`.
    retry,
    /// Like retry, but the attempt does not count.
    snooze,
    /// Move the job to `jobs_failed` as cancelled, with `error` as the
    /// reason (a reason stored by `cancel_job` takes precedence).
    cancelled,
  };

  kind what = kind::succeeded;
  int64_t job_id = 0;
  /// The reservation the caller believes it holds; the change applies only
  /// while the job is still reserved by exactly this owner.
  std::optional<std::string> reserved_by;
  std::string error;
  timestamp available_at;
  /// With `snooze`: the rate limit whose key of this job is blocked for
  /// `block_ms` from the store's now (a handler's back-pressure); none when
  /// empty.
  std::string rate_limit;
  int64_t block_ms = 0;
  /// With `succeeded`: the handler already recorded the success in its own
  /// transaction (`outcome::committed`), so a change that finds the job
  /// gone from `jobs` is reported as done, not as a lost reservation.
  bool committed = false;
  /// With `succeeded`: the handler's output as JSON text, stored with the
  /// job in the same transaction; empty when none.
  std::string output;
};

} // namespace bg_jobs
