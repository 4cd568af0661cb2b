// Workflows on PostgreSQL: inserting one, reading, cancelling and retrying
// it. The steps between tasks are taken by `bg_jobs_settle` and the
// triggers of schema version 17 (postgres_schema.cpp), in the statement
// that finishes a task.

#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"

#include "bg_jobs/adapters/detail/prepared_job.hpp"
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
  BG_JOBS_MS("w.finished_at")
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
  return w;
}

caf::error no_workflow(int64_t id) {
  return make_error(errc::job_not_found, "no workflow " + std::to_string(id));
}

/// What a change of a workflow found: 0 done, 1 no such workflow, 2 the
/// state refuses it (`state` says which).
struct change_outcome {
  int code = 0;
  std::string state;
};

} // namespace

caf::expected<workflow_ids>
postgres_adapter::enqueue_workflow(const workflow& w) {
  if (auto err = check_workflow(w))
    return err;
  auto now = from_unix_ms(impl_->now_ms());
  std::vector<job_request> requests;
  requests.reserve(w.tasks().size());
  for (auto& t : w.tasks())
    requests.push_back(t.request);
  auto prepared = detail::prepare_jobs(requests, now);
  if (!prepared)
    return std::move(prepared.error());
  auto order = workflow_order(w);
  auto& tasks = w.tasks();
  return impl_->in_transaction("inserting a workflow", [&](pqxx::work& tx) {
    workflow_ids ids;
    ids.workflow_id =
        tx.exec_params("INSERT INTO bg_jobs_workflows (name, state, total,"
                       " created_at) VALUES ($1, 'running', $2, " BG_JOBS_TS(
                           "$3") ") RETURNING id",
                       w.name(), static_cast<int64_t>(tasks.size()),
                       to_unix_ms(now))[0][0]
            .as<int64_t>();
    std::vector<int64_t> job_ids(tasks.size());
    for (auto i : order) {
      auto& [j, text, attrs] = (*prepared)[i];
      job_ids[i] =
          tx.exec_prepared("bgj_enqueue", j.name, text, to_unix_ms(now),
                           to_unix_ms(j.available_at), j.priority,
                           key_or_null(j.concurrency_key),
                           key_or_null(j.second_concurrency_key),
                           key_or_null(attrs))[0][0]
              .as<int64_t>();
      note_extras(tx, job_ids[i], requests[i], now);
      ids.tasks.emplace(tasks[i].name, job_ids[i]);
    }
    auto task_rows = nlohmann::json::array();
    auto dep_rows = nlohmann::json::array();
    std::vector<int64_t> blocked;
    for (auto i : order) {
      auto& t = tasks[i];
      task_rows.push_back({{"id", job_ids[i]},
                           {"task", t.name},
                           {"state", t.after.empty() ? "ready" : "blocked"},
                           {"pending", t.after.size()}});
      for (auto& d : t.after)
        dep_rows.push_back({{"p", ids.tasks.at(d.parent)},
                            {"c", job_ids[i]},
                            {"policy", to_string(d.on_failure)}});
      if (!t.after.empty())
        blocked.push_back(job_ids[i]);
    }
    tx.exec_params("INSERT INTO bg_jobs_tasks (job_id, workflow_id, task,"
                   " state, pending) SELECT id, $2, task, state, pending"
                   " FROM json_to_recordset($1::json) AS x(id bigint,"
                   " task text, state text, pending integer)",
                   task_rows.dump(), ids.workflow_id);
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
  });
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
    return no_workflow(id);
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
                       " RETURNING job_id",
                       id);
    std::vector<int64_t> ids;
    for (const auto& row : doomed)
      ids.push_back(row[0].as<int64_t>());
    for (auto job_id : ids)
      cancel_blocked(tx, job_id, why, now);
    tx.exec_params(
        "WITH m AS (DELETE FROM jobs WHERE reserved_by IS NULL AND id IN"
        "   (SELECT job_id FROM bg_jobs_tasks WHERE workflow_id = $1"
        "   AND state = 'ready') RETURNING *)"
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
        " FROM bg_jobs_tasks WHERE workflow_id = $1 AND state = 'ready')",
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
    return no_workflow(id);
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
                       " AND state IN ('failed', 'cancelled', 'held')",
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
        " WHERE t.workflow_id = $1 AND t.state = 'blocked'",
        id);
    tx.exec_params(
        "WITH r AS (UPDATE bg_jobs_tasks SET state = 'ready'"
        "   WHERE workflow_id = $1 AND state = 'blocked' AND pending = 0"
        "   RETURNING job_id),"
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
        "   WHERE workflow_id = w.id AND state = 'succeeded'),"
        " failed = 0, cancelled = 0 WHERE id = $1",
        id);
    return out;
  });
  if (!r)
    return std::move(r.error());
  if (r->code == 1)
    return no_workflow(id);
  if (r->code == 2)
    return make_error(errc::invalid_state,
                      "workflow " + std::to_string(id) +
                          " has no failed, cancelled or held task");
  return get_workflow(id);
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

} // namespace bg_jobs
