#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/event.hpp"
#include "bg_jobs/scheduling/schedule_definition.hpp"

namespace bg_jobs::detail {

/// A running job asked to stop: the queue that runs it raises its
/// handler's flag.
struct cancel_notice {
  int64_t job_id = 0;
  std::string reason;
  std::string job_name;
};

/// What an operator action means beyond the store: the events that report
/// it, the queues that should look for jobs now, the running jobs to stop.
struct action_effects {
  std::vector<event> events;
  /// Job names whose queues should look now (`"*"`: every queue).
  std::vector<std::string> wake;
  std::vector<cancel_notice> cancels;
};

/// Where a surface hands the effects of its actions: a node applies them
/// (emits the events, wakes and stops its queues); a process without a
/// node (the command line) records the events in the store, for the node
/// that holds the upkeep to report.
using action_sink = std::function<void(action_effects)>;

/// The counts of the jobs named `job_names`, as one queue's, at `now`.
queue_stats queue_stats_of(const std::vector<name_stats>& names,
                           const std::vector<pause_record>& pauses,
                           std::string queue,
                           std::vector<std::string> job_names, timestamp now);

/// Every queue the store knows (each announced by a node once, with the
/// nodes that run it now, maybe none) and every job name, with their
/// counts: what the dashboard and the command line show.
caf::expected<stats_report> store_stats(db_adapter& db, timestamp now);

/// Adds a limited queue's limits and keys to `qs` (nothing for another).
caf::error add_limits(db_adapter& db, queue_stats& qs);

/// Records `fx`'s events in the store's action journal; returns why not.
caf::error record_in_journal(db_adapter& db, const action_effects& fx);

/// Every operator action on jobs and pauses, with its checks, on one
/// connection: the bg_jobs actor (and so `instance` and the remote gate),
/// the HTTP API and the command line all act through it, so that an action
/// has the same effect, and is reported by the same events, whichever
/// surface it came from. Each call adds what it means for the nodes to
/// `effects()` and changes nothing else outside the store.
class control_plane {
public:
  /// Says which queues may be paused or resumed by name: an error names
  /// an unknown one.
  using pausable_check =
      std::function<caf::error(pause_kind, const std::string&)>;

  /// `queue_of` names the queue of a job name in events (without one, the
  /// queue some node announced for it); without `pausable`, a queue must
  /// have been announced by some node.
  explicit control_plane(
      db_adapter& db,
      std::function<std::string(const std::string&)> queue_of = {},
      pausable_check pausable = {});

  /// Cancels a waiting job at once; asks a running one to stop.
  caf::expected<job_record> cancel(int64_t id, const std::string& reason);

  /// Puts a failed or cancelled job back to run.
  caf::expected<job_record> retry(int64_t id);

  /// Cancels what has not finished of workflow `id`; asks its running
  /// tasks to stop.
  caf::expected<workflow_info> cancel_workflow(int64_t id,
                                               const std::string& reason);

  /// Runs workflow `id`'s failed, cancelled and held tasks again.
  caf::expected<workflow_info> retry_workflow(int64_t id);

  /// Puts every failed job of `name` back; returns how many.
  caf::expected<int64_t> retry_failed(const std::string& name);

  /// Deletes a job that does not run.
  caf::expected<void> remove(int64_t id);

  /// Pauses (or resumes) a queue or a scheduled job.
  caf::expected<void> set_paused(pause_kind k, const std::string& name,
                                 bool paused);

  /// Sets one concurrency limit of a limited queue (`max_running` 0
  /// removes it); every node honours it at its next claim.
  caf::expected<void> set_limit(const std::string& queue,
                                const concurrency_limit& limit);

  /// Changes the numbers of the stored rate limit `limit.name` (one a
  /// queue declared; an unknown name is `invalid_argument`); every node
  /// honours them at its next claim.
  caf::expected<void> set_rate_limit(const rate_limit& limit);

  /// Lets the jobs of `key` in the sequenced queue `queue` go past its
  /// failed ones (which stay failed); returns how many failed jobs held it.
  caf::expected<int64_t> unblock_key(const std::string& queue,
                                     const std::string& key);

  /// Adds the schedule `d` (or changes the one of its name) for every
  /// node; returns whether it was added. A name a node declares in code
  /// is `invalid_state`; a bad definition `invalid_argument` or
  /// `invalid_schedule`; nothing is written then.
  caf::expected<bool> put_schedule(const schedule_definition& d);

  /// Removes a schedule added at run time, cancelling its waiting
  /// occurrence; `invalid_argument` for an unknown name, `invalid_state`
  /// for one declared in code.
  caf::expected<void> remove_schedule(const std::string& name);

  /// Enqueues a run of the schedule `name` now (declared or added): it
  /// replaces the occurrence that waits, and the schedule goes on from it.
  /// A run in progress makes it `invalid_state` unless the overlap policy
  /// is `allow`. Runs while the schedule is paused too.
  caf::expected<job> trigger_schedule(const std::string& name);

  /// Every stored schedule, with its pause and latest occurrence.
  caf::expected<std::vector<schedule_info>> schedules();

  /// What the calls so far mean for the nodes; taken by the caller.
  action_effects take_effects() { return std::exchange(effects_, {}); }

private:
  caf::error check_pausable(pause_kind k, const std::string& name);
  /// The job names of `queue`, announced by some node and limited.
  caf::expected<std::vector<std::string>>
  limited_queue(const std::string& queue);
  std::string queue_of(const std::string& job_name);
  void report(event_kind k, const job_record& r, std::string message = {});

  db_adapter& db_;
  std::function<std::string(const std::string&)> queue_of_;
  pausable_check pausable_;
  /// The announced queues by job name, read once when `queue_of_` is empty.
  std::optional<std::map<std::string, std::string>> announced_;
  action_effects effects_;
};

} // namespace bg_jobs::detail
