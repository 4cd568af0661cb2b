// Workflows on PostgreSQL: inserting one, reading, cancelling and retrying
// it. The steps between tasks are taken by `bg_jobs_settle` and the
// triggers of schema version 17 (postgres_schema.cpp), in the statement
// that finishes a task.

#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"

#include "bg_jobs/adapters/detail/prepared_job.hpp"
#include "bg_jobs/adapters/detail/workflow_errors.hpp"
#include "bg_jobs/adapters/postgres/detail/postgres_internal.hpp"

#include <map>

#include <pqxx/pqxx>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

using namespace detail::postgres;

namespace {

// clang-format off
#define BG_JOBS_PG_WORKFLOW_COLUMNS                                            \
  "w.id, w.name, w.state, w.total, w.succeeded, w.failed, w.cancelled,"        \
  " (SELECT count(*) FROM bg_jobs_tasks t WHERE t.workflow_id = w.id"          \
  "   AND t.state = 'held'), " BG_JOBS_MS("w.created_at") ", "                 \
  BG_JOBS_MS("w.finished_at") ", w.open"
// clang-format on

workflow_info read_workflow(const pqxx::row& r) {
  workflow_info w;
  w.id = r[0].as<int64_t>();
  w.name = r[1].as<std::string>();
  w.state = parse_workflow_state(r[2].as<std::string>())
                .value_or(workflow_state::running);
  w.total = r[3].as<int64_t>();
  w.succeeded = r[4].as<int64_t>();
  w.failed = r[5].as<int64_t>();
  w.cancelled = r[6].as<int64_t>();
  w.held = r[7].as<int64_t>();
  w.created_at = from_unix_ms(r[8].as<int64_t>());
  if (!r[9].is_null())
    w.finished_at = from_unix_ms(r[9].as<int64_t>());
  w.open = r[10].as<bool>();
  return w;
}

/// What a change of a workflow found: 0 done, 1 no such workflow, 2 the
/// state refuses it (`state` says which).
struct change_outcome {
  int code = 0;
  std::string state;
};

} // namespace

namespace {

/// Inserts the tasks (and callbacks) of `w` into workflow `workflow_id` in
/// `tx`; `existing` maps the names of tasks already there to their job ids.
/// Throws `std::invalid_argument` for a parent already failed or
/// cancelled.
workflow_ids insert_tasks(pqxx::transaction_base& tx, int64_t workflow_id,
                          const workflow& w,
                          std::vector<detail::prepared_job>& prepared,
                          const std::vector<job_request>& requests,
                          const std::vector<size_t>& roles,
                          const std::map<std::string, int64_t>& existing,
                          timestamp now) {
  static const char* const role_names[] = {"on_success", "on_finish",
                                           "on_failure"};
  auto& tasks = w.tasks();
  workflow_ids ids;
  ids.workflow_id = workflow_id;
  std::vector<int64_t> job_ids(requests.size());
  auto order = workflow_order(w);
  for (size_t k = 0; k < roles.size(); ++k)
    order.push_back(tasks.size() + k);
  auto name_of = [&](size_t i) {
    return i < tasks.size() ? tasks[i].name
                            : std::string{callback_task_name(
                                  roles[i - tasks.size()])};
  };
  for (auto i : order) {
    auto& [j, text, attrs] = prepared[i];
    job_ids[i] =
        tx.exec_prepared("bgj_enqueue", j.name, text, to_unix_ms(now),
                         to_unix_ms(j.available_at), j.priority,
                         key_or_null(j.concurrency_key),
                         key_or_null(j.second_concurrency_key),
                         key_or_null(attrs))[0][0]
            .as<int64_t>();
    note_extras(tx, job_ids[i], requests[i], now);
    ids.tasks.emplace(name_of(i), job_ids[i]);
  }
  // The states of the parents already there.
  std::map<std::string, std::string> old_state;
  if (!existing.empty())
    for (const auto& row :
         tx.exec_params("SELECT task, state FROM bg_jobs_tasks"
                        " WHERE workflow_id = $1 AND role = 'task'",
                        workflow_id))
      old_state.emplace(row[0].as<std::string>(), row[1].as<std::string>());
  auto task_rows = nlohmann::json::array();
  auto dep_rows = nlohmann::json::array();
  std::vector<int64_t> blocked;
  for (auto i : order) {
    bool callback = i >= tasks.size();
    int64_t pending = 0;
    if (!callback)
      for (auto& d : tasks[i].after) {
        auto parent = ids.tasks.count(d.parent) ? ids.tasks.at(d.parent)
                                                : existing.at(d.parent);
        dep_rows.push_back({{"p", parent},
                            {"c", job_ids[i]},
                            {"policy", to_string(d.on_failure)}});
        if (ids.tasks.count(d.parent)) {
          ++pending;
          continue;
        }
        auto& state = old_state[d.parent];
        if (state == "failed" || state == "cancelled")
          throw std::invalid_argument("task '" + printable(d.parent) +
                                      "' is " + state +
                                      "; no task can be added after it");
        if (state != "succeeded")
          ++pending;
      }
    bool waits = callback || pending > 0;
    task_rows.push_back(
        {{"id", job_ids[i]},
         {"task", name_of(i)},
         {"state", waits ? "blocked" : "ready"},
         {"pending", pending},
         {"role", callback ? role_names[roles[i - tasks.size()]] : "task"}});
    if (waits)
      blocked.push_back(job_ids[i]);
  }
  tx.exec_params("INSERT INTO bg_jobs_tasks (job_id, workflow_id, task,"
                 " state, pending, role) SELECT id, $2, task, state, pending,"
                 " role FROM json_to_recordset($1::json) AS x(id bigint,"
                 " task text, state text, pending integer, role text)",
                 task_rows.dump(), workflow_id);
  if (!dep_rows.empty())
    tx.exec_params("INSERT INTO bg_jobs_deps (parent_id, child_id, policy)"
                   " SELECT p, c, policy FROM json_to_recordset($1::json)"
                   " AS x(p bigint, c bigint, policy text)",
                   dep_rows.dump());
  if (!blocked.empty())
    tx.exec_params(
        "WITH m AS (DELETE FROM jobs WHERE id = ANY ($1::bigint[])"
        "   RETURNING *)"
        " INSERT INTO bg_jobs_blocked (id, name, payload, attempts,"
        "   created_at, available_at, reserved_at, reserved_by, last_error,"
        "   priority, cancel_reason, errors, concurrency_key,"
        "   second_concurrency_key, expires_at, attrs)"
        " SELECT id, name, payload, attempts, created_at, available_at,"
        "   reserved_at, reserved_by, last_error, priority, cancel_reason,"
        "   errors, concurrency_key, second_concurrency_key, expires_at,"
        "   attrs FROM m",
        id_literal(blocked, [](int64_t id) { return id; }));
  return ids;
}

/// The requests of `w`'s tasks, then of its callbacks (their roles in
/// `roles`).
std::vector<job_request> requests_of(const workflow& w,
                                     std::vector<size_t>& roles) {
  std::vector<job_request> requests;
  for (auto& t : w.tasks())
    requests.push_back(t.request);
  for (size_t role = 0; role < 3; ++role)
    if (auto& c = w.callback(role)) {
      requests.push_back(*c);
      roles.push_back(role);
    }
  return requests;
}

} // namespace

caf::expected<workflow_ids>
postgres_adapter::enqueue_workflow(const workflow& w) {
  if (auto err = check_workflow(w))
    return err;
  auto now = from_unix_ms(impl_->now_ms());
  std::vector<size_t> roles;
  auto requests = requests_of(w, roles);
  auto prepared = detail::prepare_jobs(requests, now);
  if (!prepared)
    return std::move(prepared.error());
  return impl_->in_transaction("inserting a workflow", [&](pqxx::work& tx) {
    auto id =
        tx.exec_params("INSERT INTO bg_jobs_workflows (name, state, total,"
                       " created_at, open) VALUES ($1, 'running', $2, " BG_JOBS_TS(
                           "$3") ", $4) RETURNING id",
                       w.name(), static_cast<int64_t>(w.tasks().size()),
                       to_unix_ms(now), w.open())[0][0]
            .as<int64_t>();
    return insert_tasks(tx, id, w, *prepared, requests, roles, {}, now);
  });
}

caf::expected<workflow_ids> postgres_adapter::add_tasks(int64_t id,
                                                        const workflow& more) {
  workflow tasks_only{"added"};
  for (auto& t : more.tasks())
    tasks_only.add(t.name, t.request, t.after);
  auto now = from_unix_ms(impl_->now_ms());
  std::vector<size_t> roles;
  auto requests = requests_of(tasks_only, roles);
  auto prepared = detail::prepare_jobs(requests, now);
  if (!prepared)
    return std::move(prepared.error());
  struct added {
    int code = 0; // 1 no workflow, 2 finished, 3 bad definition
    std::string why;
    workflow_ids ids;
  };
  auto r = impl_->in_transaction("adding tasks", [&](pqxx::work& tx) {
    added out;
    auto row = tx.exec_params(
        "SELECT state FROM bg_jobs_workflows WHERE id = $1 FOR UPDATE", id);
    if (row.empty()) {
      out.code = 1;
      return out;
    }
    if (auto state = row[0][0].as<std::string>(); state != "running") {
      out.code = 2;
      out.why = "workflow " + std::to_string(id) + " is " + state +
                "; tasks are added only to a running one";
      return out;
    }
    std::map<std::string, int64_t> existing;
    std::vector<std::string> names;
    for (const auto& t :
         tx.exec_params("SELECT task, job_id FROM bg_jobs_tasks"
                        " WHERE workflow_id = $1 AND role = 'task'",
                        id)) {
      existing.emplace(t[0].as<std::string>(), t[1].as<int64_t>());
      names.push_back(t[0].as<std::string>());
    }
    if (auto err = check_workflow(tasks_only, names)) {
      out.code = 3;
      out.why = describe(err);
      return out;
    }
    // A parent that ended badly refuses the addition before anything is
    // written.
    for (auto& t : tasks_only.tasks())
      for (auto& d : t.after)
        if (auto at = existing.find(d.parent); at != existing.end()) {
          auto state = tx.exec_params(
              "SELECT state FROM bg_jobs_tasks WHERE job_id = $1",
              at->second)[0][0].as<std::string>();
          if (state == "failed" || state == "cancelled") {
            out.code = 2;
            out.why = "task '" + printable(d.parent) + "' is " + state +
                      "; no task can be added after it";
            return out;
          }
        }
    out.ids = insert_tasks(tx, id, tasks_only, *prepared, requests, roles,
                           existing, now);
    tx.exec_params(
        "UPDATE bg_jobs_workflows SET total = total + $2 WHERE id = $1", id,
        static_cast<int64_t>(more.tasks().size()));
    return out;
  });
  if (!r)
    return std::move(r.error());
  if (r->code == 1)
    return detail::no_workflow(id);
  if (r->code == 2)
    return make_error(errc::invalid_state, r->why);
  if (r->code == 3)
    return make_error(errc::invalid_argument, r->why);
  return std::move(r->ids);
}

caf::expected<workflow_info> postgres_adapter::close_workflow(int64_t id) {
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("closing a workflow", [&](pqxx::work& tx) {
    if (tx.exec_params("UPDATE bg_jobs_workflows SET open = false"
                       " WHERE id = $1",
                       id)
            .affected_rows() == 0)
      return false;
    // Every task may have finished already: the end and the callbacks now.
    tx.exec_params(
        "UPDATE bg_jobs_workflows SET state = CASE WHEN cancel_requested"
        " THEN 'cancelled' WHEN failed + cancelled = 0 THEN 'succeeded'"
        " ELSE 'failed' END, finished_at = " BG_JOBS_TS("$2")
        " WHERE id = $1 AND state = 'running'"
        " AND succeeded + failed + cancelled = total",
        id, now);
    tx.exec_params("SELECT bg_jobs_callbacks(ARRAY[$1::bigint], " BG_JOBS_TS(
                       "$2") ")",
                   id, now);
    return true;
  });
  if (!r)
    return std::move(r.error());
  if (!*r)
    return detail::no_workflow(id);
  return get_workflow(id);
}

caf::expected<workflow_info> postgres_adapter::get_workflow(int64_t id) {
  auto r = impl_->in_transaction(
      "reading a workflow", [&](pqxx::work& tx) -> std::optional<workflow_info> {
        auto row = tx.exec_params("SELECT " BG_JOBS_PG_WORKFLOW_COLUMNS
                                  " FROM bg_jobs_workflows w WHERE w.id = $1",
                                  id);
        if (row.empty())
          return std::nullopt;
        auto w = read_workflow(row[0]);
        std::map<int64_t, size_t> at;
        for (const auto& t : tx.exec_params(
                 "SELECT t.task, t.job_id, t.state, " BG_JOBS_MS(
                     "t.finished_at") ", (SELECT output::text"
                                      " FROM bg_jobs_outputs o"
                                      " WHERE o.job_id = t.job_id),"
                                      " coalesce((SELECT name FROM jobs"
                                      "  WHERE id = t.job_id),"
                                      " (SELECT name FROM bg_jobs_blocked"
                                      "  WHERE id = t.job_id),"
                                      " (SELECT name FROM jobs_succeeded"
                                      "  WHERE id = t.job_id),"
                                      " (SELECT name FROM jobs_failed"
                                      "  WHERE id = t.job_id), '')"
                                      " FROM bg_jobs_tasks t"
                                      " WHERE t.workflow_id = $1"
                                      " ORDER BY t.job_id",
                 id)) {
          task_info ti;
          ti.name = t[0].as<std::string>();
          ti.job_id = t[1].as<int64_t>();
          ti.state = parse_task_state(t[2].as<std::string>())
                         .value_or(task_state::blocked);
          if (!t[3].is_null())
            ti.finished_at = from_unix_ms(t[3].as<int64_t>());
          if (!t[4].is_null())
            ti.output = parse_payload(t[4]);
          ti.job_name = t[5].as<std::string>();
          at.emplace(ti.job_id, w.tasks.size());
          w.tasks.push_back(std::move(ti));
        }
        for (const auto& d : tx.exec_params(
                 "SELECT d.child_id, p.task, d.policy FROM bg_jobs_tasks p"
                 " JOIN bg_jobs_deps d ON d.parent_id = p.job_id"
                 " WHERE p.workflow_id = $1 ORDER BY d.child_id, p.job_id",
                 id)) {
          auto child = at.find(d[0].as<int64_t>());
          if (child == at.end())
            continue;
          w.tasks[child->second].after.push_back(
              {d[1].as<std::string>(),
               parse_parent_failure(d[2].as<std::string>())
                   .value_or(parent_failure::cancel)});
        }
        return w;
      });
  if (!r)
    return std::move(r.error());
  if (!*r)
    return detail::no_workflow(id);
  return std::move(**r);
}

caf::expected<std::vector<workflow_info>>
postgres_adapter::list_workflows(const workflow_query& query) {
  if (query.limit < 1 || query.limit > 1000)
    return make_error(errc::invalid_argument,
                      "page limit must be 1 to 1000, got " +
                          std::to_string(query.limit));
  std::optional<std::string> state;
  if (query.state)
    state = to_string(*query.state);
  return impl_->in_statement(
      "listing workflows", [&](pqxx::transaction_base& tx) {
        std::vector<workflow_info> result;
        for (const auto& row : tx.exec_params(
                 "SELECT " BG_JOBS_PG_WORKFLOW_COLUMNS
                 " FROM bg_jobs_workflows w"
                 " WHERE ($1::text IS NULL OR w.state = $1)"
                 " AND ($2::bigint = 0 OR w.id < $2)"
                 " ORDER BY w.id DESC LIMIT $3",
                 nullable(state), query.before_id, query.limit))
          result.push_back(read_workflow(row));
        return result;
      });
}

caf::expected<workflow_info>
postgres_adapter::cancel_workflow(int64_t id, const std::string& reason) {
  if (auto err = check_reason(reason))
    return err;
  auto why = reason.empty() ? std::string{"cancelled"} : reason;
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("cancelling a workflow", [&](pqxx::work&
                                                                  tx) {
    change_outcome out;
    auto row = tx.exec_params(
        "SELECT state FROM bg_jobs_workflows WHERE id = $1 FOR UPDATE", id);
    if (row.empty()) {
      out.code = 1;
      return out;
    }
    out.state = row[0][0].as<std::string>();
    if (out.state != "running") {
      out.code = 2;
      return out;
    }
    tx.exec_params(
        "UPDATE bg_jobs_workflows SET cancel_requested = true WHERE id = $1",
        id);
    // What waits for parents is cancelled first, marked so that no
    // trigger takes its step (a child of an `ignore` dependency would be
    // released); then what waits to run, whose triggers take theirs; then
    // the first ones' steps.
    auto doomed =
        tx.exec_params("UPDATE bg_jobs_tasks SET state = 'doomed'"
                       " WHERE workflow_id = $1 AND state IN ('blocked', 'held')"
                       " AND role = 'task' RETURNING job_id",
                       id);
    std::vector<int64_t> ids;
    for (const auto& row : doomed)
      ids.push_back(row[0].as<int64_t>());
    for (auto job_id : ids)
      cancel_blocked(tx, job_id, why, now);
    tx.exec_params(
        "WITH m AS (DELETE FROM jobs WHERE reserved_by IS NULL AND id IN"
        "   (SELECT job_id FROM bg_jobs_tasks WHERE workflow_id = $1"
        "   AND state = 'ready' AND role = 'task') RETURNING *)"
        " INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
        "   created_at, available_at, failed_at, priority, cancelled, errors,"
        "   concurrency_key, second_concurrency_key, attrs)"
        " SELECT id, name, payload, attempts, $2, created_at, available_at, "
        BG_JOBS_TS("$3") ", priority, true, errors, concurrency_key,"
        "   second_concurrency_key, attrs FROM m",
        id, why, now);
    tx.exec_params(
        "UPDATE jobs SET cancel_reason = coalesce(cancel_reason, $2)"
        " WHERE reserved_by IS NOT NULL AND id IN (SELECT job_id"
        " FROM bg_jobs_tasks WHERE workflow_id = $1 AND state = 'ready'"
        " AND role = 'task')",
        id, why);
    if (!ids.empty())
      tx.exec_params("SELECT bg_jobs_settle($1::bigint[], 'cancelled', " BG_JOBS_TS(
                         "$2") ")",
                     id_literal(ids, [](int64_t x) { return x; }), now);
    return out;
  });
  if (!r)
    return std::move(r.error());
  if (r->code == 1)
    return detail::no_workflow(id);
  if (r->code == 2)
    return make_error(errc::invalid_state,
                      "workflow " + std::to_string(id) + " is " + r->state +
                          "; only a running workflow can be cancelled");
  return get_workflow(id);
}

caf::expected<workflow_info> postgres_adapter::retry_workflow(int64_t id) {
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("retrying a workflow", [&](pqxx::work& tx) {
    change_outcome out;
    if (tx.exec_params(
              "SELECT 1 FROM bg_jobs_workflows WHERE id = $1 FOR UPDATE", id)
            .empty()) {
      out.code = 1;
      return out;
    }
    auto failed =
        tx.exec_params("SELECT job_id FROM bg_jobs_tasks WHERE workflow_id = $1"
                       " AND state IN ('failed', 'cancelled', 'held')"
                       " AND role = 'task'",
                       id);
    if (failed.empty()) {
      out.code = 2;
      return out;
    }
    // Every failed or cancelled task waits again, for each parent that has
    // not succeeded (those are retried too, or still unfinished); then
    // those with none are released.
    tx.exec_params(
        "WITH m AS (DELETE FROM jobs_failed WHERE id IN (SELECT job_id"
        "   FROM bg_jobs_tasks WHERE workflow_id = $1"
        "   AND state IN ('failed', 'cancelled')) RETURNING *)"
        " INSERT INTO bg_jobs_blocked (id, name, payload, attempts,"
        "   created_at, available_at, priority, errors, last_error,"
        "   concurrency_key, second_concurrency_key, attrs)"
        " SELECT id, name, payload, 0, created_at, " BG_JOBS_TS("$2")
        ", priority, errors, exception, concurrency_key,"
        "   second_concurrency_key, attrs FROM m",
        id, now);
    tx.exec_params("UPDATE bg_jobs_tasks SET state = 'blocked',"
                   " finished_at = NULL WHERE workflow_id = $1"
                   " AND state IN ('failed', 'cancelled', 'held')",
                   id);
    tx.exec_params(
        "UPDATE bg_jobs_tasks t SET pending = (SELECT count(*)"
        "   FROM bg_jobs_deps d JOIN bg_jobs_tasks p ON p.job_id = d.parent_id"
        "   WHERE d.child_id = t.job_id AND p.state <> 'succeeded')"
        " WHERE t.workflow_id = $1 AND t.state = 'blocked'"
        " AND t.role = 'task'",
        id);
    tx.exec_params(
        "WITH r AS (UPDATE bg_jobs_tasks SET state = 'ready'"
        "   WHERE workflow_id = $1 AND state = 'blocked' AND pending = 0"
        "   AND role = 'task' RETURNING job_id),"
        " m AS (DELETE FROM bg_jobs_blocked b USING r WHERE b.id = r.job_id"
        "   RETURNING b.*),"
        " i AS (INSERT INTO jobs (id, name, payload, attempts, created_at,"
        "   available_at, reserved_at, reserved_by, last_error, priority,"
        "   cancel_reason, errors, concurrency_key, second_concurrency_key,"
        "   expires_at, attrs)"
        "   SELECT id, name, payload, attempts, created_at,"
        "   greatest(available_at, " BG_JOBS_TS("$2") "), reserved_at,"
        "   reserved_by, last_error, priority, cancel_reason, errors,"
        "   concurrency_key, second_concurrency_key, expires_at, attrs"
        "   FROM m RETURNING name)"
        " SELECT pg_notify($3, name) FROM (SELECT DISTINCT name FROM i) d",
        id, now, impl_->channel);
    tx.exec_params(
        "UPDATE bg_jobs_workflows w SET state = 'running', finished_at = NULL,"
        " cancel_requested = false,"
        " succeeded = (SELECT count(*) FROM bg_jobs_tasks"
        "   WHERE workflow_id = w.id AND state = 'succeeded'"
        "   AND role = 'task'),"
        " failed = 0, cancelled = 0 WHERE id = $1",
        id);
    return out;
  });
  if (!r)
    return std::move(r.error());
  if (r->code == 1)
    return detail::no_workflow(id);
  if (r->code == 2)
    return make_error(errc::invalid_state,
                      "workflow " + std::to_string(id) +
                          " has no failed, cancelled or held task");
  return get_workflow(id);
}

caf::expected<std::optional<int64_t>>
postgres_adapter::workflow_of(int64_t job_id) {
  return impl_->in_statement(
      "reading a task", [&](pqxx::transaction_base& tx) {
        auto r = tx.exec_params(
            "SELECT workflow_id FROM bg_jobs_tasks WHERE job_id = $1", job_id);
        return r.empty() ? std::optional<int64_t>{}
                         : std::optional<int64_t>{r[0][0].as<int64_t>()};
      });
}

caf::expected<std::map<std::string, nlohmann::json>>
postgres_adapter::parent_outputs(int64_t job_id) {
  return impl_->in_statement(
      "reading a task's inputs", [&](pqxx::transaction_base& tx) {
        std::map<std::string, nlohmann::json> out;
        for (const auto& row : tx.exec_params(
                 "SELECT p.task, o.output::text FROM bg_jobs_deps d"
                 " JOIN bg_jobs_tasks p ON p.job_id = d.parent_id"
                 " JOIN bg_jobs_outputs o ON o.job_id = d.parent_id"
                 " WHERE d.child_id = $1",
                 job_id))
          out.emplace(row[0].as<std::string>(), parse_payload(row[1]));
        return out;
      });
}

caf::expected<workflow_watch>
postgres_adapter::watch_workflows(int limit) {
  return impl_->in_statement(
      "looking at workflows", [&](pqxx::transaction_base& tx) {
        workflow_watch out;
        // Taken in one statement (the predicate is that of
        // bg_jobs_workflows_unreported_idx); a finish two callers see at
        // once goes to one of them.
        for (const auto& row : tx.exec_params(
                 "WITH t AS (SELECT id FROM bg_jobs_workflows"
                 "  WHERE finished_at IS NOT NULL AND (reported_at IS NULL"
                 "   OR reported_at <> finished_at)"
                 "  ORDER BY finished_at, id LIMIT $1"
                 "  FOR UPDATE SKIP LOCKED),"
                 " u AS (UPDATE bg_jobs_workflows x"
                 "  SET reported_at = x.finished_at FROM t WHERE x.id = t.id"
                 "  RETURNING x.id)"
                 " SELECT " BG_JOBS_PG_WORKFLOW_COLUMNS
                 " FROM bg_jobs_workflows w JOIN u ON u.id = w.id"
                 " ORDER BY w.finished_at, w.id",
                 limit))
          out.finished.push_back(read_workflow(row));
        for (const auto& row : tx.exec_params(
                 "SELECT " BG_JOBS_PG_WORKFLOW_COLUMNS
                 " FROM bg_jobs_workflows w"
                 " WHERE w.id IN (SELECT workflow_id FROM bg_jobs_tasks"
                 "  WHERE state = 'held') AND w.state = 'running'"
                 " ORDER BY w.id LIMIT $1",
                 limit))
          out.stuck.push_back(read_workflow(row));
        return out;
      });
}

caf::expected<bool>
postgres_adapter::record_progress(int64_t job_id,
                                  const std::string& reserved_by, int attempt,
                                  double fraction, const std::string& text) {
  auto now = impl_->now_ms();
  return impl_->in_statement(
      "storing a job's progress", [&](pqxx::transaction_base& tx) {
        return tx
                   .exec_params(
                       "INSERT INTO bg_jobs_progress (job_id, attempt,"
                       " fraction, text, updated_at)"
                       " SELECT id, attempts, $4, $5, " BG_JOBS_TS("$6")
                       " FROM jobs WHERE id = $1 AND reserved_by = $2"
                       " AND attempts = $3"
                       " ON CONFLICT (job_id) DO UPDATE SET"
                       " attempt = excluded.attempt,"
                       " fraction = excluded.fraction, text = excluded.text,"
                       " updated_at = excluded.updated_at",
                       job_id, reserved_by, attempt, fraction, text, now)
                   .affected_rows() > 0;
      });
}

} // namespace bg_jobs
