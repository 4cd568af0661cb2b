#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/clock.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace bg_jobs {

/// How to open a SQLite store.
struct sqlite_options {
  /// The database file; created if missing. `:memory:` is not supported
  /// since every actor opens its own connection.
  std::string path;
  /// Prepended to every table and index name (`app_` → `app_jobs`, ...),
  /// so that bg_jobs shares a database with tables of the same names, or
  /// two applications share one file without seeing each other's jobs.
  /// Empty (the default) or `[a-z_][a-z0-9_]*`, at most 30 bytes.
  std::string table_prefix{};
  /// How long a statement waits for another connection's lock.
  std::chrono::milliseconds busy_timeout{5000};
  /// `FULL` (default) makes every commit durable across power loss;
  /// `NORMAL` is durable across process crashes only, and faster.
  bool synchronous_full = true;
  /// Whether a job that succeeds is kept in `jobs_succeeded` (until the
  /// retention prunes it). False: it is deleted with its output and
  /// progress in the transaction that records its success, and no history
  /// row is written, except for a workflow's or batch's task (its workflow
  /// reads the row). `get` then finds no such job, a unique key that
  /// counts succeeded jobs no longer sees it, and `stats` counts none; the
  /// succeeded event and metrics are as before. It applies to the
  /// successes this connection records (`complete_in` always keeps one).
  bool succeeded_history = true;
  /// The source of "now"; the system clock unless a test pins it.
  std::shared_ptr<bg_jobs::clock> clock = clock::system();
};

/// The SQLite adapter: one connection in WAL mode with a busy timeout;
/// claims under `BEGIN IMMEDIATE` with `UPDATE ... RETURNING`; statements
/// are prepared once per connection.
class sqlite_adapter : public db_adapter {
public:
  /// Opens (and creates) the database; fails with `database_unavailable`,
  /// `not_a_database`, `database_locked` or `schema_too_new`.
  static caf::expected<std::unique_ptr<sqlite_adapter>>
  open(sqlite_options options);

  /// Returns a factory that opens a new connection with `options` per call.
  static adapter_factory factory(sqlite_options options);

  /// Enqueues inside the application's own transaction on its own
  /// connection `db` to the same file: the job exists if and only if that
  /// transaction commits, and other processes' queues are woken by the
  /// commit (the WAL watch). `db` must be inside a transaction (`BEGIN`);
  /// unique requests are refused here (enqueue them through a queue's own
  /// connection).
  /// `table_prefix` must be the store's (`sqlite_options::table_prefix`).
  static caf::expected<job> enqueue_in(sqlite3* db, const job_request& request,
                                       const std::string& table_prefix = {});

  /// Records the success of `j`, the job a handler runs, inside the
  /// application's own transaction on its own connection `db` to the same
  /// file, beside the handler's writes: they commit together or not at
  /// all. The handler then returns `outcome::committed()`. Only while `j`
  /// is still reserved as it was claimed (not rescued, released or asked
  /// to cancel); otherwise `reservation_lost`, and the transaction is
  /// rolled back here, the handler's writes with it (a later COMMIT fails).
  /// `db` must be inside a write transaction (`BEGIN IMMEDIATE`);
  /// `table_prefix` must be the store's.
  static caf::expected<void> complete_in(sqlite3* db, const job& j,
                                         const std::string& table_prefix = {});

  ~sqlite_adapter() override;

  sqlite_adapter(const sqlite_adapter&) = delete;
  sqlite_adapter& operator=(const sqlite_adapter&) = delete;

  capabilities caps() const override;

  caf::expected<void> migrate_up() override;
  caf::expected<void> migrate_down() override;
  caf::expected<int> schema_version() override;

  caf::expected<job> enqueue_job(const job_request& request) override;
  caf::expected<std::vector<int64_t>>
  enqueue_jobs(const std::vector<job_request>& requests) override;
  caf::expected<std::vector<job>>
  reserve_jobs(const reserve_params& params) override;
  caf::expected<void>
  set_limits(const std::string& queue,
             const std::vector<concurrency_limit>& limits) override;
  caf::expected<void> set_limit(const std::string& queue,
                                const concurrency_limit& limit) override;
  caf::expected<std::vector<concurrency_limit>>
  stored_limits(const std::string& queue) override;
  caf::expected<std::vector<key_usage>>
  keys_in_use(const std::string& queue,
              const std::vector<std::string>& job_names,
              int max_keys) override;
  caf::expected<std::vector<blocked_key>>
  blocked_keys(const std::string& queue,
               const std::vector<std::string>& job_names) override;
  caf::expected<int64_t> unblock_key(const std::vector<std::string>& job_names,
                                     const std::string& key) override;
  caf::expected<void> set_rate_limit(const rate_limit& limit) override;
  caf::expected<std::optional<bg_jobs::rate_limit_state>>
  rate_state(const std::string& name, int max_keys) override;
  caf::expected<rate_decision> consume_rate(const std::string& name,
                                            const std::string& key,
                                            int64_t cost) override;
  caf::expected<void> block_rate_key(const std::string& name,
                                     const std::string& key,
                                     int64_t ms) override;
  caf::expected<std::optional<int64_t>>
  rate_wait(const reserve_params& params) override;
  caf::expected<std::optional<int64_t>>
  next_due(const reserve_params& params, timestamp after) override;
  caf::expected<std::vector<job>> discard_expired(int limit) override;
  caf::expected<std::vector<job>>
  release_jobs_reserved_by(const std::string& reserved_by) override;
  caf::expected<std::vector<job>>
  release_jobs_of_node(const std::string& node) override;
  caf::expected<void> heartbeat(const std::string& node) override;
  caf::expected<bool> hold_lease(const std::string& name,
                                 const std::string& holder,
                                 std::chrono::milliseconds ttl) override;
  caf::expected<void> record_actions(const std::vector<event>& events) override;
  caf::expected<std::vector<recorded_action>> take_actions(int limit) override;
  caf::expected<void> release_lease(const std::string& name,
                                    const std::string& holder) override;
  caf::expected<std::optional<node_holder>>
  claim_node(const node_identity& me, std::chrono::milliseconds lease,
             const std::function<bool(const node_holder&)>& alive) override;
  caf::expected<void> release_node(const std::string& node,
                                   const std::string& instance) override;
  caf::expected<void>
  announce_queues(const std::string& node,
                  const std::vector<queue_announcement>& queues) override;
  using db_adapter::known_queues;
  caf::expected<std::vector<known_queue>>
  known_queues(std::chrono::milliseconds silent_after) override;
  caf::expected<std::vector<job>>
  rescue_jobs(std::chrono::milliseconds lease) override;
  caf::expected<int64_t> prune_jobs(const prune_params& params) override;
  caf::expected<std::vector<bool>>
  complete_jobs(const std::vector<completion>& completions) override;
  caf::expected<std::optional<job>>
  enqueue_scheduled(const scheduled_params& params) override;
  caf::expected<std::optional<scheduled_run>>
  last_scheduled_run(const std::string& name) override;
  caf::expected<bool>
  mark_scheduled_run(const std::string& name, timestamp scheduled_at,
                     int catch_up_left,
                     std::optional<timestamp> skip_until) override;
  caf::expected<bool> put_schedule(const stored_schedule& s) override;
  caf::expected<std::vector<stored_schedule>> list_schedules() override;
  caf::expected<schedule_removal>
  remove_schedule(const std::string& name,
                  std::optional<timestamp> unseen_since) override;
  caf::expected<complete_reserve_result>
  complete_and_reserve(const std::vector<completion>& completions,
                       const reserve_params& params) override;
  caf::expected<std::vector<job>>
  release_unheld(const std::string& reserved_by,
                 const std::vector<int64_t>& held) override;
  caf::expected<void> delete_job(int64_t job_id) override;
  caf::expected<job_record> cancel_job(int64_t job_id,
                                       const std::string& reason) override;
  caf::expected<job_record> retry_job(int64_t job_id) override;
  caf::expected<int64_t> retry_failed(const std::string& name) override;
  caf::expected<void> pause(pause_kind kind, const std::string& name) override;
  caf::expected<void> resume(pause_kind kind, const std::string& name) override;
  caf::expected<std::vector<pause_record>> pauses() override;

  caf::expected<std::vector<job>>
  get_running_jobs_of_owner(const std::string& reserved_by) override;
  caf::expected<job_stats> stats() override;
  caf::expected<std::vector<name_stats>> stats_by_name() override;
  caf::expected<job_page> list_jobs(const job_query& query) override;
  caf::expected<std::vector<finished_bucket>>
  finished_per_bucket(timestamp since,
                      std::chrono::milliseconds bucket) override;
  caf::expected<job_record> get_job(int64_t job_id) override;
  caf::expected<workflow_ids> enqueue_workflow(const workflow& w) override;
  caf::expected<workflow_ids> add_tasks(int64_t id,
                                        const workflow& more) override;
  caf::expected<workflow_info> close_workflow(int64_t id) override;
  caf::expected<std::optional<int64_t>> workflow_of(int64_t job_id) override;
  caf::expected<workflow_info> get_workflow(int64_t id) override;
  caf::expected<std::vector<workflow_info>>
  list_workflows(const workflow_query& query) override;
  caf::expected<workflow_info>
  cancel_workflow(int64_t id, const std::string& reason) override;
  caf::expected<workflow_info> retry_workflow(int64_t id) override;
  caf::expected<std::map<std::string, nlohmann::json>>
  parent_outputs(int64_t job_id) override;
  caf::expected<workflow_watch> watch_workflows(int limit) override;
  caf::expected<bool> record_progress(int64_t job_id,
                                      const std::string& reserved_by,
                                      int attempt, double fraction,
                                      const std::string& text) override;
  /// The store's plan for the claim statement of `reserve_jobs(params)`, as
  /// text (it names the index it uses).
  caf::expected<std::string> explain_reserve(const reserve_params& params);

  /// Waits for writes to the database's WAL file (inotify on its
  /// directory), then reads which job names have new jobs since the last
  /// call: those of the jobs inserted past the greatest id it saw (ids only
  /// grow), and those `bg_jobs_wakes` names past the sequence number it saw
  /// (triggers write there when jobs become claimable without a new id: a
  /// retry; `*` for a resumed pause or an unblocked key). Returns those
  /// names (`{"*"}`: every one may have work), and nothing for writes that
  /// made nothing claimable (claims, completions, heartbeats), so that
  /// those wake no queue. A commit is visible a moment after its write to
  /// the WAL file (after its fsync, with `synchronous_full`), and no
  /// further event says when: after every write the names are read again
  /// 1, 5, 21 and 85 ms later.
  caf::expected<std::vector<std::string>>
  await_wakeups(std::chrono::milliseconds timeout,
                int interrupt_fd = -1) override;

private:
  class statement;
  class transaction;

  explicit sqlite_adapter(sqlite_options options);

  /// Runs `body` (returning a `caf::expected`) in one write transaction:
  /// committed when it returns a value, rolled back otherwise.
  template <class F> auto in_transaction(F&& body) -> decltype(body());

  /// Returns the cached statement for `sql`, prepared on first use.
  caf::expected<sqlite3_stmt*> prepare(const char* sql);

  /// Inserts `j` (name, times) with its serialized payload, inside the
  /// caller's transaction; returns the new id.
  caf::expected<int64_t> insert_job(const job& j, const std::string& payload);

  /// Inserts `j` for the unique `request` unless an equal job counts, in
  /// the caller's transaction; returns the stored job, or the one that
  /// counts with `conflict` set.
  caf::expected<job> insert_unique(job j, const std::string& payload,
                                   const job_request& request, timestamp now);

  /// The bodies of complete_jobs and reserve_jobs, inside a transaction.
  caf::expected<std::vector<bool>>
  complete_in_tx(const std::vector<completion>& completions);
  caf::expected<std::vector<job>> reserve_in_tx(const reserve_params& params);
  /// The successes among `completions`, a statement or two for all those
  /// of one owner: moved to `jobs_succeeded` at `now` (with history, those
  /// without an output), or deleted (without history; their ids added to
  /// `dropped`). Sets `moved[i]` for each that applied. Inside
  /// complete_in_tx.
  caf::expected<void> move_succeeded(const std::vector<completion>& completions,
                                     int64_t now, std::vector<bool>& moved,
                                     nlohmann::json& dropped);
  /// The claim of a limited queue, inside reserve_in_tx (`names` the job
  /// names as a JSON array).
  caf::expected<std::vector<job>>
  reserve_limited(const reserve_params& params, const std::string& names);
  /// Records the rate key and cost and the expiry (from `now`) of job `id`
  /// as `r` asks (nothing when it asks for none), in the caller's
  /// transaction.
  caf::expected<void> note_extras(int64_t id, const job_request& r,
                                  timestamp now);
  /// Takes the costs of the jobs just reserved from their keys' buckets of
  /// the rate limit `name`, in the claim's transaction.
  caf::expected<void> charge_rates(const std::string& name,
                                   const std::vector<job>& reserved);
  /// Blocks the rate key of the job a rate-limited snooze `c` ends.
  caf::expected<void> block_job_rate(const completion& c);

  /// Inserts the tasks (and callbacks) of `w` into workflow `workflow_id`
  /// inside the caller's transaction; `existing` maps the names of tasks
  /// already there to their job ids.
  caf::expected<workflow_ids>
  insert_tasks(int64_t workflow_id, const workflow& w,
               const std::map<std::string, int64_t>& existing, timestamp now);

  /// Moves the tasks a parent that did not succeed doomed (its `cancel`
  /// policy) from `bg_jobs_blocked` to `jobs_failed` as cancelled at
  /// `now_ms` (with `why` as the reason, or one that says so), and so on
  /// down the workflow, in the caller's transaction.
  caf::expected<void> settle_tasks(int64_t now_ms, const std::string& why = {});

  /// Announces a change of the stored schedules to every node's listener,
  /// inside the caller's transaction.
  caf::expected<void> wake_schedulers();

  /// Runs a cached statement without results; returns the rows changed.
  caf::expected<int> execute(const char* sql,
                             const std::function<void(statement&)>& bind,
                             const char* what);

  /// Runs `copy`; when it changed rows, `remove` too (a move between
  /// tables in the caller's transaction). Returns the rows copied.
  caf::expected<int>
  move_rows(const char* copy, const char* remove,
            const std::function<void(statement&)>& bind_copy,
            const std::function<void(statement&)>& bind_remove,
            const char* what);

  /// After a state change in `tx`: the job's record and the commit, or
  /// `job_not_found`, or `invalid_state` with `refusal` when nothing
  /// changed.
  caf::expected<job_record> changed_record(transaction& tx, int64_t job_id,
                                           bool changed, const char* refusal);

  /// The record of a job wherever it is, or none.
  caf::expected<std::optional<job_record>> record_of(int64_t job_id);

  /// Runs SQL without results (pragmas, DDL, transaction control).
  caf::expected<void> exec(const char* sql);

  /// Runs every statement of `script` with ?1 bound to `p1` and ?2 to `p2`.
  caf::expected<void> exec_with(const char* script, int64_t p1, int64_t p2);

  /// Turns the connection's last error into an `errc` error.
  caf::error failure(int rc, const char* what) const;

  /// Runs a statement that returns job rows, in a write transaction when
  /// `write` is set.
  caf::expected<std::vector<job>>
  query_jobs(const char* sql, const std::function<void(statement&)>& bind,
             bool write);

  sqlite_options options_;
  sqlite3* db_ = nullptr;
  std::unordered_map<const char*, sqlite3_stmt*> statements_;
  /// `sql` as this store names its tables.
  std::string sql(const char* text) const {
    return prefixed_sql(text, options_.table_prefix);
  }
  int inotify_fd_ = -1;
  /// The greatest job id and `bg_jobs_wakes` sequence number seen; none
  /// before the first `await_wakeups`.
  std::optional<std::pair<int64_t, int64_t>> woken_since_;
  /// When to read the names again after a write, and the step after that.
  std::optional<std::chrono::steady_clock::time_point> recheck_at_;
  std::chrono::milliseconds recheck_step_{1};
  /// Names with new jobs since `woken_since_` (which it advances).
  caf::expected<std::vector<std::string>> woken_names();
};

} // namespace bg_jobs
