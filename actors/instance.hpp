#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/job.hpp"
#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/core/typed_job.hpp"
#include "bg_jobs/scheduling/schedule_definition.hpp"

namespace bg_jobs {

namespace detail {
class actor_directory;
struct direct_enqueue;
} // namespace detail

class http_server;

/// A running bg_jobs actor tree. Actors talk to `actor()` with messages
/// (see `messages.hpp`); the member functions are blocking conveniences for
/// code outside actors, built on the same messages (`enqueue` and
/// `enqueue_many` do the same work on the caller's thread instead). Shut it
/// down (or let it go out of scope) before its `caf::actor_system`.
class instance {
  friend class builder;
  instance(caf::actor_system& sys, caf::actor root,
           std::shared_ptr<detail::actor_directory> dir,
           std::string node_name = {}, std::string node_instance = {},
           caf::actor remote_gate = {}, uint16_t remote_port = 0,
           bool unpublish = false, std::shared_ptr<http_server> http = {},
           std::shared_ptr<detail::direct_enqueue> direct = {},
           trace_source traces = {});

public:
  instance(instance&&) noexcept;
  instance& operator=(instance&&) noexcept;
  ~instance();

  /// The bg_jobs actor: send it `(enqueue_atom, job_request)`. Should it
  /// ever restart, this returns the new one (as does
  /// `sys.registry().get<caf::actor>(system_registry_key)`).
  caf::actor actor() const;

  /// The bg_jobs actor through its typed interface (`bg_jobs_actor`): a
  /// message it does not take fails to compile.
  bg_jobs_actor typed() const;

  /// The port the bg_jobs actor is published on (`builder::with_remote`);
  /// 0 when it is not.
  uint16_t remote_port() const { return remote_port_; }

  /// The port of the HTTP server (`builder::with_http`); 0 when none.
  uint16_t http_port() const;

  /// The node name this process holds (see `builder::with_node_name`).
  const std::string& node_name() const { return node_; }

  /// The supervisor at the root of the tree.
  const caf::actor& supervisor() const { return root_; }

  /// Stores one job and wakes the queue that runs it: the work of the
  /// enqueue message, done on the caller's thread with a connection of the
  /// instance's own (one caller at a time), so it costs no message round
  /// trip; `timeout` bounds only the message path of a stopped instance.
  caf::expected<job>
  enqueue(const job_request& request,
          std::chrono::milliseconds timeout = std::chrono::seconds{10});

  /// Stores the typed job `args` (`request_of(args)`: the job name of its
  /// type, its JSON as the payload), as `enqueue` does.
  template <job_args Args>
  caf::expected<job>
  enqueue(const Args& args,
          std::chrono::milliseconds timeout = std::chrono::seconds{10}) {
    return enqueue(request_of(args), timeout);
  }

  /// Stores many jobs in one transaction; returns their ids.
  caf::expected<std::vector<int64_t>>
  enqueue_many(const std::vector<job_request>& requests,
               std::chrono::milliseconds timeout = std::chrono::seconds{60});

  // -- job control (each also a message: see `messages.hpp`) ---------------

  /// Cancels a job: a waiting one at once; a running one's handler sees
  /// `job_context::cancelled()` and the job is recorded as cancelled when
  /// it returns, never retried. A finished job is `invalid_state`, an
  /// unknown id `job_not_found`.
  caf::expected<job_record> cancel(int64_t job_id, std::string reason = {});

  /// Runs a failed or cancelled job again now, attempts from zero, its
  /// errors kept; a waiting, running or succeeded job is `invalid_state`.
  caf::expected<job_record> retry(int64_t job_id);

  /// Retries every failed job named `job_name`; returns how many.
  caf::expected<int64_t> retry_failed(const std::string& job_name);

  /// Deletes a waiting job or a history row; a running job is
  /// `invalid_state`.
  caf::expected<void> delete_job(int64_t job_id);

  /// Pauses a queue on every node (stored; survives restarts): it reserves
  /// nothing and lets its running jobs finish. An unknown queue is
  /// `unknown_queue`.
  caf::expected<void> pause_queue(const std::string& queue);
  caf::expected<void> resume_queue(const std::string& queue);

  /// Sets a queue's concurrency on this node (1 to 1000) at run time.
  caf::expected<void> scale_queue(const std::string& queue,
                                  int max_concurrent_jobs);

  /// Sets one concurrency limit of a limited queue for every node (a
  /// `max_running` of 0 removes it): each node honours it at its next
  /// claim. The queue must have been started with limits
  /// (`queue_spec::with_key_limit`); bad limits are `invalid_argument`.
  caf::expected<void> set_limit(const std::string& queue,
                                const concurrency_limit& limit);

  /// Lets the jobs of `key` in the sequenced queue `queue` go past its
  /// failed ones, which stay failed; returns how many failed jobs held it.
  caf::expected<int64_t> unblock_key(const std::string& queue,
                                     const std::string& key);

  /// Changes the rate limit `limit.name` for every node (each honours it
  /// at its next claim). The limit must have been declared by a queue
  /// (`queue_spec::with_rate_limit`); an unknown name or bad numbers are
  /// `invalid_argument`.
  caf::expected<void> set_rate_limit(const rate_limit& limit);

  /// Takes `cost` starts from `key`'s bucket of the rate limit `name` if it
  /// has them now, for work done outside jobs that must count against the
  /// limit (a call made from a request handler); else takes nothing and
  /// says how long to wait. Exact across nodes, by the store's clock.
  caf::expected<rate_decision> consume_rate(const std::string& name,
                                            const std::string& key,
                                            int64_t cost = 1);

  /// The rate limit `name` and its keys that are not full or are blocked
  /// (at most `max_keys`); `invalid_argument` for an unknown name.
  caf::expected<rate_limit_state> rate_state(const std::string& name,
                                             int max_keys = 20);

  /// Pauses a scheduled job on every node: an occurrence that falls in the
  /// pause is skipped, not piled up.
  caf::expected<void> pause_schedule(const std::string& job_name);
  caf::expected<void> resume_schedule(const std::string& job_name);

  /// Adds the schedule `d`, or changes the one of its name, for every node
  /// (each node that runs `d.job` schedules it; every occurrence is
  /// enqueued once). Returns whether it was added. A name declared in a
  /// node's code is `invalid_state`; a bad definition is
  /// `invalid_argument` or `invalid_schedule`, and nothing is written.
  caf::expected<bool> put_schedule(const schedule_definition& d);

  /// Removes a schedule added at run time: its waiting occurrence is
  /// cancelled (a running one finishes). A declared one is `invalid_state`
  /// (it stops once no node declares it); an unknown one
  /// `invalid_argument`.
  caf::expected<void> remove_schedule(const std::string& name);

  /// Enqueues a run of the schedule `name` now: it replaces the occurrence
  /// that waits, and the schedule's next time follows this run. While a
  /// run is in progress it is `invalid_state`, unless the schedule's
  /// overlap policy is `allow`. It runs even while the schedule is paused.
  caf::expected<job> trigger_schedule(const std::string& name);

  /// Every stored schedule (declared in code or added at run time) with
  /// its pause and latest occurrence.
  caf::expected<std::vector<schedule_info>> schedules();

  /// Every stored pause.
  caf::expected<std::vector<pause_record>> pauses();

  /// One job, wherever it is kept.
  caf::expected<job_record> get_job(int64_t job_id);

  /// Stores a workflow (`db_adapter::enqueue_workflow`): its tasks' job
  /// names must be ones this node accepts; keys are derived and values
  /// sealed as for `enqueue`.
  caf::expected<workflow_ids>
  enqueue_workflow(const workflow& w,
                   std::chrono::milliseconds timeout = std::chrono::seconds{30});

  /// Adds tasks to the running workflow `id` (`db_adapter::add_tasks`):
  /// what a handler calls to fan out from the task it runs.
  caf::expected<workflow_ids> add_tasks(int64_t id, const workflow& more);

  /// Adds tasks to the workflow of the task `running` (the job a handler
  /// runs): they may depend on it by its task name. `invalid_argument`
  /// when the job is not a workflow's task.
  caf::expected<workflow_ids> add_tasks(const job& running,
                                        const workflow& more);

  /// Closes the open workflow `id` (`db_adapter::close_workflow`).
  caf::expected<workflow_info> close_workflow(int64_t id);

  /// The workflow `id` with its tasks.
  caf::expected<workflow_info> get_workflow(int64_t id);

  /// Workflows, newest first, without their tasks.
  caf::expected<std::vector<workflow_info>>
  list_workflows(const workflow_query& query = {});

  /// Cancels what has not finished of workflow `id`; its running tasks are
  /// asked to stop and end cancelled.
  caf::expected<workflow_info> cancel_workflow(int64_t id,
                                               std::string reason = {});

  /// Runs the failed, cancelled and held tasks of workflow `id` again,
  /// not what succeeded.
  caf::expected<workflow_info> retry_workflow(int64_t id);

  /// One page of jobs in one state (by name, or by `queue` of this node).
  caf::expected<job_page> list_jobs(const job_query& query);

  /// Counts per queue of this node (with each queue's lag) and per name.
  caf::expected<stats_report> stats();

  /// Finds a queue (by queue name), a scheduled job (by job name), an
  /// executor (`<queue>/executor/<n>`) or a queue's store worker
  /// (`<queue>/store`); an invalid handle if unknown.
  caf::actor lookup(const std::string& name);

  /// Every registered name.
  std::vector<std::string> registered_names();

  /// Returns once every event emitted so far has reached the listeners.
  void flush_events();

  /// Stops reserving, lets running jobs finish within the grace period,
  /// releases what remains, and waits until every actor has exited.
  caf::expected<void>
  shutdown(std::chrono::milliseconds timeout = std::chrono::seconds{60});

  /// Blocks until the tree exits by itself (e.g. the supervisor gave up) or
  /// `timeout` passes; returns the exit reason, or `errc::timeout`.
  caf::error await_exit(std::chrono::milliseconds timeout);

private:
  caf::actor_system* sys_;
  caf::actor root_;
  std::shared_ptr<detail::actor_directory> dir_;
  std::string node_;
  std::string node_instance_;
  caf::actor remote_gate_;
  uint16_t remote_port_ = 0;
  bool unpublish_ = false;
  std::shared_ptr<http_server> http_;
  std::shared_ptr<detail::direct_enqueue> direct_;
  trace_source traces_;

  /// What the trace source gives now (none when it gives an empty one),
  /// or its failure as `invalid_argument`.
  caf::expected<std::optional<trace_context>> trace_now() const;
};

/// Finds a bg_jobs actor by name through `sys.registry()`; an invalid
/// handle when there is no bg_jobs in `sys` or no actor of that name.
caf::actor lookup(caf::actor_system& sys, const std::string& name);

} // namespace bg_jobs
