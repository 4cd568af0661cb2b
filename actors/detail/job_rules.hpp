#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bg_jobs/actors/detail/outcome_buffer.hpp"
#include "bg_jobs/core/keyring.hpp"
#include "bg_jobs/core/queue_spec.hpp"
#include "bg_jobs/core/detail/retry_policy.hpp"
#include "bg_jobs/core/worker.hpp"

namespace bg_jobs::detail {

/// What one queue does with its jobs, fixed when it starts: the worker of
/// each name, the retry policy (the worker's or the queue's), the timeout,
/// and the reservation owner its outcomes are guarded by. Pure and shared
/// read-only by the queue and its executors' threads, which decide each
/// attempt's completion themselves.
class job_rules {
public:
  job_rules(const queue_spec& spec, std::string owner,
            std::shared_ptr<const keyring> keys = nullptr);

  const std::string& queue() const { return queue_; }
  const std::string& owner() const { return owner_; }

  /// The job names this queue runs, in the order of its workers.
  const std::vector<std::string>& job_names() const { return names_; }

  /// The worker of `name`, or null.
  const worker* worker_of(const std::string& name) const;

  /// The retry policy of `j`: its worker's, or else the queue's.
  const retry_policy& policy(const job& j) const;

  /// The time limit of a job of `name`: its worker's, or else the queue's.
  std::optional<std::chrono::milliseconds>
  timeout_of(const std::string& name) const;

  /// Whether a timeout applies to some job of this queue.
  bool timeouts() const { return timeouts_; }

  /// The attempt of `j` ended with `o` at `now`, its handler having run
  /// for `duration`.
  pending_outcome decide(const job& j, const outcome& o, timestamp now,
                         std::minstd_rand& rng,
                         std::chrono::microseconds duration) const;

  /// Opens the encrypted values of `j` for its handler (see
  /// `builder::with_encryption`); `decryption_failed` when one does not.
  caf::error open(job& j) const;

  /// `j` goes back to the table unstarted (or its attempt counts).
  pending_outcome release(job j, const std::string& why, bool count_attempt,
                          timestamp now) const;

private:
  std::string queue_;
  std::string owner_;
  std::map<std::string, worker> workers_;
  std::vector<std::string> names_;
  retry_policy queue_policy_;
  std::map<std::string, retry_policy> worker_policies_;
  std::optional<std::chrono::milliseconds> queue_timeout_;
  bool timeouts_ = false;
  /// The name of the queue's rate limit, empty when none.
  std::string rate_limit_;
  std::shared_ptr<const keyring> keys_;
};

} // namespace bg_jobs::detail
