#pragma once

// Helpers for testing one's own workers, as Oban.Testing and River's
// rivertest do: run a handler as a queue would, see what a piece of code
// enqueued, and drain a queue's jobs on the test's thread against a real
// store, without starting a node.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/job.hpp"
#include "bg_jobs/core/outcome.hpp"
#include "bg_jobs/core/queue_spec.hpp"
#include "bg_jobs/core/typed_job.hpp"
#include "bg_jobs/core/worker.hpp"

namespace bg_jobs::testing {

/// What `w` reports for one attempt (number `attempt`) of a job with
/// `payload`, run on the caller's thread as an executor runs it (an
/// exception is a failure carrying its `what()`). No store, no actor.
outcome perform_job(const worker& w,
                    nlohmann::json payload = nlohmann::json::object(),
                    int attempt = 1);

/// `perform_job` with a typed job's arguments.
template <job_args Args>
outcome perform_job(const worker& w, const Args& args, int attempt = 1) {
  return perform_job(w, nlohmann::json(args), attempt);
}

/// The unreserved jobs named `name` in `db` (due now or later) whose
/// payload holds every key of `subset` with an equal value, oldest first.
caf::expected<std::vector<job_record>>
enqueued(db_adapter& db, const std::string& name,
         const nlohmann::json& subset = nlohmann::json::object());

/// `enqueued` for a typed job: its name, and its arguments as the subset.
template <job_args Args>
caf::expected<std::vector<job_record>> enqueued(db_adapter& db,
                                                const Args& args) {
  return enqueued(db, std::string{Args::job_name}, nlohmann::json(args));
}

/// What `drain_queue` did, by how each attempt ended.
struct drain_result {
  int succeeded = 0;
  /// Failed for good (retries used up, or discarded).
  int failed = 0;
  /// Attempts that failed and were retried (run again in the drain when
  /// their backoff ended in it, else waiting).
  int retried = 0;
  int snoozed = 0;
  int cancelled = 0;

  int ran() const { return succeeded + failed + retried + snoozed + cancelled; }
};

/// Runs the jobs of `spec`'s workers that are due in `db`, one at a time on
/// the caller's thread, as the queue would: its workers, its retry policy,
/// the same reservation and completion in the store. A job whose retry (or
/// snooze) falls due while draining runs again; one due later stays. Stops
/// when no job is due, or after `max_attempts` attempts (a job that snoozes
/// for ever). Jobs of other names are left alone.
caf::expected<drain_result> drain_queue(db_adapter& db, const queue_spec& spec,
                                        int max_attempts = 10000);

} // namespace bg_jobs::testing
