#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "bg_jobs/core/timestamp.hpp"

namespace bg_jobs {

/// A job waiting in the `jobs` table or running: pending while
/// `reserved_by` is empty, reserved (running) otherwise.
struct job {
  int64_t id = 0;
  std::string name;
  nlohmann::json payload;
  /// Attempts started so far, counting the current one while reserved.
  int attempts = 0;
  timestamp created_at;
  timestamp available_at;
  std::optional<timestamp> reserved_at;
  std::optional<std::string> reserved_by;
  /// The error text of the last failed attempt, if any.
  std::optional<std::string> last_error;
  /// Set on the job an enqueue returns when its request was unique and an
  /// equal job already counted: that job, and nothing new was stored.
  bool conflict = false;

  bool operator==(const job&) const = default;
};

/// A job that completed successfully, as kept in `jobs_succeeded`.
struct succeeded_job {
  int64_t id = 0;
  std::string name;
  nlohmann::json payload;
  int attempts = 0;
  timestamp created_at;
  timestamp available_at;
  timestamp succeeded_at;

  bool operator==(const succeeded_job&) const = default;
};

/// A job that failed for good, as kept in `jobs_failed`.
struct failed_job {
  int64_t id = 0;
  std::string name;
  nlohmann::json payload;
  int attempts = 0;
  /// The error text of the last attempt.
  std::string exception;
  timestamp created_at;
  timestamp available_at;
  timestamp failed_at;

  bool operator==(const failed_job&) const = default;
};

} // namespace bg_jobs
