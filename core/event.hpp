#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "bg_jobs/core/job.hpp"
#include "bg_jobs/core/timestamp.hpp"

namespace bg_jobs {

/// Every lifecycle point bg_jobs reports.
enum class event_kind {
  job_enqueued,
  /// A unique request was absorbed by the job that holds its key (kept,
  /// or changed as its `unique_conflict` says): `job` is that job.
  job_absorbed,
  job_reserved,
  job_started,
  job_succeeded,
  /// An attempt failed (the handler failed, threw or timed out) and the
  /// job will be retried: `bg_jobs.job.exception`.
  job_exception,
  /// An attempt failed and no retries are left: the job moved to failed.
  job_failed,
  job_snoozed,
  job_cancelled,
  /// A running job was asked to stop (`cancel`); it ends as cancelled.
  job_cancel_requested,
  /// A failed or cancelled job was put back to run again (an operator's
  /// retry): `bg_jobs.job.retried`.
  job_retried,
  job_deleted,
  /// A reservation was released (its holder died or shut down).
  job_released,
  /// A job held by a dead node was taken back by a live one.
  job_rescued,
  no_worker_for_job,
  queue_polling_started,
  queue_polling_stopped,
  queue_paused,
  queue_resumed,
  /// A queue's concurrency changed on this node; `message` says to what.
  queue_scaled,
  /// A concurrency limit of a queue was set or removed (for every node);
  /// `message` says which and to what.
  queue_limit_changed,
  /// An operator unblocked a key of a sequenced queue; `message` names it.
  key_unblocked,
  /// A rate limit's numbers changed (for every node); `message` says to
  /// what.
  rate_limit_changed,
  schedule_paused,
  schedule_resumed,
  queue_error,
  db_error,
  /// A connection to the store works again after it was lost or refused.
  db_reconnected,
  migrate_up,
  /// An actor died; `message` names it and says how many jobs it held.
  actor_down,
  supervisor_restart,
  supervisor_gave_up,
  listener_error,
  shutdown_started,
  shutdown_complete,
  /// This node took or lost the lease of the store-wide upkeep (rescue,
  /// pruning, vacuum); `message` says which.
  maintenance_leader,
  /// A workflow was stored; `message` names it and its size.
  workflow_started,
  /// An operator cancelled a workflow; `message` names it.
  workflow_cancelled,
  /// An operator retried a workflow's failed, cancelled and held tasks.
  workflow_retried,
  /// A running handler reported its progress (`job_context::
  /// report_progress`): `progress` holds it, `job` the job.
  job_progress,
  /// A workflow reached a final state (succeeded, failed or cancelled),
  /// reported by the node whose completion finished it: `workflow_id`,
  /// and `message` names its state.
  workflow_finished,
  /// A task of a workflow is held by a parent that did not succeed: the
  /// workflow cannot finish without an operator (`retry_workflow`,
  /// `cancel_workflow`). Reported by the node whose completion held it.
  workflow_stuck,
  /// A schedule was added or changed at run time, for every node: `queue`
  /// names it, `message` says which and its definition.
  schedule_changed,
  /// A schedule was removed: by an operator, or by the upkeep once no node
  /// declared it any more; `queue` names it.
  schedule_removed,
  /// The earlier name of `job_exception`.
  job_retry [[deprecated("renamed job_exception")]] = job_exception,
};

/// How loud an event is when logged.
enum class log_level { debug, info, warning, error };

/// One event, as delivered to listeners. Fields that do not apply to a kind
/// are empty.
struct event {
  explicit event(event_kind k = event_kind::job_enqueued) : kind(k) {}

  event_kind kind;
  /// When it happened, by the clock of the tree that emitted it.
  timestamp at;
  /// The queue or scheduled job that emitted the event.
  std::string queue;
  std::optional<bg_jobs::job> job;
  /// Error text, actor name or other detail.
  std::string message;
  /// How long the handler ran (succeeded, retry, failed).
  std::chrono::microseconds duration{0};
  /// How long the job waited between becoming available and starting.
  std::chrono::milliseconds queue_time{0};
  /// The progress reported (`job_progress`).
  std::optional<job_progress> progress;
  /// The workflow it is about (the `workflow_*` kinds), 0 otherwise.
  int64_t workflow_id = 0;
  /// The state a workflow reached (`workflow_finished`): `succeeded`,
  /// `failed` or `cancelled`.
  std::string state;

  /// The telemetry name, e.g. `"bg_jobs.job.start"`.
  const char* name() const;

  /// The level the logger listener uses.
  log_level level() const;
};

/// A function that receives events. Listeners run on the event actor's
/// thread, one event at a time; an exception one throws is reported once
/// and otherwise ignored.
using event_listener = std::function<void(const event&)>;

/// Returns the telemetry name of `k`.
const char* to_string(event_kind k);

/// The kind whose telemetry name is `name`, if any.
std::optional<event_kind> event_kind_named(std::string_view name);

/// Returns `"debug"`, `"info"`, `"warning"` or `"error"`.
const char* to_string(log_level l);

/// Renders an event as one log line: `level name key=value ...`.
std::string to_log_line(const event& e);

} // namespace bg_jobs
