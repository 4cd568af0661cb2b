#pragma once

#include <random>
#include <string>

#include "bg_jobs/core/backoff.hpp"
#include "bg_jobs/core/completion.hpp"
#include "bg_jobs/core/event.hpp"
#include "bg_jobs/core/job.hpp"
#include "bg_jobs/core/outcome.hpp"

namespace bg_jobs {

/// What a queue's retry policy needs to know.
struct retry_settings {
  /// Retries after the first attempt.
  int max_retries = 3;
  bg_jobs::backoff backoff = backoff::exponential();
};

/// What to persist for a job, and the event that reports it once persisted.
struct decision {
  completion change;
  event_kind report = event_kind::job_succeeded;
  /// The event's message (the failure, the reason of a release).
  std::string message;
};

/// The pure rules that turn the end of an attempt into a completion. They
/// read no clock and touch no store: `now` and the random source come in.
class retry_policy {
public:
  explicit retry_policy(retry_settings settings)
      : settings_(std::move(settings)) {}

  /// The handler of `j` (reserved by `owner`) returned `o` at `now`: a
  /// success moves to succeeded; a failure is retried with backoff while
  /// attempts remain, then fails; a snooze waits without counting the
  /// attempt; a cancel is recorded as cancelled at once, never retried.
  decision on_outcome(const job& j, const outcome& o, const std::string& owner,
                      timestamp now, std::minstd_rand& rng) const;

  /// The attempt of `j` ended without an outcome (its executor died, or the
  /// queue stopped): it goes back to the table at once. A crash counts the
  /// attempt (past the last one the job fails); a shutdown does not.
  decision on_release(const job& j, const std::string& why, bool count_attempt,
                      const std::string& owner, timestamp now) const;

  /// `j` was reserved with more attempts than allowed, which only crashes
  /// cause (rescued or released jobs): fail it instead of running it.
  bool exhausted(const job& j) const {
    return j.attempts > settings_.max_retries + 1;
  }

  /// The completion of an exhausted job.
  decision on_exhausted(const job& j, const std::string& owner) const;

private:
  retry_settings settings_;
};

} // namespace bg_jobs
