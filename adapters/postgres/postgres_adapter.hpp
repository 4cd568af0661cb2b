#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/clock.hpp"

namespace pqxx {
class transaction_base;
} // namespace pqxx

namespace bg_jobs {

/// How to reach a PostgreSQL store.
struct postgres_options {
  /// A libpq connection string: `host=... port=... dbname=... user=...` or
  /// `postgresql://user@host:port/db`. A connect timeout of 10 s is added
  /// unless the string sets one.
  std::string url;
  /// The source of "now" for a test that pins it. With the system clock
  /// (the default) the adapter uses the server's clock instead, so that
  /// nodes whose clocks disagree still agree on leases and due times.
  std::shared_ptr<bg_jobs::clock> clock = clock::system();
  /// How the connections show in `pg_stat_activity`.
  std::string application_name = "bg_jobs";
  /// The schema that holds bg_jobs' tables (created by `migrate_up`), so
  /// that they stay apart from the application's, or two applications
  /// share one database without seeing each other's jobs; their
  /// notifications use the channel `bg_jobs.<schema>`. Empty (the
  /// default): the connection's `search_path`. `[a-z_][a-z0-9_]*`, at most
  /// 50 bytes.
  std::string schema{};
  /// Whether a job that succeeds is kept in `jobs_succeeded` (until the
  /// retention prunes it). False: it is deleted with its output and
  /// progress in the statement that records its success, and no history
  /// row is written, except for a workflow's or batch's task (its workflow
  /// reads the row). `get` then finds no such job, a unique key that
  /// counts succeeded jobs no longer sees it, and `stats` counts none; the
  /// succeeded event and metrics are as before. It applies to the
  /// successes this connection records (`complete_in` always keeps one).
  bool succeeded_history = true;
};

/// The PostgreSQL adapter on libpqxx 6: one connection; claims in one
/// statement with `FOR UPDATE SKIP LOCKED`; every enqueue notifies the
/// channel `bg_jobs` with the job name (delivered on commit); hot
/// statements are prepared once per connection.
class postgres_adapter : public db_adapter {
public:
  /// Connects; fails with `invalid_argument` for a malformed connection
  /// string, `database_unavailable` for a server that is down or refuses
  /// the credentials, `schema_too_new` for a schema from a newer bg_jobs.
  static caf::expected<std::unique_ptr<postgres_adapter>>
  open(postgres_options options);

  /// Returns a factory that opens a new connection with `options` per call.
  static adapter_factory factory(postgres_options options);

  /// Enqueues inside the application's own transaction: the job exists if
  /// and only if `tx` commits, and queues are notified on that commit.
  static caf::expected<job> enqueue_in(pqxx::transaction_base& tx,
                                       const job_request& request,
                                       const std::string& schema = {});

  /// Records the success of `j`, the job a handler runs, inside the
  /// application's own transaction `tx`, beside the handler's writes: they
  /// commit together or not at all. The handler then commits and returns
  /// `outcome::committed()`. Only while `j` is still reserved as it was
  /// claimed (not rescued, released or asked to cancel); otherwise
  /// `reservation_lost`, and `tx` is aborted on the server, so that its
  /// writes can never commit. `schema` must be the store's.
  static caf::expected<void> complete_in(pqxx::transaction_base& tx,
                                         const job& j,
                                         const std::string& schema = {});

  ~postgres_adapter() override;

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
  caf::expected<std::vector<job>>
  release_unheld(const std::string& reserved_by,
                 const std::vector<int64_t>& held) override;
  /// Also measures the offset of the server's clock again.
  caf::expected<void> heartbeat(const std::string& node) override;
  caf::expected<bool> hold_lease(const std::string& name,
                                 const std::string& holder,
                                 std::chrono::milliseconds ttl) override;
  caf::expected<void> record_actions(const std::vector<event>& events) override;
  caf::expected<std::vector<recorded_action>> take_actions(int limit) override;
  caf::expected<void> release_lease(const std::string& name,
                                    const std::string& holder) override;
  std::shared_ptr<bg_jobs::clock> store_clock() const override;
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
  caf::expected<vacuum_report> vacuum_jobs(int64_t min_dead_rows) override;
  caf::expected<std::vector<bool>>
  complete_jobs(const std::vector<completion>& completions) override;
  caf::expected<complete_reserve_result>
  complete_and_reserve(const std::vector<completion>& completions,
                       const reserve_params& params) override;
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
  caf::expected<std::vector<std::pair<int64_t, std::string>>>
  cancels_asked(const std::string& reserved_by,
                const std::vector<int64_t>& ids) override;
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
  /// The plans of the four claim statements (alone and with completions,
  /// each from the start of the index and from a floor), as this
  /// connection would run them now: `generic`, the plan made once for any
  /// parameters, else the one made for these.
  caf::expected<std::vector<std::string>>
  explain_claims(const reserve_params& params, bool generic);
  /// The plans of the claim of a limited queue, without a rate limit and
  /// with the rate limit `rate_limit`, as this connection would run them
  /// now (their generic plans, under the claim's settings).
  caf::expected<std::vector<std::string>>
  explain_limited_claims(const reserve_params& params,
                         const std::string& rate_limit);

  caf::expected<std::vector<std::string>>
  await_wakeups(std::chrono::milliseconds timeout,
                int interrupt_fd = -1) override;

  /// The server process id of this connection.
  int backend_pid() const;

private:
  /// complete_and_reserve of successes by one owner in a limited queue.
  caf::expected<complete_reserve_result>
  complete_and_reserve_limited(const std::vector<completion>& completions,
                               const reserve_params& params);
  /// The plan of the prepared statement `name` run with `args` (SQL
  /// literals), as `tx` would run it now.
  std::string explain_statement(pqxx::transaction_base& tx, const char* name,
                                const std::string& args);
  struct impl;

  explicit postgres_adapter(std::unique_ptr<impl> p);

  /// `open`, reading the server's clock through `shared_time` (a
  /// `server_clock` shared by one factory's connections; null: its own).
  static caf::expected<std::unique_ptr<postgres_adapter>>
  open_with(postgres_options options, std::shared_ptr<void> shared_time);

  std::unique_ptr<impl> impl_;
};

} // namespace bg_jobs
