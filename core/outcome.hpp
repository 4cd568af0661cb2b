#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

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
    /// Back-pressure from downstream (an HTTP 429 with a retry-after): the
    /// job's rate key is blocked for `delay` on every node and the job goes
    /// back to wait without using up an attempt.
    rate_limited,
    /// The handler recorded the job's success itself, in its own
    /// transaction with its own writes (`postgres_adapter::complete_in`,
    /// `sqlite_adapter::complete_in`), and that transaction committed.
    committed,
  };

  static outcome success() { return outcome{kind::success, {}, {}}; }

  /// Success with an output (a JSON value, at most `max_output_size`
  /// bytes serialized): stored with the job in the transaction that
  /// records its success, read by `instance::get_job` and by the tasks
  /// that depend on it (`job_context::parent_outputs`). An output over
  /// the limit fails the attempt instead, saying so.
  static outcome success(nlohmann::json output) {
    outcome o{kind::success, {}, {}};
    o.output_ = std::move(output);
    return o;
  }

  /// The handler's own transaction, which holds its writes and the job's
  /// completion (`complete_in`), committed: the job is done. (Should it
  /// not have recorded the completion after all, the runtime records the
  /// success as for `success()`.)
  static outcome committed() { return outcome{kind::committed, {}, {}}; }

  static outcome failure(std::string message) {
    return outcome{kind::failure, std::move(message), {}};
  }

  static outcome snooze(std::chrono::milliseconds delay) {
    return outcome{kind::snooze, {}, delay};
  }

  /// Downstream asked to back off for `retry_after`: no job of this job's
  /// rate key starts on any node until then (in a queue with a rate limit;
  /// elsewhere it is a snooze), and this one waits at least as long, its
  /// attempt not counted.
  static outcome rate_limited(std::chrono::milliseconds retry_after) {
    return outcome{kind::rate_limited, {}, retry_after};
  }

  static outcome cancel(std::string reason) {
    return outcome{kind::cancel, std::move(reason), {}};
  }

  static outcome discard(std::string message) {
    return outcome{kind::discard, std::move(message), {}};
  }

  kind what() const { return kind_; }
  bool ok() const {
    return kind_ == kind::success || kind_ == kind::committed;
  }

  /// The error text of a failure or a discard, or the reason of a
  /// cancellation.
  const std::string& message() const { return message_; }

  /// The delay of a snooze, the retry-after of a rate limit.
  std::chrono::milliseconds delay() const { return delay_; }

  /// The output of a success; null when it has none.
  const nlohmann::json& output() const { return output_; }

private:
  outcome(kind k, std::string message, std::chrono::milliseconds delay)
      : kind_(k), message_(std::move(message)), delay_(delay) {}

  kind kind_;
  std::string message_;
  std::chrono::milliseconds delay_;
  nlohmann::json output_;
};

/// The largest output a handler may return, in bytes of serialized JSON.
constexpr size_t max_output_size = 256 * 1024;

} // namespace bg_jobs
