#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "bg_jobs/core/clock.hpp"
#include "bg_jobs/core/completion.hpp"
#include "bg_jobs/core/event.hpp"
#include "bg_jobs/core/job.hpp"
#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/core/limits.hpp"
#include "bg_jobs/core/timestamp.hpp"
#include "bg_jobs/core/workflow.hpp"

namespace bg_jobs {

/// What an adapter's store can do beyond the common contract.
struct capabilities {
  /// Other processes can be woken by a notification from the store.
  bool supports_listen_notify = false;
};

/// Arguments of `db_adapter::reserve_jobs`.
struct reserve_params {
  /// Only jobs with one of these names are reserved.
  std::vector<std::string> job_names;
  /// The most jobs to reserve; must be positive.
  int limit = 1;
  /// The owner recorded on each reserved job.
  std::string reserved_by;
  /// The queue reserving; while it is paused (`pause`), nothing is
  /// reserved. Empty: no pause applies.
  std::string queue{};
  /// The queue has concurrency limits (`set_limits`): a job is reserved
  /// only while each of its keys, and the queue's total, has room, counted
  /// over every node's reservations of the queue's job names.
  bool limited = false;
  /// The queue's rate limit (with `limited`): a job is reserved only while
  /// its rate key's bucket holds its cost, and the cost is taken by the
  /// claim. Empty: none.
  std::string rate_limit{};
};

/// The problem with `limits` as the limits of `queue` (`set_limits`), or
/// none.
caf::error check_limits(const std::string& queue,
                        const std::vector<concurrency_limit>& limits);

/// The problem with `limit` as a change of one limit of `queue`
/// (`set_limit`; a `max_running` of 0 removes it), or none.
caf::error check_limit_change(const std::string& queue,
                              const concurrency_limit& limit);

/// How many ready jobs the claim of a limited queue looks at to take up to
/// `limit` of them.
int limited_scan(int limit);

/// What `db_adapter::complete_and_reserve` did.
struct complete_reserve_result {
  /// Per completion, whether it applied (false: the reservation was no
  /// longer the caller's).
  std::vector<bool> applied;
  /// The jobs reserved after the completions were persisted.
  std::vector<job> reserved;
  /// Set when the completions were persisted but the reserve then failed;
  /// `reserved` is empty. A lost connection here leaves the reserve's fate
  /// unknown: the caller reconciles before it reserves again.
  caf::error reserve_error;
};

/// Arguments of `db_adapter::enqueue_scheduled`.
struct scheduled_params {
  /// The job to enqueue; its availability is replaced by `occurrence`.
  job_request request{""};
  /// The time this occurrence is due.
  timestamp occurrence;
  /// The latest occurrence the caller saw for this schedule (none: it saw
  /// none). The job is enqueued only if that is still the latest, so that
  /// nodes racing to schedule the same job enqueue it once.
  std::optional<timestamp> previous;
  /// The schedule's name, under which its occurrences are recorded and
  /// paused; empty: the job's name (a schedule declared in code).
  std::string schedule{};
  /// Recorded with the occurrence: how many missed runs of a catch-up
  /// still follow it, and the last missed time the catch-up passes over.
  int catch_up_left = 0;
  std::optional<timestamp> skip_until{};
  /// A run asked for now by an operator: `previous` and a pause are not
  /// checked; a waiting occurrence is replaced by this one; a running one
  /// makes it `invalid_state` unless `allow_running`.
  bool trigger = false;
  bool allow_running = false;
  /// Enqueue only while the store keeps a schedule of this name (one
  /// added at run time may have been removed by another node).
  bool require_stored = false;

  const std::string& schedule_name() const {
    return schedule.empty() ? request.name() : schedule;
  }
};

/// The latest occurrence of a scheduled job.
struct scheduled_run {
  timestamp scheduled_at;
  int64_t job_id = 0;
  /// The job is still in `jobs` (waiting or running).
  bool pending = false;
  /// The job is running (reserved).
  bool running = false;
  /// When the pending job was enqueued.
  std::optional<timestamp> enqueued_at;
  /// When the job succeeded or failed for good, if it did and is still kept.
  std::optional<timestamp> finished_at;
  /// As recorded by `scheduled_params`.
  int catch_up_left = 0;
  std::optional<timestamp> skip_until;
};

/// The wake-up name a change of the stored schedules is announced under
/// (to other processes' listeners, as job names are): no job name holds a
/// control character, so none is mistaken for it.
constexpr const char* schedules_changed = "\x01schedules";

/// The wake-up name under which the store announces a workflow that
/// finished or a task that became held (by triggers, schema 21), for the
/// node that holds the upkeep to report them (`workflow_watch_service`).
constexpr const char* workflows_changed = "\x01workflows";

/// A schedule kept in the store: one declared in a node's code (kept while
/// some node declares it) or one added at run time.
struct stored_schedule {
  std::string name;
  /// Its definition as JSON text (`schedule_definition::to_json`).
  std::string definition;
  bool declared = false;
  /// When a node last declared it, or when it was added or changed.
  timestamp seen_at;
  timestamp updated_at;
};

/// What `db_adapter::remove_schedule` did.
struct schedule_removal {
  bool removed = false;
  /// The occurrence that was waiting, now cancelled.
  std::optional<int64_t> cancelled_job;
};

/// How much history `db_adapter::prune_jobs` keeps.
struct prune_params {
  std::chrono::milliseconds succeeded_max_age{std::chrono::hours{24}};
  std::chrono::milliseconds failed_max_age{std::chrono::hours{24 * 7}};
  int64_t max_succeeded = 100000;
  int64_t max_failed = 100000;
  /// Rows deleted per table and call, so that pruning never holds the
  /// store for long.
  int batch = 1000;
  /// Count what one call would delete, and delete nothing.
  bool dry_run = false;
};

/// What `db_adapter::vacuum_jobs` found and did.
struct vacuum_report {
  /// Dead row versions in `jobs` before, as the store's statistics count
  /// them.
  int64_t dead_rows = 0;
  /// Whether it vacuumed (another vacuum of the table may be running: then
  /// it does not wait for it).
  bool vacuumed = false;
  /// Dead row versions left after it (those a snapshot still open may see).
  int64_t dead_rows_after = 0;
};

/// Row counts of the three tables, read in one consistent snapshot. The
/// counts of `jobs` (available, scheduled, reserved) are exact. So are the
/// history counts (succeeded, failed, cancelled) of a history table up to
/// `exact_history_rows` rows; on PostgreSQL a larger one is counted from
/// the planner's statistics instead of by a scan, and `history_estimated`
/// says so (a job name too rare to be among the statistics' most common
/// values then shows no history).
struct job_stats {
  int64_t available = 0;
  int64_t scheduled = 0;
  int64_t reserved = 0;
  int64_t succeeded = 0;
  int64_t failed = 0;
  int64_t cancelled = 0;
  bool history_estimated = false;

  static constexpr int64_t exact_history_rows = 100000;

  int64_t pending() const { return available + scheduled; }
  int64_t total() const {
    return available + scheduled + reserved + succeeded + failed + cancelled;
  }
};

/// The counts of one job name, and how late its oldest waiting job is.
struct name_stats {
  std::string name;
  /// Counts by state, as `job_stats` has them.
  job_stats counts;
  /// The `available_at` of the oldest job waiting now, if one is.
  std::optional<timestamp> oldest_waiting;
};

/// The counts of the job names `names` (a queue's) summed from `by_name`,
/// with the oldest waiting job among them; `name` stays empty.
name_stats sum_of(const std::vector<name_stats>& by_name,
                  const std::vector<std::string>& names);

/// Which jobs `db_adapter::list_jobs` returns, one page at a time.
struct job_query {
  job_state state = job_state::waiting;
  /// Only jobs with one of these names; empty: every name.
  std::vector<std::string> names;
  /// Only jobs of this queue, as the node's configuration maps job names
  /// to queues: the runtime (`instance::list_jobs`) turns it into `names`;
  /// adapters refuse it set.
  std::string queue{};
  /// Only jobs carrying this tag (`job_request::with_tags`); empty: any.
  std::string tag{};
  /// Newest first (by default), else oldest first. Waiting and scheduled
  /// jobs are ordered as claims take them (priority, availability, id)
  /// with "oldest" the next to run; running jobs by reservation time;
  /// finished ones by the time they finished.
  bool newest_first = true;
  /// The `next` of the previous page; empty for the first page.
  std::string after;
  /// Jobs per page, 1 to 1000.
  int limit = 50;
};

/// One page of `list_jobs`.
struct job_page {
  std::vector<job_record> jobs;
  /// Pass as `job_query::after` for the next page; empty on the last one.
  std::string next;
};

/// One process's claim on a node name (`db_adapter::claim_node`).
struct node_identity {
  std::string node;
  /// Unique per start of a process (random).
  std::string instance;
  std::string host;
  int64_t pid = 0;
  timestamp started_at;
};

/// Jobs finished in one time bucket (`db_adapter::finished_per_bucket`).
struct finished_bucket {
  timestamp start;
  int64_t succeeded = 0;
  /// Failed or cancelled.
  int64_t failed = 0;
};

/// What a node runs of one queue, as it announces it in the store.
struct queue_announcement {
  std::string queue;
  std::vector<std::string> job_names;
  int concurrency = 0;
};

/// A queue as the store knows it from every node's announcement. A queue
/// stays known once announced: after the last node that ran it shut down,
/// it has no node.
struct known_queue {
  std::string queue;
  std::vector<std::string> job_names;
  /// The nodes that run it (that announced it and have not shut down).
  std::vector<std::string> nodes;
  /// Its concurrency summed over those nodes.
  int concurrency = 0;
};

/// Who holds a node name, as stored.
struct node_holder {
  node_identity who;
  timestamp heartbeat_at;
};

/// What can be paused: a queue (its jobs are not reserved) or a scheduled
/// job (its occurrences are not enqueued).
enum class pause_kind { queue, schedule };

/// `"queue"` or `"schedule"`.
const char* to_string(pause_kind k);

/// An operator action recorded by a process without a node, as stored.
struct recorded_action {
  int64_t id = 0;
  timestamp at;
  /// The telemetry name of its event.
  std::string kind;
  std::string queue;
  /// 0: not about one job.
  int64_t job_id = 0;
  std::string job_name;
  std::string message;
};

/// A pause as stored.
struct pause_record {
  pause_kind kind = pause_kind::queue;
  std::string name;
  timestamp paused_at;
};

/// For adapters: ` ORDER BY` of the columns `key` (`"a, b, c"`), each
/// descending when `desc`.
std::string sql_order_by(const std::string& key, bool desc);

/// Whether `pauses` holds a pause of the queue `queue`.
bool queue_paused(const std::vector<pause_record>& pauses,
                  const std::string& queue);

/// The one seam between the engine and SQL. Each implementation owns its
/// statements and migrations; one instance is one connection and is used by
/// one thread at a time. Errors are `errc` values with a message.
class db_adapter {
public:
  virtual ~db_adapter() = default;

  /// The schema version this code writes and understands.
  static constexpr int schema_version_current = 23;

  virtual capabilities caps() const = 0;

  // -- schema --------------------------------------------------------------

  /// Creates or upgrades the schema; running it again is harmless.
  virtual caf::expected<void> migrate_up() = 0;

  /// Removes every table, index and the version record.
  virtual caf::expected<void> migrate_down() = 0;

  /// Returns the applied schema version, 0 when there is none.
  virtual caf::expected<int> schema_version() = 0;

  /// Succeeds when the schema is exactly the version this code knows.
  caf::expected<void> check_schema();

  // -- writes --------------------------------------------------------------

  /// Validates and stores one job; returns it as stored. For a unique
  /// request whose key an equal job holds, stores nothing and returns that
  /// job with `conflict` set (concurrent enqueues store one).
  virtual caf::expected<job> enqueue_job(const job_request& request) = 0;

  /// Validates all requests, then stores them in one transaction (all or
  /// none); returns the new ids in request order.
  virtual caf::expected<std::vector<int64_t>>
  enqueue_jobs(const std::vector<job_request>& requests) = 0;

  /// Reserves up to `limit` available jobs with one of the names, oldest
  /// `available_at` first, then lowest id; counts the attempt. With
  /// `limited`, the queue's concurrency limits bound it, exactly: claims of
  /// one queue are serialized, and each counts the reservations of every
  /// node; a saturated key is skipped (its jobs never block others'), and
  /// among the jobs it looks at the first job of every key comes before
  /// anyone's second.
  virtual caf::expected<std::vector<job>>
  reserve_jobs(const reserve_params& params) = 0;

  /// Replaces the concurrency limits of `queue` by `limits` (none: the
  /// queue is no longer limited), in one transaction; every node's next
  /// claim of the queue honours them. Refused (`invalid_argument`, nothing
  /// written) as `check_limits` says.
  virtual caf::expected<void>
  set_limits(const std::string& queue,
             const std::vector<concurrency_limit>& limits) = 0;

  /// Sets one limit of `queue` (adds it or changes its number), or with
  /// `max_running` 0 removes it; the others stay.
  virtual caf::expected<void> set_limit(const std::string& queue,
                                        const concurrency_limit& limit) = 0;

  /// The stored limits of `queue`, key limits by key after the others.
  virtual caf::expected<std::vector<concurrency_limit>>
  stored_limits(const std::string& queue) = 0;

  /// The concurrency keys of the jobs named `job_names` that have jobs
  /// reserved or ready now, with their limits in `queue`, the most waiting
  /// first, at most `max_keys` of them.
  virtual caf::expected<std::vector<key_usage>>
  keys_in_use(const std::string& queue,
              const std::vector<std::string>& job_names, int max_keys) = 0;

  /// The keys of a sequenced queue (`limit_kind::sequence`) held by a job
  /// of `job_names` that failed for good, by key; none for another queue.
  virtual caf::expected<std::vector<blocked_key>>
  blocked_keys(const std::string& queue,
               const std::vector<std::string>& job_names) = 0;

  /// Lets the jobs of `key` behind its failed ones go: those failed jobs
  /// (of `job_names`) stay failed but no longer hold it. Returns how many.
  virtual caf::expected<int64_t>
  unblock_key(const std::vector<std::string>& job_names,
              const std::string& key) = 0;

  /// Writes the rate limit `limit` (adds it, or changes its numbers: every
  /// node's next claim honours them; the keys' state stays). Refused
  /// (`invalid_argument`, nothing written) as `check_rate_limit` says.
  virtual caf::expected<void> set_rate_limit(const rate_limit& limit) = 0;

  /// The rate limit `name` with the state of its keys by the store's clock
  /// (those that drew from it and have not refilled, or are blocked; at
  /// most `max_keys`, the least available first), or none when no such
  /// limit is stored.
  virtual caf::expected<std::optional<bg_jobs::rate_limit_state>>
  rate_state(const std::string& name, int max_keys) = 0;

  /// Takes `cost` starts from the bucket of `key` of the rate limit `name`
  /// if it has them now (by the store's clock), for work done outside jobs
  /// that must count against the limit; else takes nothing and says how
  /// long to wait. `invalid_argument` for an unknown limit, a bad key or a
  /// cost outside 1 to the limit's burst. Exact across nodes: it takes the
  /// same turn as claims.
  virtual caf::expected<rate_decision>
  consume_rate(const std::string& name, const std::string& key,
               int64_t cost) = 0;

  /// Blocks `key` of the rate limit `name` for `ms` from the store's now
  /// (never shortening a block in force), as a handler's back-pressure
  /// does. `invalid_argument` for an unknown limit or a bad key.
  virtual caf::expected<void> block_rate_key(const std::string& name,
                                             const std::string& key,
                                             int64_t ms) = 0;

  /// With `params.rate_limit` set: how long (ms, by the store's clock)
  /// until the earliest ready job of the queue that its rate limit holds
  /// back could start; none when no ready job is held back by it.
  virtual caf::expected<std::optional<int64_t>>
  rate_wait(const reserve_params& params) = 0;

  /// How long (ms, by this adapter's clock, at least 1) until the earliest
  /// unreserved job named in `params.job_names` that becomes available
  /// later than `after` (a delayed job, a retry, a snooze) is available;
  /// none when there is no such job. A queue whose claim at `after` found
  /// no more ready jobs looks again then, so that a delayed job enqueued by
  /// another process starts on time without a fast poll; one that came due
  /// since `after` is due at once.
  virtual caf::expected<std::optional<int64_t>>
  next_due(const reserve_params& params, timestamp after) = 0;

  /// Moves up to `limit` jobs whose expiry passed before any attempt of
  /// them started (`job_request::expires_at`; unreserved) to `jobs_failed`
  /// as cancelled with the reason "expired"; returns them. No claim takes an
  /// expired job meanwhile.
  virtual caf::expected<std::vector<job>> discard_expired(int limit) = 0;

  /// Clears every reservation held by `reserved_by`; returns those jobs.
  virtual caf::expected<std::vector<job>>
  release_jobs_reserved_by(const std::string& reserved_by) = 0;

  /// Clears every reservation whose owner belongs to `node` (owners are
  /// `<node>/...`); used when a node restarts. Returns those jobs.
  virtual caf::expected<std::vector<job>>
  release_jobs_of_node(const std::string& node) = 0;

  /// Records that `node` is alive now.
  virtual caf::expected<void> heartbeat(const std::string& node) = 0;

  /// Takes or renews the lease `name` for `holder` until `ttl` from now, by
  /// the store's clock, if it is free, expired or already `holder`'s: true
  /// when `holder` holds it after the call. One statement: two callers
  /// never both hold a lease.
  virtual caf::expected<bool> hold_lease(const std::string& name,
                                         const std::string& holder,
                                         std::chrono::milliseconds ttl) = 0;

  /// Gives the lease `name` up if `holder` holds it.
  virtual caf::expected<void> release_lease(const std::string& name,
                                            const std::string& holder) = 0;

  /// Records the events of operator actions taken outside any node (the
  /// command line), in one transaction, for the node that holds the
  /// upkeep's lease to report.
  virtual caf::expected<void>
  record_actions(const std::vector<event>& events) = 0;

  /// Removes and returns up to `limit` of the oldest recorded actions,
  /// oldest first; two callers never take the same one.
  virtual caf::expected<std::vector<recorded_action>>
  take_actions(int limit) = 0;

  /// The clock this store dates rows and compares times with, as this
  /// process reads it; null when that is the system clock (SQLite: every
  /// node shares the host). A node built without a clock of its own uses
  /// it, so that its retries and schedules agree with the store.
  virtual std::shared_ptr<bg_jobs::clock> store_clock() const {
    return nullptr;
  }

  /// Claims the node name `me.node` for `me`, unless another instance
  /// holds it with a heartbeat within `lease` and `alive` says that holder
  /// still runs: then nothing is written and the holder comes back.
  /// Concurrent claims of one name are serialized.
  virtual caf::expected<std::optional<node_holder>>
  claim_node(const node_identity& me, std::chrono::milliseconds lease,
             const std::function<bool(const node_holder&)>& alive) = 0;

  /// Records which queues (and job names) `node` runs, replacing what it
  /// announced before; tools that have no configuration read it.
  virtual caf::expected<void>
  announce_queues(const std::string& node,
                  const std::vector<queue_announcement>& queues) = 0;

  /// How long a node may go without a heartbeat and still count as running
  /// the queues it announced: the default lease, after which its jobs are
  /// rescued too.
  static constexpr std::chrono::milliseconds node_silence_limit{30000};

  /// Every announced queue, by name, with the nodes that run it: those that
  /// announced it and whose heartbeat is younger than `silent_after`. A
  /// node killed without a clean shutdown leaves its announcement behind;
  /// once silent that long it no longer counts, and a queue none of whose
  /// nodes counts stays known with none.
  virtual caf::expected<std::vector<known_queue>>
  known_queues(std::chrono::milliseconds silent_after) = 0;

  /// `known_queues(node_silence_limit)`.
  caf::expected<std::vector<known_queue>> known_queues() {
    return known_queues(node_silence_limit);
  }

  /// Gives the name up at a clean shutdown, if `instance` still holds it,
  /// with what the node announced.
  virtual caf::expected<void> release_node(const std::string& node,
                                           const std::string& instance) = 0;

  /// Releases the jobs held by nodes without a heartbeat within `lease`
  /// (and reserved longer ago than that); returns them. A late completion
  /// by the presumed-dead node no longer applies.
  virtual caf::expected<std::vector<job>>
  rescue_jobs(std::chrono::milliseconds lease) = 0;

  /// Deletes up to one batch per table of succeeded and failed jobs older
  /// than their maximum age or beyond their maximum count; returns how many.
  virtual caf::expected<int64_t> prune_jobs(const prune_params& params) = 0;

  /// Vacuums the `jobs` table when it holds at least `min_dead_rows` dead
  /// row versions (PostgreSQL: every run leaves two, and autovacuum visits
  /// a database at most once per `autovacuum_naptime`, a minute by
  /// default). Stores that reuse the space of deleted rows by themselves
  /// (SQLite) do nothing.
  virtual caf::expected<vacuum_report> vacuum_jobs(int64_t min_dead_rows);

  /// Persists outcomes in one transaction. Returns, per completion, whether
  /// it applied (false: the reservation was no longer the caller's).
  virtual caf::expected<std::vector<bool>>
  complete_jobs(const std::vector<completion>& completions) = 0;

  /// Persists `completions`, then reserves as `reserve_jobs` does. A store
  /// where one transaction is cheaper than two (SQLite: one commit, one
  /// fsync) does both in one. An error means no completion was persisted
  /// (or, for a lost connection, that their fate is unknown); a reserve that
  /// fails after the completions were persisted is reported in
  /// `reserve_error`, never dropped.
  virtual caf::expected<complete_reserve_result>
  complete_and_reserve(const std::vector<completion>& completions,
                       const reserve_params& params);

  /// Releases every job reserved by `reserved_by` whose id is not in
  /// `held`, giving back the attempt its reservation counted (it never
  /// started); returns those jobs. A caller that lost the reply of a
  /// reserve reconciles the store with what it really holds this way.
  virtual caf::expected<std::vector<job>>
  release_unheld(const std::string& reserved_by,
                 const std::vector<int64_t>& held) = 0;

  /// Moves `j` to `jobs_succeeded` if it is still reserved as `j` says.
  caf::expected<void> move_job_to_succeeded(const job& j);

  /// Moves `j` to `jobs_failed` if it is still reserved as `j` says.
  caf::expected<void> move_job_to_failed(const job& j,
                                         const std::string& exception);

  /// Enqueues one occurrence of a scheduled job unless another caller
  /// already scheduled past `previous`; returns the job, or none when it
  /// lost that race. The pair (job name, occurrence) is unique.
  virtual caf::expected<std::optional<job>>
  enqueue_scheduled(const scheduled_params& params) = 0;

  /// The latest occurrence of the scheduled job `name`, if any.
  virtual caf::expected<std::optional<scheduled_run>>
  last_scheduled_run(const std::string& name) = 0;

  /// Records on the occurrence `(name, scheduled_at)`, while its job still
  /// waits, that a catch-up of `catch_up_left` more missed runs follows it,
  /// passing over the times up to `skip_until`; returns whether it did.
  virtual caf::expected<bool>
  mark_scheduled_run(const std::string& name, timestamp scheduled_at,
                     int catch_up_left,
                     std::optional<timestamp> skip_until) = 0;

  /// Adds or replaces the stored schedule `s.name`; returns whether it was
  /// added. One added at run time (`declared` false) is refused
  /// (`invalid_state`) when a node declares a schedule of that name; a
  /// declared one replaces any, marked seen now. Changing a schedule keeps
  /// its occurrences.
  virtual caf::expected<bool> put_schedule(const stored_schedule& s) = 0;

  /// Every stored schedule, by name.
  virtual caf::expected<std::vector<stored_schedule>> list_schedules() = 0;

  /// Removes the schedule `name`: its row, its waiting occurrence
  /// (cancelled: "the schedule was removed"; a running one finishes), the
  /// record of its occurrences (so that one added again later starts
  /// afresh) and its pause. With `unseen_since`, only a declared schedule
  /// no node has declared since then; without, only one added at run time
  /// (a declared one is `invalid_state`). An unknown name removes nothing.
  virtual caf::expected<schedule_removal>
  remove_schedule(const std::string& name,
                  std::optional<timestamp> unseen_since = std::nullopt) = 0;

  /// Deletes a waiting job, or a job kept in history (succeeded or failed).
  /// A reserved (running) job is an `invalid_argument` error and stays; an
  /// unknown id is `job_not_found`.
  virtual caf::expected<void> delete_job(int64_t job_id) = 0;

  /// Cancels a job. A waiting job moves to history as cancelled with
  /// `reason` at once (state `cancelled`); a running job is marked (state
  /// `running`, `cancel_reason` set) and is recorded as cancelled when its
  /// attempt ends, whatever the outcome. A finished job is
  /// `invalid_state`; an unknown id `job_not_found`. Returns the record.
  virtual caf::expected<job_record> cancel_job(int64_t job_id,
                                               const std::string& reason) = 0;

  /// Runs a failed or cancelled job again now: back to `jobs` with the same
  /// id, attempts from zero, its errors kept. A waiting, running or
  /// succeeded job is `invalid_state`; an unknown id `job_not_found`.
  virtual caf::expected<job_record> retry_job(int64_t job_id) = 0;

  /// Retries every failed (not cancelled) job named `name`; returns how
  /// many.
  virtual caf::expected<int64_t> retry_failed(const std::string& name) = 0;

  /// Stores a pause; pausing twice is harmless. The name must be a valid
  /// name (`name_problem`).
  virtual caf::expected<void> pause(pause_kind kind,
                                    const std::string& name) = 0;

  /// Removes a pause; resuming what is not paused is harmless.
  virtual caf::expected<void> resume(pause_kind kind,
                                     const std::string& name) = 0;

  /// Every stored pause, by kind and name.
  virtual caf::expected<std::vector<pause_record>> pauses() = 0;

  // -- workflows -------------------------------------------------------------

  /// Validates `w` (`check_workflow`, and each task's request as
  /// `enqueue_job` does), then stores it in one transaction: every task a
  /// job, those without parents available as their requests say, the
  /// others blocked until their parents finish. A task becomes available
  /// in the transaction that finishes its last unfinished parent, whichever
  /// statement finishes it (guarded as completions are by the parent's
  /// reservation), so two parents finishing at once on two nodes release it
  /// once, and a late result of a rescued parent changes nothing.
  virtual caf::expected<workflow_ids> enqueue_workflow(const workflow& w) = 0;

  /// Adds the tasks of `more` (its name and callbacks are ignored) to the
  /// running workflow `id`, in one transaction: a new task may depend on
  /// tasks already there (by name) that have not failed or been cancelled,
  /// and on other new ones; it waits for those that have not succeeded.
  /// The workflow's total grows. A finished workflow is `invalid_state`;
  /// a bad definition (`check_workflow` against the names there) is
  /// `invalid_argument`, and nothing is written. Returns the new tasks' ids.
  virtual caf::expected<workflow_ids> add_tasks(int64_t id,
                                                const workflow& more) = 0;

  /// The workflow whose task is job `job_id`, if it is one.
  virtual caf::expected<std::optional<int64_t>> workflow_of(int64_t job_id) = 0;

  /// Closes the open workflow `id` (`workflow::keep_open`): it finishes,
  /// and calls back, once every task has finished (at once if they have).
  /// Closing a closed workflow is harmless; an unknown one is
  /// `job_not_found`.
  virtual caf::expected<workflow_info> close_workflow(int64_t id) = 0;

  /// The workflow `id` with its tasks; `job_not_found` if none.
  virtual caf::expected<workflow_info> get_workflow(int64_t id) = 0;

  /// Workflows, newest first, without their tasks. A limit outside 1..1000
  /// is `invalid_argument`.
  virtual caf::expected<std::vector<workflow_info>>
  list_workflows(const workflow_query& query) = 0;

  /// Cancels every unfinished task of workflow `id` (a running one as
  /// `cancel_job` does: recorded as cancelled when its attempt ends); the
  /// workflow ends `cancelled` once all have finished. A finished workflow
  /// is `invalid_state`. Returns it after the change.
  virtual caf::expected<workflow_info>
  cancel_workflow(int64_t id, const std::string& reason) = 0;

  /// Runs the failed and cancelled tasks of workflow `id` again, and
  /// releases the held ones, without running again what succeeded: each
  /// goes back to `jobs` (attempts from zero, errors kept) if all its
  /// parents succeeded, else waits for them again. `invalid_state` when
  /// none failed, was cancelled or is held. Returns it after the change.
  virtual caf::expected<workflow_info> retry_workflow(int64_t id) = 0;

  /// The outputs (`outcome::success(output)`) of the parents of the task
  /// whose job is `job_id`, by task name: those that succeeded with one.
  /// Empty for a job that is not a task.
  virtual caf::expected<std::map<std::string, nlohmann::json>>
  parent_outputs(int64_t job_id) = 0;

  /// For the events of the upkeep: takes the finishes of workflows that no
  /// call took before (oldest first, at most `limit`; each finish is taken
  /// once, a workflow retried and finished again once more), and reads the
  /// running workflows with a held task (at most `limit`).
  virtual caf::expected<workflow_watch> watch_workflows(int limit) = 0;

  /// Stores the progress a running attempt reports (replacing the last
  /// one), with the store's clock, if the job is still reserved by
  /// `reserved_by` for its `attempt`-th attempt; false, storing nothing,
  /// when it is not (a rescued attempt's late report). The report is kept
  /// while the job is (it goes with its history row).
  virtual caf::expected<bool>
  record_progress(int64_t job_id, const std::string& reserved_by, int attempt,
                  double fraction, const std::string& text) = 0;

  // -- reads ---------------------------------------------------------------

  /// Jobs reserved by `reserved_by`.
  virtual caf::expected<std::vector<job>>
  get_running_jobs_of_owner(const std::string& reserved_by) = 0;

  /// Of the jobs `ids`, those still reserved by `reserved_by` that were
  /// asked to cancel, with the reasons, in id order. A queue's look for
  /// cancels asked on other nodes: it reads the jobs it holds by id, so
  /// that it costs what they are, not what the table holds. (The default
  /// filters `get_running_jobs_of_owner`; on PostgreSQL, whose index of
  /// reservations keeps an entry for every row version a claim made until
  /// a vacuum, that read walked every one of them: 250-560 ms a look in a
  /// drain of a million jobs.)
  virtual caf::expected<std::vector<std::pair<int64_t, std::string>>>
  cancels_asked(const std::string& reserved_by,
                const std::vector<int64_t>& ids);

  /// Counts of every state in one snapshot.
  virtual caf::expected<job_stats> stats() = 0;

  /// Counts per job name (names with no job are left out), by name.
  virtual caf::expected<std::vector<name_stats>> stats_by_name() = 0;

  /// Jobs that finished since `since`, counted per `bucket` (history rows
  /// only: what pruning removed is not counted), oldest bucket first;
  /// buckets without a job are left out.
  virtual caf::expected<std::vector<finished_bucket>>
  finished_per_bucket(timestamp since, std::chrono::milliseconds bucket) = 0;

  /// One page of jobs in one state (keyset paging: a page costs the same
  /// however deep it is). A malformed `after` or a limit outside 1..1000 is
  /// `invalid_argument`.
  virtual caf::expected<job_page> list_jobs(const job_query& query) = 0;

  /// The job with that id, wherever it is kept; `job_not_found` if none.
  virtual caf::expected<job_record> get_job(int64_t job_id) = 0;

  // -- wake-ups across processes ---------------------------------------------

  /// Waits up to `timeout` for other connections to enqueue; returns the job
  /// names they enqueued (empty on timeout). Returns early, with no names,
  /// once `interrupt_fd` (if not -1) is readable. Only for stores that
  /// declare `supports_listen_notify`; the first call starts listening.
  virtual caf::expected<std::vector<std::string>>
  await_wakeups(std::chrono::milliseconds timeout, int interrupt_fd = -1);

protected:
  /// An `invalid_argument` error unless `reason` (of a cancel) is valid
  /// UTF-8 without control characters, at most 1000 bytes.
  static caf::error check_reason(const std::string& reason);


  /// An `invalid_argument` error unless the limit is positive and the owner
  /// named.
  static caf::error check_reserve(const reserve_params& params);

  /// An `invalid_argument` error unless the limit is within 1..1000 and
  /// the names are valid.
  static caf::error check_query(const job_query& query);

  /// An `invalid_argument` error unless `name` can name a queue or job.
  static caf::error check_pause_name(pause_kind kind, const std::string& name);

  /// A keyset position: the sort key of the last row of a page.
  struct page_key {
    int priority = 0;
    int64_t at_ms = 0;
    int64_t id = 0;
  };

  /// Encodes `key` as `job_page::next`.
  static std::string encode_key(const page_key& key);

  /// Decodes `job_query::after`; `invalid_argument` when malformed.
  static caf::expected<page_key> decode_key(const std::string& text);

  /// Checks `query` (`check_query`) and decodes its position, if any.
  static caf::expected<std::optional<page_key>>
  start_of(const job_query& query);

  /// `sql` with every bg_jobs table and index name prefixed by `prefix`
  /// (whole identifiers only; also inside quotes, as in a catalog lookup).
  static std::string prefixed_sql(const char* sql, const std::string& prefix);

  /// An `invalid_argument` error unless `name` is empty or a plain SQL
  /// identifier: `[a-z_][a-z0-9_]*`, at most `max` bytes.
  static caf::error check_identifier(const char* what, const std::string& name,
                                     size_t max);

  /// Known queues from announcement rows (queue, job name, node,
  /// concurrency) sorted by queue.
  static std::vector<known_queue> merge_announcements(
      const std::vector<std::tuple<std::string, std::string, std::string, int>>&
          rows);

  /// Buckets from rows of (bucket start in ms, succeeded, failed), in any
  /// order and possibly repeated.
  static std::vector<finished_bucket>
  merge_buckets(const std::vector<std::tuple<int64_t, int64_t, int64_t>>& rows);

  /// Trims a page read with `limit + 1` rows to `limit` and sets `next`
  /// when the extra row shows there is more.
  static void finish_page(job_page& page, const job_query& query);
};

/// Opens a new connection each time it is called; the runtime gives every
/// actor that talks to the store its own connection. It may be called from
/// several threads at once: a starting node opens its queues' connections
/// side by side.
using adapter_factory =
    std::function<caf::expected<std::unique_ptr<db_adapter>>()>;

} // namespace bg_jobs
