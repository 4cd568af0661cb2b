#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>

#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/core/timestamp.hpp"

namespace bg_jobs {

/// What a parent task that did not succeed (it failed for good, was
/// cancelled or was deleted) does to a child that depends on it.
enum class parent_failure {
  /// The child is cancelled, and so is every task that depends on it the
  /// same way (the default).
  cancel,
  /// The child runs as if the parent had succeeded.
  ignore,
  /// The child stays blocked, shown as held (the workflow is stuck), until
  /// the parent is retried and succeeds or the child is cancelled.
  hold,
};

/// `"cancel"`, `"ignore"` or `"hold"`.
const char* to_string(parent_failure p);

/// The policy named `text`, if any.
std::optional<parent_failure> parse_parent_failure(std::string_view text);

/// A task's dependency on another task of its workflow.
struct task_dependency {
  std::string parent;
  parent_failure on_failure = parent_failure::cancel;
};

/// One task of a workflow: an ordinary job that starts once every parent
/// has finished.
struct task_spec {
  std::string name;
  job_request request{""};
  std::vector<task_dependency> after;
};

/// The most tasks one workflow (or one `add_tasks`) may insert.
constexpr size_t max_workflow_tasks = 100000;

/// A set of named tasks with dependencies between them: a directed acyclic
/// graph (a task may have several parents). Inserted in one transaction by
/// `db_adapter::enqueue_workflow`; a task becomes available when all its
/// parents have finished, decided in the transaction that finishes the
/// last of them.
class workflow {
public:
  explicit workflow(std::string name = "workflow") : name_(std::move(name)) {}

  /// Adds `task`, running `request` once every task in `after` succeeded;
  /// a parent that does not succeed does to it what `on_failure` says.
  workflow& add(std::string task, job_request request,
                std::vector<std::string> after = {},
                parent_failure on_failure = parent_failure::cancel);

  /// The same, for a braced list of parents (`{"a", "b"}`).
  workflow& add(std::string task, job_request request,
                std::initializer_list<std::string> after,
                parent_failure on_failure = parent_failure::cancel) {
    return add(std::move(task), std::move(request),
               std::vector<std::string>(after), on_failure);
  }

  /// Adds `task` with a policy per dependency.
  workflow& add(std::string task, job_request request,
                std::vector<task_dependency> after);

  /// A job enqueued exactly once, by the transaction that finishes the
  /// last task, if every task succeeded (a batch's "success").
  workflow& on_success(job_request r) {
    callbacks_[0] = std::move(r);
    return *this;
  }

  /// A job enqueued exactly once, by the transaction that finishes the
  /// last task, however they ended ("finish").
  workflow& on_finish(job_request r) {
    callbacks_[1] = std::move(r);
    return *this;
  }

  /// A job enqueued exactly once, by the transaction in which the first
  /// task fails for good ("failure"; a cancelled task is not a failure).
  workflow& on_failure(job_request r) {
    callbacks_[2] = std::move(r);
    return *this;
  }

  /// Keeps the workflow open: more tasks can be added
  /// (`db_adapter::add_tasks`) and it does not finish, nor call back, until
  /// it is closed (`db_adapter::close_workflow`). A batch that grows.
  workflow& keep_open(bool open = true) {
    open_ = open;
    return *this;
  }

  const std::string& name() const { return name_; }
  const std::vector<task_spec>& tasks() const { return tasks_; }

  /// The callbacks by role: 0 success, 1 finish, 2 failure.
  const std::optional<job_request>& callback(size_t role) const {
    return callbacks_[role];
  }
  bool open() const { return open_; }

private:
  std::string name_;
  std::vector<task_spec> tasks_;
  std::optional<job_request> callbacks_[3];
  bool open_ = false;
};

/// The names a workflow's callbacks have among its tasks (task names cannot
/// start with `@`): `@on_success`, `@on_finish`, `@on_failure`.
const char* callback_task_name(size_t role);

/// The problem with `w` as a new workflow, or none: its name and every
/// task name valid (`name_problem`) and not starting with `@`, task names
/// unique, no callback unique, at least one (none, for an open workflow) and
/// at most `max_workflow_tasks` tasks, every parent a task of `w` (or,
/// with `existing`, one of those names), no task its own parent, no cycle,
/// no unique request. A cycle is named by the tasks on it.
caf::error check_workflow(const workflow& w,
                          const std::vector<std::string>& existing = {});

/// The indices of `w`'s tasks with every parent before its children (the
/// order given where it allows). `w` must pass `check_workflow`.
std::vector<size_t> workflow_order(const workflow& w);

/// Where a workflow is in its life.
enum class workflow_state {
  /// Some task has not finished.
  running,
  /// Every task succeeded.
  succeeded,
  /// Every task finished, and at least one failed or was cancelled.
  failed,
  /// Cancelled as a whole (`db_adapter::cancel_workflow`), and every task
  /// has finished.
  cancelled,
};

const char* to_string(workflow_state s);
std::optional<workflow_state> parse_workflow_state(std::string_view text);

/// Where a task is in its life.
enum class task_state {
  /// Waiting for a parent.
  blocked,
  /// A parent did not succeed and its dependency holds this task: it stays
  /// until the parent is retried or this task is cancelled.
  held,
  /// In `jobs`: waiting to run, or running.
  ready,
  succeeded,
  failed,
  cancelled,
};

const char* to_string(task_state s);
std::optional<task_state> parse_task_state(std::string_view text);

/// One task as stored.
struct task_info {
  std::string name;
  int64_t job_id = 0;
  /// Its job's name.
  std::string job_name;
  task_state state = task_state::blocked;
  std::vector<task_dependency> after;
  std::optional<timestamp> finished_at;
  /// Its output, null when none.
  nlohmann::json output;
};

/// A workflow as stored, with its tasks.
struct workflow_info {
  int64_t id = 0;
  std::string name;
  workflow_state state = workflow_state::running;
  int64_t total = 0;
  int64_t succeeded = 0;
  int64_t failed = 0;
  int64_t cancelled = 0;
  /// Tasks held by a parent that did not succeed.
  int64_t held = 0;
  /// More tasks can be added until it is closed.
  bool open = false;
  timestamp created_at;
  std::optional<timestamp> finished_at;
  /// By name (empty in a listing).
  std::vector<task_info> tasks;

  /// Running with a held task: it cannot finish without an operator.
  bool stuck() const { return state == workflow_state::running && held > 0; }
};

/// What `db_adapter::enqueue_workflow` stored.
struct workflow_ids {
  int64_t workflow_id = 0;
  /// The job id of each task, by task name.
  std::map<std::string, int64_t> tasks;
};

/// What `db_adapter::watch_workflows` found.
struct workflow_watch {
  /// Workflows whose finish no call took before, oldest first (without
  /// their tasks).
  std::vector<workflow_info> finished;
  /// Running workflows with a held task now, by id (without their tasks).
  std::vector<workflow_info> stuck;
};

/// Which workflows `db_adapter::list_workflows` returns, newest first.
struct workflow_query {
  /// Only workflows in this state; none: any.
  std::optional<workflow_state> state;
  /// Only those with an id below this; 0: from the newest.
  int64_t before_id = 0;
  /// 1 to 1000.
  int limit = 50;
};

} // namespace bg_jobs
