#pragma once

#include <chrono>
#include <string>

namespace bg_jobs {

/// What a handler reports about one attempt of a job.
class outcome {
public:
  enum class kind {
    /// The job is done; it moves to `jobs_succeeded`.
    success,
    /// The attempt failed; the job is retried per policy, then failed.
    failure,
    /// Run the job again after a delay without using up an attempt.
    snooze,
    /// Stop for good: the job moves to `jobs_failed` without retries.
    cancel,
    /// Fail for good, without retries (no attempt could succeed: its
    /// payload does not decode): the job moves to `jobs_failed` as failed.
    discard,
  };

  static outcome success() { return outcome{kind::success, {}, {}}; }

  static outcome failure(std::string message) {
    return outcome{kind::failure, std::move(message), {}};
  }

  static outcome snooze(std::chrono::milliseconds delay) {
    return outcome{kind::snooze, {}, delay};
  }

  static outcome cancel(std::string reason) {
    return outcome{kind::cancel, std::move(reason), {}};
  }

  static outcome discard(std::string message) {
    return outcome{kind::discard, std::move(message), {}};
  }

  kind what() const { return kind_; }
  bool ok() const { return kind_ == kind::success; }

  /// The error text of a failure or a discard, or the reason of a
  /// cancellation.
  const std::string& message() const { return message_; }

  /// The delay of a snooze.
  std::chrono::milliseconds delay() const { return delay_; }

private:
  outcome(kind k, std::string message, std::chrono::milliseconds delay)
      : kind_(k), message_(std::move(message)), delay_(delay) {}

  kind kind_;
  std::string message_;
  std::chrono::milliseconds delay_;
};

} // namespace bg_jobs
