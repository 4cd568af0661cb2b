// Workflows on SQLite: inserting one, reading, cancelling and retrying it.
// The steps between tasks are taken by the triggers of schema version 17
// (sqlite_schema.cpp), in the transaction that finishes a task.

#include "bg_jobs/adapters/sqlite/detail/sqlite_internal.hpp"
#include "bg_jobs/adapters/detail/workflow_errors.hpp"

#include <map>

namespace bg_jobs {

using namespace detail::sqlite;

namespace {

const char sql_workflow_insert[] =
    "INSERT INTO bg_jobs_workflows (name, state, total, created_at, open)"
    " VALUES (?1, 'running', ?2, ?3, ?4) RETURNING id";
const char sql_task_insert[] =
    "INSERT INTO bg_jobs_tasks (job_id, workflow_id, task, state, pending,"
    " role) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

// Closing: the workflow (?1) finishes at ?2 if every task has, and calls
// back (the triggers' steps, for a workflow rather than a task).
#define BG_JOBS_ANY_TASK_OF_WF                                                 \
  "(SELECT min(job_id) FROM bg_jobs_tasks WHERE workflow_id = ?1)"
const char sql_close_finish[] =
    BG_JOBS_SQLITE_FINISH(BG_JOBS_ANY_TASK_OF_WF, "?2");
const char sql_close_callbacks[] =
    BG_JOBS_SQLITE_CALLBACKS(BG_JOBS_ANY_TASK_OF_WF, "?2");
const char sql_dep_insert[] =
    "INSERT INTO bg_jobs_deps (parent_id, child_id, policy)"
    " VALUES (?1, ?2, ?3)";
const char sql_block[] =
    "INSERT INTO bg_jobs_blocked (" BG_JOBS_SQLITE_ROW_COLUMNS ")"
    " SELECT " BG_JOBS_SQLITE_ROW_COLUMNS " FROM jobs WHERE id = ?1";
const char sql_block_delete[] = "DELETE FROM jobs WHERE id = ?1";

// What `read_workflow` reads, from `bg_jobs_workflows w`.
#define BG_JOBS_SQLITE_WORKFLOW_SELECT                                         \
  "SELECT w.id, w.name, w.state, w.total, w.succeeded, w.failed,"             \
  " w.cancelled, (SELECT count(*) FROM bg_jobs_tasks t"                       \
  "   WHERE t.workflow_id = w.id AND t.state = 'held'),"                      \
  " w.created_at, w.finished_at, w.open FROM bg_jobs_workflows w"

const char sql_workflow_by_id[] = BG_JOBS_SQLITE_WORKFLOW_SELECT
    " WHERE w.id = ?1";
const char sql_workflow_list[] = BG_JOBS_SQLITE_WORKFLOW_SELECT
    " WHERE (?1 IS NULL OR w.state = ?1) AND (?2 = 0 OR w.id < ?2)"
    " ORDER BY w.id DESC LIMIT ?3";
// The finishes no call took yet (the predicate of
// bg_jobs_workflows_unreported_idx), and the workflows a held task stops.
const char sql_workflow_unreported[] = BG_JOBS_SQLITE_WORKFLOW_SELECT
    " WHERE w.finished_at IS NOT NULL AND (w.reported_at IS NULL"
    "  OR w.reported_at <> w.finished_at)"
    " ORDER BY w.finished_at, w.id LIMIT ?1";
const char sql_workflow_stuck[] = BG_JOBS_SQLITE_WORKFLOW_SELECT
    " WHERE w.id IN (SELECT workflow_id FROM bg_jobs_tasks"
    "  WHERE state = 'held') AND w.state = 'running'"
    " ORDER BY w.id LIMIT ?1";
const char sql_workflow_tasks[] =
    "SELECT t.task, t.job_id, t.state, t.finished_at,"
    " (SELECT output FROM bg_jobs_outputs o WHERE o.job_id = t.job_id),"
    " coalesce((SELECT name FROM jobs WHERE id = t.job_id),"
    "  (SELECT name FROM bg_jobs_blocked WHERE id = t.job_id),"
    "  (SELECT name FROM jobs_succeeded WHERE id = t.job_id),"
    "  (SELECT name FROM jobs_failed WHERE id = t.job_id), '')"
    " FROM bg_jobs_tasks t WHERE t.workflow_id = ?1 ORDER BY t.job_id";
const char sql_workflow_deps[] =
    "SELECT d.child_id, p.task, d.policy FROM bg_jobs_tasks p"
    " JOIN bg_jobs_deps d ON d.parent_id = p.job_id"
    " WHERE p.workflow_id = ?1 ORDER BY d.child_id, p.job_id";

// The doomed tasks, moved to `jobs_failed` as cancelled (the trigger takes
// each one's step and may doom its children).
const char sql_doomed[] =
    "SELECT job_id FROM bg_jobs_tasks WHERE state = 'doomed'";
const char sql_cancel_blocked[] =
    "INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
    " created_at, available_at, failed_at, priority, cancelled, errors,"
    " concurrency_key, second_concurrency_key, attrs)"
    " SELECT id, name, payload, attempts, ?2, created_at, available_at, ?3,"
    " priority, 1, errors, concurrency_key, second_concurrency_key, attrs"
    " FROM bg_jobs_blocked WHERE id = ?1";
const char sql_blocked_delete[] = "DELETE FROM bg_jobs_blocked WHERE id = ?1";

const char sql_workflow_state[] =
    "SELECT state FROM bg_jobs_workflows WHERE id = ?1";
const char sql_workflow_cancel_mark[] =
    "UPDATE bg_jobs_workflows SET cancel_requested = 1 WHERE id = ?1";
const char sql_workflow_doom[] =
    "UPDATE bg_jobs_tasks SET state = 'doomed' WHERE workflow_id = ?1"
    " AND state IN ('blocked', 'held') AND role = 'task'";
const char sql_workflow_ready[] =
    "SELECT job_id FROM bg_jobs_tasks WHERE workflow_id = ?1"
    " AND state = 'ready' AND role = 'task' ORDER BY job_id";
const char sql_cancel_waiting_task[] =
    "INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
    " created_at, available_at, failed_at, priority, cancelled, errors,"
    " concurrency_key, second_concurrency_key, attrs)"
    " SELECT id, name, payload, attempts, ?2, created_at, available_at, ?3,"
    " priority, 1, errors, concurrency_key, second_concurrency_key, attrs"
    " FROM jobs WHERE id = ?1 AND reserved_by IS NULL";
const char sql_cancel_running_task[] =
    "UPDATE jobs SET cancel_reason = coalesce(cancel_reason, ?2)"
    " WHERE id = ?1 AND reserved_by IS NOT NULL";
const char sql_job_delete[] = "DELETE FROM jobs WHERE id = ?1";

// Retrying: each failed, cancelled or held task, with the number of its
// parents that did not succeed.
const char sql_workflow_retryable[] =
    "SELECT t.job_id, t.state, t.role"
    " FROM bg_jobs_tasks t WHERE t.workflow_id = ?1"
    " AND t.state IN ('failed', 'cancelled', 'held') ORDER BY t.job_id";
const char sql_failed_to_blocked[] =
    "INSERT INTO bg_jobs_blocked (id, name, payload, attempts, created_at,"
    " available_at, priority, errors, last_error, concurrency_key,"
    " second_concurrency_key, attrs) SELECT id, name, payload, 0, created_at,"
    " ?2, priority, errors, exception, concurrency_key,"
    " second_concurrency_key, attrs FROM jobs_failed WHERE id = ?1";
const char sql_failed_delete[] = "DELETE FROM jobs_failed WHERE id = ?1";
// ?1 the workflow, ?2 now.
const char sql_retry_block[] =
    "UPDATE bg_jobs_tasks SET state = 'blocked', finished_at = NULL"
    " WHERE workflow_id = ?1 AND state IN ('failed', 'cancelled', 'held')"
    " AND ?2 = ?2";
const char sql_retry_pending[] =
    "UPDATE bg_jobs_tasks SET pending = (SELECT count(*) FROM bg_jobs_deps d"
    "   JOIN bg_jobs_tasks p ON p.job_id = d.parent_id"
    "   WHERE d.child_id = bg_jobs_tasks.job_id AND p.state <> 'succeeded')"
    " WHERE workflow_id = ?1 AND state = 'blocked' AND role = 'task'"
    " AND ?2 = ?2";
const char sql_retry_release[] =
    "INSERT INTO jobs (" BG_JOBS_SQLITE_ROW_COLUMNS ")"
    " SELECT id, name, payload, attempts, created_at,"
    " max(available_at, ?2), reserved_at, reserved_by, last_error, priority,"
    " cancel_reason, errors, concurrency_key, second_concurrency_key,"
    " expires_at, attrs FROM bg_jobs_blocked WHERE id IN (SELECT job_id"
    " FROM bg_jobs_tasks WHERE workflow_id = ?1 AND state = 'blocked'"
    " AND pending = 0 AND role = 'task')";
const char sql_retry_ready[] =
    "UPDATE bg_jobs_tasks SET state = 'ready' WHERE workflow_id = ?1"
    " AND state = 'blocked' AND pending = 0 AND role = 'task' AND ?2 = ?2";
const char sql_retry_released[] =
    "DELETE FROM bg_jobs_blocked WHERE id IN (SELECT job_id"
    " FROM bg_jobs_tasks WHERE workflow_id = ?1 AND state = 'ready')"
    " AND ?2 = ?2";
const char sql_task_reset[] =
    "UPDATE bg_jobs_tasks SET state = ?2, pending = ?3, finished_at = NULL"
    " WHERE job_id = ?1";
const char sql_workflow_recount[] =
    "UPDATE bg_jobs_workflows SET state = 'running', finished_at = NULL,"
    " cancel_requested = 0,"
    " succeeded = (SELECT count(*) FROM bg_jobs_tasks"
    "   WHERE workflow_id = ?1 AND state = 'succeeded' AND role = 'task'),"
    " failed = (SELECT count(*) FROM bg_jobs_tasks"
    "   WHERE workflow_id = ?1 AND state = 'failed' AND role = 'task'),"
    " cancelled = (SELECT count(*) FROM bg_jobs_tasks"
    "   WHERE workflow_id = ?1 AND state = 'cancelled' AND role = 'task')"
    " WHERE id = ?1 AND ?2 = ?2";

workflow_info read_workflow(sqlite3_stmt* s) {
  workflow_info w;
  w.id = sqlite3_column_int64(s, 0);
  w.name = column_text(s, 1);
  w.state = parse_workflow_state(column_text(s, 2))
                .value_or(workflow_state::running);
  w.total = sqlite3_column_int64(s, 3);
  w.succeeded = sqlite3_column_int64(s, 4);
  w.failed = sqlite3_column_int64(s, 5);
  w.cancelled = sqlite3_column_int64(s, 6);
  w.held = sqlite3_column_int64(s, 7);
  w.created_at = column_time(s, 8);
  w.finished_at = column_time_or_null(s, 9);
  w.open = sqlite3_column_int(s, 10) != 0;
  return w;
}

} // namespace

caf::expected<void> sqlite_adapter::exec_with(const char* script, int64_t p1,
                                              int64_t p2) {
  auto text = sql(script);
  const char* at = text.c_str();
  while (*at) {
    sqlite3_stmt* s = nullptr;
    const char* tail = nullptr;
    if (int rc = sqlite3_prepare_v2(db_, at, -1, &s, &tail); rc != SQLITE_OK)
      return failure(rc, "preparing a statement");
    at = tail;
    if (!s)
      continue; // white space or a comment
    sqlite3_bind_int64(s, 1, p1);
    if (sqlite3_bind_parameter_count(s) >= 2)
      sqlite3_bind_int64(s, 2, p2);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
      return failure(rc, "closing a workflow");
  }
  return caf::unit;
}

caf::expected<void> sqlite_adapter::settle_tasks(int64_t now_ms,
                                                 const std::string& why) {
  static const std::string doomed_reason =
      "cancelled: a task it depends on did not succeed";
  auto& reason = why.empty() ? doomed_reason : why;
  for (;;) {
    std::vector<int64_t> doomed;
    {
      auto s = prepare(sql_doomed);
      if (!s)
        return std::move(s.error());
      statement q{*s};
      int rc;
      while ((rc = q.step()) == SQLITE_ROW)
        doomed.push_back(sqlite3_column_int64(q.get(), 0));
      if (rc != SQLITE_DONE)
        return failure(rc, "reading doomed tasks");
    }
    if (doomed.empty())
      return caf::unit;
    for (auto id : doomed) {
      auto moved = move_rows(
          sql_cancel_blocked, sql_blocked_delete,
          [&](statement& q) { q.bind(1, id).bind(2, reason).bind(3, now_ms); },
          [&](statement& q) { q.bind(1, id); }, "cancelling a task");
      if (!moved)
        return std::move(moved.error());
      if (*moved == 0) {
        // Not kept aside (cannot happen through bg_jobs): no longer doomed.
        static const std::string cancelled = "cancelled";
        auto r = execute(
            sql_task_reset,
            [&](statement& q) {
              q.bind(1, id).bind(2, cancelled).bind(3, int64_t{0});
            },
            "cancelling a task");
        if (!r)
          return std::move(r.error());
      }
    }
  }
}

caf::expected<workflow_ids>
sqlite_adapter::insert_tasks(int64_t workflow_id, const workflow& w,
                             const std::map<std::string, int64_t>& existing,
                             timestamp now) {
  auto& tasks = w.tasks();
  std::vector<job_request> requests;
  requests.reserve(tasks.size() + 3);
  for (auto& t : tasks)
    requests.push_back(t.request);
  std::vector<size_t> roles;
  for (size_t role = 0; role < 3; ++role)
    if (auto& c = w.callback(role)) {
      requests.push_back(*c);
      roles.push_back(role);
    }
  auto prepared = detail::prepare_jobs(requests, now);
  if (!prepared)
    return std::move(prepared.error());
  workflow_ids ids;
  ids.workflow_id = workflow_id;
  std::vector<int64_t> job_ids(requests.size());
  auto order = workflow_order(w);
  for (size_t k = 0; k < roles.size(); ++k)
    order.push_back(tasks.size() + k);
  for (auto i : order) {
    auto id = insert_job((*prepared)[i].j, (*prepared)[i].payload);
    if (!id)
      return std::move(id.error());
    if (auto noted = note_extras(*id, requests[i], now); !noted)
      return std::move(noted.error());
    job_ids[i] = *id;
    ids.tasks.emplace(i < tasks.size()
                          ? tasks[i].name
                          : std::string{callback_task_name(
                                roles[i - tasks.size()])},
                      *id);
  }
  static const char* const role_names[] = {"on_success", "on_finish",
                                           "on_failure"};
  for (auto i : order) {
    bool callback = i >= tasks.size();
    std::string name = callback ? std::string{callback_task_name(
                                      roles[i - tasks.size()])}
                                : tasks[i].name;
    std::string role =
        callback ? role_names[roles[i - tasks.size()]] : std::string{"task"};
    int64_t pending = 0;
    if (!callback)
      for (auto& d : tasks[i].after) {
        auto parent = ids.tasks.count(d.parent) ? ids.tasks.at(d.parent)
                                                : existing.at(d.parent);
        std::string policy = to_string(d.on_failure);
        auto e = execute(
            sql_dep_insert,
            [&](statement& q) {
              q.bind(1, parent).bind(2, job_ids[i]).bind(3, policy);
            },
            "inserting a dependency");
        if (!e)
          return std::move(e.error());
      }
    if (!callback) {
      // Parents already there wait only while they have not succeeded.
      for (auto& d : tasks[i].after) {
        if (ids.tasks.count(d.parent)) {
          ++pending;
          continue;
        }
        auto s = prepare("SELECT state FROM bg_jobs_tasks WHERE job_id = ?1");
        if (!s)
          return std::move(s.error());
        statement q{*s};
        q.bind(1, existing.at(d.parent));
        if (int rc = q.step(); rc != SQLITE_ROW)
          return failure(rc, "reading a task");
        auto state = column_text(q.get(), 0);
        if (state == "failed" || state == "cancelled")
          return make_error(errc::invalid_state,
                            "task '" + printable(d.parent) + "' is " + state +
                                "; no task can be added after it");
        if (state != "succeeded")
          ++pending;
      }
    }
    std::string state = !callback && pending == 0 ? "ready" : "blocked";
    auto r = execute(
        sql_task_insert,
        [&](statement& q) {
          q.bind(1, job_ids[i])
              .bind(2, workflow_id)
              .bind(3, name)
              .bind(4, state)
              .bind(5, pending)
              .bind(6, role);
        },
        "inserting a task");
    if (!r)
      return std::move(r.error());
    if (state == "blocked") {
      auto moved = move_rows(
          sql_block, sql_block_delete,
          [&](statement& q) { q.bind(1, job_ids[i]); },
          [&](statement& q) { q.bind(1, job_ids[i]); }, "blocking a task");
      if (!moved)
        return std::move(moved.error());
    }
  }
  return ids;
}

caf::expected<workflow_ids>
sqlite_adapter::enqueue_workflow(const workflow& w) {
  if (auto err = check_workflow(w))
    return err;
  auto now = options_.clock->now();
  return in_transaction([&]() -> caf::expected<workflow_ids> {
    int64_t workflow_id = 0;
    {
      auto s = prepare(sql_workflow_insert);
      if (!s)
        return std::move(s.error());
      statement q{*s};
      q.bind(1, w.name())
          .bind(2, static_cast<int64_t>(w.tasks().size()))
          .bind(3, to_unix_ms(now))
          .bind(4, int64_t{w.open() ? 1 : 0});
      if (int rc = q.step(); rc != SQLITE_ROW)
        return failure(rc, "inserting a workflow");
      workflow_id = sqlite3_column_int64(q.get(), 0);
      if (int rc = q.step(); rc != SQLITE_DONE)
        return failure(rc, "inserting a workflow");
    }
    return insert_tasks(workflow_id, w, {}, now);
  });
}

caf::expected<workflow_ids> sqlite_adapter::add_tasks(int64_t id,
                                                      const workflow& more) {
  auto now = options_.clock->now();
  return in_transaction([&]() -> caf::expected<workflow_ids> {
    {
      auto s = prepare(sql_workflow_state);
      if (!s)
        return std::move(s.error());
      statement q{*s};
      q.bind(1, id);
      int rc = q.step();
      if (rc == SQLITE_DONE)
        return detail::no_workflow(id);
      if (rc != SQLITE_ROW)
        return failure(rc, "reading a workflow");
      if (auto state = column_text(q.get(), 0); state != "running")
        return make_error(errc::invalid_state,
                          "workflow " + std::to_string(id) + " is " + state +
                              "; tasks are added only to a running one");
    }
    std::map<std::string, int64_t> existing;
    {
      auto s = prepare("SELECT task, job_id FROM bg_jobs_tasks"
                       " WHERE workflow_id = ?1 AND role = 'task'");
      if (!s)
        return std::move(s.error());
      statement q{*s};
      q.bind(1, id);
      int rc;
      while ((rc = q.step()) == SQLITE_ROW)
        existing.emplace(column_text(q.get(), 0),
                         sqlite3_column_int64(q.get(), 1));
      if (rc != SQLITE_DONE)
        return failure(rc, "reading a workflow's tasks");
    }
    workflow tasks_only{"added"};
    for (auto& t : more.tasks())
      tasks_only.add(t.name, t.request, t.after);
    std::vector<std::string> names;
    for (auto& [name, job_id] : existing)
      names.push_back(name);
    if (auto err = check_workflow(tasks_only, names))
      return err;
    auto ids = insert_tasks(id, tasks_only, existing, now);
    if (!ids)
      return ids;
    auto grown = execute(
        "UPDATE bg_jobs_workflows SET total = total + ?2 WHERE id = ?1",
        [&](statement& q) {
          q.bind(1, id).bind(2, static_cast<int64_t>(more.tasks().size()));
        },
        "adding tasks");
    if (!grown)
      return std::move(grown.error());
    return ids;
  });
}

caf::expected<workflow_info> sqlite_adapter::close_workflow(int64_t id) {
  auto now = to_unix_ms(options_.clock->now());
  auto done = in_transaction([&]() -> caf::expected<bool> {
    auto closed = execute(
        "UPDATE bg_jobs_workflows SET open = 0 WHERE id = ?1",
        [&](statement& q) { q.bind(1, id); }, "closing a workflow");
    if (!closed)
      return std::move(closed.error());
    if (*closed == 0)
      return detail::no_workflow(id);
    // Every task may have finished already: the end and the callbacks now.
    for (auto sql : {sql_close_finish, sql_close_callbacks}) {
      auto r = exec_with(sql, id, now);
      if (!r)
        return std::move(r.error());
    }
    return true;
  });
  if (!done)
    return std::move(done.error());
  return get_workflow(id);
}

caf::expected<workflow_info> sqlite_adapter::get_workflow(int64_t id) {
  workflow_info w;
  {
    auto s = prepare(sql_workflow_by_id);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, id);
    int rc = q.step();
    if (rc == SQLITE_DONE)
      return detail::no_workflow(id);
    if (rc != SQLITE_ROW)
      return failure(rc, "reading a workflow");
    w = read_workflow(q.get());
  }
  std::map<int64_t, size_t> at;
  {
    auto s = prepare(sql_workflow_tasks);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, id);
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) {
      task_info t;
      t.name = column_text(q.get(), 0);
      t.job_id = sqlite3_column_int64(q.get(), 1);
      t.state = parse_task_state(column_text(q.get(), 2))
                    .value_or(task_state::blocked);
      t.finished_at = column_time_or_null(q.get(), 3);
      if (sqlite3_column_type(q.get(), 4) != SQLITE_NULL)
        t.output = parse_payload(sqlite3_column_text(q.get(), 4),
                                 sqlite3_column_bytes(q.get(), 4));
      t.job_name = column_text(q.get(), 5);
      at.emplace(t.job_id, w.tasks.size());
      w.tasks.push_back(std::move(t));
    }
    if (rc != SQLITE_DONE)
      return failure(rc, "reading a workflow's tasks");
  }
  auto s = prepare(sql_workflow_deps);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, id);
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    auto child = at.find(sqlite3_column_int64(q.get(), 0));
    if (child == at.end())
      continue;
    w.tasks[child->second].after.push_back(
        {column_text(q.get(), 1),
         parse_parent_failure(column_text(q.get(), 2))
             .value_or(parent_failure::cancel)});
  }
  if (rc != SQLITE_DONE)
    return failure(rc, "reading a workflow's dependencies");
  return w;
}

caf::expected<std::vector<workflow_info>>
sqlite_adapter::list_workflows(const workflow_query& query) {
  if (query.limit < 1 || query.limit > 1000)
    return make_error(errc::invalid_argument,
                      "page limit must be 1 to 1000, got " +
                          std::to_string(query.limit));
  auto s = prepare(sql_workflow_list);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  std::optional<std::string> state;
  if (query.state)
    state = to_string(*query.state);
  q.bind(1, state).bind(2, query.before_id).bind(3, int64_t{query.limit});
  std::vector<workflow_info> result;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    result.push_back(read_workflow(q.get()));
  if (rc != SQLITE_DONE)
    return failure(rc, "listing workflows");
  return result;
}

caf::expected<workflow_info>
sqlite_adapter::cancel_workflow(int64_t id, const std::string& reason) {
  if (auto err = check_reason(reason))
    return err;
  auto why = reason.empty() ? std::string{"cancelled"} : reason;
  auto now = to_unix_ms(options_.clock->now());
  auto done = in_transaction([&]() -> caf::expected<bool> {
    {
      auto s = prepare(sql_workflow_state);
      if (!s)
        return std::move(s.error());
      statement q{*s};
      q.bind(1, id);
      int rc = q.step();
      if (rc == SQLITE_DONE)
        return detail::no_workflow(id);
      if (rc != SQLITE_ROW)
        return failure(rc, "reading a workflow");
      if (auto state = column_text(q.get(), 0); state != "running")
        return make_error(errc::invalid_state,
                          "workflow " + std::to_string(id) + " is " + state +
                              "; only a running workflow can be cancelled");
    }
    auto marked = execute(
        sql_workflow_cancel_mark, [&](statement& q) { q.bind(1, id); },
        "cancelling a workflow");
    if (!marked)
      return std::move(marked.error());
    // What waits for parents is doomed first, so that no cancellation
    // below releases it (a child of an `ignore` dependency would be).
    if (auto r = execute(
            sql_workflow_doom, [&](statement& q) { q.bind(1, id); },
            "cancelling a workflow");
        !r)
      return std::move(r.error());
    std::vector<int64_t> ready;
    {
      auto s = prepare(sql_workflow_ready);
      if (!s)
        return std::move(s.error());
      statement q{*s};
      q.bind(1, id);
      int rc;
      while ((rc = q.step()) == SQLITE_ROW)
        ready.push_back(sqlite3_column_int64(q.get(), 0));
      if (rc != SQLITE_DONE)
        return failure(rc, "reading a workflow's tasks");
    }
    for (auto job_id : ready) {
      auto moved = move_rows(
          sql_cancel_waiting_task, sql_job_delete,
          [&](statement& q) { q.bind(1, job_id).bind(2, why).bind(3, now); },
          [&](statement& q) { q.bind(1, job_id); }, "cancelling a task");
      if (!moved)
        return std::move(moved.error());
      if (*moved == 0) {
        auto r = execute(
            sql_cancel_running_task,
            [&](statement& q) { q.bind(1, job_id).bind(2, why); },
            "cancelling a task");
        if (!r)
          return std::move(r.error());
      }
    }
    if (auto settled = settle_tasks(now, why); !settled)
      return std::move(settled.error());
    return true;
  });
  if (!done)
    return std::move(done.error());
  return get_workflow(id);
}

caf::expected<workflow_info> sqlite_adapter::retry_workflow(int64_t id) {
  auto now = to_unix_ms(options_.clock->now());
  auto done = in_transaction([&]() -> caf::expected<bool> {
    {
      auto s = prepare(sql_workflow_state);
      if (!s)
        return std::move(s.error());
      statement q{*s};
      q.bind(1, id);
      int rc = q.step();
      if (rc == SQLITE_DONE)
        return detail::no_workflow(id);
      if (rc != SQLITE_ROW)
        return failure(rc, "reading a workflow");
    }
    std::vector<int64_t> failed;
    int64_t tasks = 0;
    {
      auto s = prepare(sql_workflow_retryable);
      if (!s)
        return std::move(s.error());
      statement q{*s};
      q.bind(1, id);
      int rc;
      while ((rc = q.step()) == SQLITE_ROW) {
        if (column_text(q.get(), 2) == "task")
          ++tasks;
        // A held task waits in `bg_jobs_blocked` already.
        if (column_text(q.get(), 1) != "held")
          failed.push_back(sqlite3_column_int64(q.get(), 0));
      }
      if (rc != SQLITE_DONE)
        return failure(rc, "reading a workflow's tasks");
    }
    // Callbacks that were not called are armed again, but only with tasks
    // to run.
    if (tasks == 0)
      return make_error(errc::invalid_state,
                        "workflow " + std::to_string(id) +
                            " has no failed, cancelled or held task");
    // Every failed or cancelled task waits again, for each parent that has
    // not succeeded (those are retried too, or still unfinished); then
    // those with none are released.
    for (auto job_id : failed) {
      auto moved = move_rows(
          sql_failed_to_blocked, sql_failed_delete,
          [&](statement& q) { q.bind(1, job_id).bind(2, now); },
          [&](statement& q) { q.bind(1, job_id); }, "retrying a task");
      if (!moved)
        return std::move(moved.error());
    }
    for (auto sql : {sql_retry_block, sql_retry_pending, sql_retry_release,
                     sql_retry_ready, sql_retry_released, sql_workflow_recount})
      if (auto r = execute(
              sql, [&](statement& q) { q.bind(1, id).bind(2, now); },
              "retrying a workflow");
          !r)
        return std::move(r.error());
    return true;
  });
  if (!done)
    return std::move(done.error());
  return get_workflow(id);
}

caf::expected<std::optional<int64_t>>
sqlite_adapter::workflow_of(int64_t job_id) {
  auto s = prepare("SELECT workflow_id FROM bg_jobs_tasks WHERE job_id = ?1");
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, job_id);
  int rc = q.step();
  if (rc == SQLITE_DONE)
    return std::optional<int64_t>{};
  if (rc != SQLITE_ROW)
    return failure(rc, "reading a task");
  return std::optional<int64_t>{sqlite3_column_int64(q.get(), 0)};
}

caf::expected<std::map<std::string, nlohmann::json>>
sqlite_adapter::parent_outputs(int64_t job_id) {
  auto s = prepare("SELECT p.task, o.output FROM bg_jobs_deps d"
                   " JOIN bg_jobs_tasks p ON p.job_id = d.parent_id"
                   " JOIN bg_jobs_outputs o ON o.job_id = d.parent_id"
                   " WHERE d.child_id = ?1");
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, job_id);
  std::map<std::string, nlohmann::json> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    out.emplace(column_text(q.get(), 0),
                parse_payload(sqlite3_column_text(q.get(), 1),
                              sqlite3_column_bytes(q.get(), 1)));
  if (rc != SQLITE_DONE)
    return failure(rc, "reading a task's inputs");
  return out;
}

caf::expected<workflow_watch> sqlite_adapter::watch_workflows(int limit) {
  return in_transaction([&]() -> caf::expected<workflow_watch> {
    workflow_watch out;
    for (auto [sql, into] :
         {std::pair{sql_workflow_unreported, &out.finished},
          std::pair{sql_workflow_stuck, &out.stuck}}) {
      auto s = prepare(sql);
      if (!s)
        return std::move(s.error());
      statement q{*s};
      q.bind(1, int64_t{limit});
      int rc;
      while ((rc = q.step()) == SQLITE_ROW)
        into->push_back(read_workflow(q.get()));
      if (rc != SQLITE_DONE)
        return failure(rc, "looking at workflows");
    }
    for (auto& w : out.finished) {
      auto taken = execute(
          "UPDATE bg_jobs_workflows SET reported_at = finished_at"
          " WHERE id = ?1",
          [&](statement& q) { q.bind(1, w.id); }, "taking a workflow's end");
      if (!taken)
        return std::move(taken.error());
    }
    return out;
  });
}

caf::expected<bool>
sqlite_adapter::record_progress(int64_t job_id, const std::string& reserved_by,
                                int attempt, double fraction,
                                const std::string& text) {
  auto s = prepare(
      "INSERT INTO bg_jobs_progress (job_id, attempt, fraction, text,"
      " updated_at) SELECT id, attempts, ?4, ?5, ?6 FROM jobs"
      " WHERE id = ?1 AND reserved_by = ?2 AND attempts = ?3"
      " ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt,"
      " fraction = excluded.fraction, text = excluded.text,"
      " updated_at = excluded.updated_at");
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, job_id)
      .bind(2, reserved_by)
      .bind(3, int64_t{attempt})
      .bind_real(4, fraction)
      .bind(5, text)
      .bind(6, to_unix_ms(options_.clock->now()));
  if (int rc = q.step(); rc != SQLITE_DONE)
    return failure(rc, "storing a job's progress");
  return sqlite3_changes(db_) > 0;
}

} // namespace bg_jobs
