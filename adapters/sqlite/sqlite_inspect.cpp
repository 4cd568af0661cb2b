// What operators do and see on SQLite: job records, listings, counts,
// cancel, retry, delete, pause and resume.

#include "bg_jobs/adapters/sqlite/detail/sqlite_internal.hpp"

namespace bg_jobs {

using namespace detail::sqlite;

namespace {

const char sql_stats[] =
    "SELECT"
    " (SELECT count(*) FROM jobs"
    "   WHERE reserved_by IS NULL AND available_at <= ?1),"
    " (SELECT count(*) FROM jobs"
    "   WHERE reserved_by IS NULL AND available_at > ?1),"
    " (SELECT count(*) FROM jobs WHERE reserved_by IS NOT NULL),"
    " (SELECT count(*) FROM jobs_succeeded),"
    " (SELECT count(*) FROM jobs_failed WHERE cancelled = 0),"
    " (SELECT count(*) FROM jobs_failed WHERE cancelled = 1)";

// Job records: the same 17 columns from each table (?1 is now).
#define BG_JOBS_RECORD_OF_JOBS                                                 \
  "SELECT id, name, payload, priority, attempts,"                              \
  " CASE WHEN reserved_by IS NOT NULL THEN 2"                                  \
  "      WHEN available_at > ?1 THEN 1 ELSE 0 END,"                            \
  " created_at, available_at, reserved_at, reserved_by, NULL, last_error,"     \
  " cancel_reason, errors, concurrency_key, second_concurrency_key, attrs"     \
  " FROM jobs"
#define BG_JOBS_RECORD_OF_SUCCEEDED                                            \
  "SELECT id, name, payload, priority, attempts, 3, created_at,"               \
  " available_at, NULL, NULL, succeeded_at, NULL, NULL, errors, NULL, NULL,"   \
  " attrs FROM jobs_succeeded"
#define BG_JOBS_RECORD_OF_FAILED                                               \
  "SELECT id, name, payload, priority, attempts,"                              \
  " CASE WHEN cancelled = 1 THEN 5 ELSE 4 END, created_at, available_at,"      \
  " NULL, NULL, failed_at, exception, NULL, errors, concurrency_key,"         \
  " second_concurrency_key, attrs FROM jobs_failed"

#define BG_JOBS_RECORD_OF_BLOCKED                                              \
  "SELECT id, name, payload, priority, attempts, 6, created_at,"               \
  " available_at, NULL, NULL, NULL, last_error, NULL, errors,"                 \
  " concurrency_key, second_concurrency_key, attrs FROM bg_jobs_blocked"

const char sql_record_by_id[] = BG_JOBS_RECORD_OF_JOBS
    " WHERE id = ?2"
    " UNION ALL " BG_JOBS_RECORD_OF_SUCCEEDED " WHERE id = ?2"
    " UNION ALL " BG_JOBS_RECORD_OF_FAILED " WHERE id = ?2"
    " UNION ALL " BG_JOBS_RECORD_OF_BLOCKED " WHERE id = ?2";

const char sql_cancel_waiting[] =
    "INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
    " created_at, available_at, failed_at, priority, cancelled, errors,"
    " concurrency_key, second_concurrency_key, attrs)"
    " SELECT id, name, payload, attempts, ?2, created_at, available_at, ?3,"
    " priority, 1, errors, concurrency_key, second_concurrency_key, attrs"
    " FROM jobs"
    " WHERE id = ?1 AND reserved_by IS NULL";

// A workflow's task still waiting for its parents.
const char sql_cancel_blocked[] =
    "INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
    " created_at, available_at, failed_at, priority, cancelled, errors,"
    " concurrency_key, second_concurrency_key, attrs)"
    " SELECT id, name, payload, attempts, ?2, created_at, available_at, ?3,"
    " priority, 1, errors, concurrency_key, second_concurrency_key, attrs"
    " FROM bg_jobs_blocked WHERE id = ?1";
const char sql_blocked_delete[] = "DELETE FROM bg_jobs_blocked WHERE id = ?1";

const char sql_cancel_running[] = "UPDATE jobs SET cancel_reason = ?2"
                                  " WHERE id = ?1 AND reserved_by IS NOT NULL";

#define BG_JOBS_RETRY_FROM_FAILED                                              \
  "INSERT INTO jobs (id, name, payload, attempts, created_at, available_at,"   \
  " priority, errors, last_error, concurrency_key, second_concurrency_key,"   \
  " attrs)"                                                                   \
  " SELECT id, name, payload, 0, created_at, ?2, priority, errors, exception," \
  " concurrency_key, second_concurrency_key, attrs FROM jobs_failed"

const char sql_retry_one[] = BG_JOBS_RETRY_FROM_FAILED " WHERE id = ?1";
const char sql_retry_one_delete[] = "DELETE FROM jobs_failed WHERE id = ?1";
const char sql_retry_name[] =
    BG_JOBS_RETRY_FROM_FAILED " WHERE name = ?1 AND cancelled = 0";
const char sql_retry_name_delete[] =
    "DELETE FROM jobs_failed WHERE name = ?1 AND cancelled = 0";

const char sql_pause[] =
    "INSERT INTO bg_jobs_paused (kind, name, paused_at) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (kind, name) DO NOTHING";
// A paused schedule's waiting occurrence is skipped (cancelled).
const char sql_pause_schedule_skip[] =
    "INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
    " created_at, available_at, failed_at, priority, cancelled, errors,"
    " concurrency_key, second_concurrency_key, attrs)"
    " SELECT id, name, payload, attempts, 'skipped: the schedule is paused',"
    " created_at, available_at, ?2, priority, 1, errors, concurrency_key,"
    " second_concurrency_key, attrs FROM jobs"
    " WHERE reserved_by IS NULL AND id IN (SELECT job_id FROM"
    "   bg_jobs_schedule WHERE name = ?1)";
const char sql_pause_schedule_delete[] =
    "DELETE FROM jobs WHERE reserved_by IS NULL AND id IN"
    " (SELECT job_id FROM bg_jobs_schedule WHERE name = ?1)";

const char sql_resume[] =
    "DELETE FROM bg_jobs_paused WHERE kind = ?1 AND name = ?2";
const char sql_pauses[] =
    "SELECT kind, name, paused_at FROM bg_jobs_paused ORDER BY kind, name";

const char sql_stats_by_name[] =
    "SELECT name, sum(w), sum(s), sum(r), sum(su), sum(f), sum(c), min(o)"
    " FROM (SELECT name,"
    "   sum(reserved_by IS NULL AND available_at <= ?1) AS w,"
    "   sum(reserved_by IS NULL AND available_at > ?1) AS s,"
    "   sum(reserved_by IS NOT NULL) AS r, 0 AS su, 0 AS f, 0 AS c,"
    "   min(CASE WHEN reserved_by IS NULL AND available_at <= ?1"
    "       THEN available_at END) AS o"
    "   FROM jobs GROUP BY name"
    " UNION ALL SELECT name, 0, 0, 0, count(*), 0, 0, NULL"
    "   FROM jobs_succeeded GROUP BY name"
    " UNION ALL SELECT name, 0, 0, 0, 0, sum(cancelled = 0),"
    "   sum(cancelled = 1), NULL FROM jobs_failed GROUP BY name)"
    " GROUP BY name ORDER BY name";

/// The statement of one page of `list_jobs`: ?1 now, ?2 names (JSON) or
/// NULL, ?3 to ?5 the key after which the page starts, ?6 the row limit,
/// ?7 the tag or NULL.
const char* sql_list(job_state state, bool newest_first, bool after) {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> result;
    for (int st = 0; st < 7; ++st)
      for (int desc = 0; desc < 2; ++desc)
        for (int aft = 0; aft < 2; ++aft) {
          std::string from, where, key;
          switch (static_cast<job_state>(st)) {
          case job_state::waiting:
          case job_state::scheduled:
            from = BG_JOBS_RECORD_OF_JOBS;
            where = st == 0 ? "reserved_by IS NULL AND available_at <= ?1"
                            : "reserved_by IS NULL AND available_at > ?1";
            key = "priority, available_at, id";
            break;
          case job_state::running:
            from = BG_JOBS_RECORD_OF_JOBS;
            where = "reserved_by IS NOT NULL";
            key = "reserved_at, id";
            break;
          case job_state::succeeded:
            from = BG_JOBS_RECORD_OF_SUCCEEDED;
            where = "1";
            key = "succeeded_at, id";
            break;
          case job_state::failed:
          case job_state::cancelled:
            from = BG_JOBS_RECORD_OF_FAILED;
            where = st == 4 ? "cancelled = 0" : "cancelled = 1";
            key = "failed_at, id";
            break;
          case job_state::blocked:
            from = BG_JOBS_RECORD_OF_BLOCKED;
            where = "1";
            key = "priority, available_at, id";
            break;
          }
          auto sql = from + " WHERE " + where +
                     " AND (?2 IS NULL OR name IN"
                     " (SELECT value FROM json_each(?2)))"
                     " AND (?7 IS NULL OR CASE WHEN json_valid(attrs) THEN"
                     " EXISTS (SELECT 1 FROM json_each(attrs, '$.tags')"
                     " WHERE value = ?7) ELSE 0 END)";
          bool three = key.rfind("priority", 0) == 0;
          if (aft)
            sql += std::string{" AND ("} + key + ") " + (desc ? "<" : ">") +
                   (three ? " (?3, ?4, ?5)" : " (?4, ?5)");
          sql += sql_order_by(key, desc) + " LIMIT ?6";
          result.push_back(std::move(sql));
        }
    return result;
  }();
  auto index = (static_cast<size_t>(state) * 2 + (newest_first ? 1 : 0)) * 2 +
               (after ? 1 : 0);
  return table[index].c_str();
}

} // namespace

caf::expected<void> sqlite_adapter::delete_job(int64_t job_id) {
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return r;
  // A workflow's task that has not run is cancelled first, so that the
  // tasks after it see it end as their policy says.
  {
    static const std::string reason = "deleted";
    auto now = to_unix_ms(options_.clock->now());
    auto by_id = [&](statement& q) { q.bind(1, job_id); };
    auto cancel = [&](statement& q) {
      q.bind(1, job_id).bind(2, reason).bind(3, now);
    };
    auto is_task = prepare("SELECT 1 FROM bg_jobs_tasks WHERE job_id = ?1"
                           " AND state IN ('blocked', 'held', 'ready')");
    if (!is_task)
      return std::move(is_task.error());
    bool task = false;
    {
      statement q{*is_task};
      q.bind(1, job_id);
      task = q.step() == SQLITE_ROW;
    }
    if (task) {
      auto moved = move_rows(sql_cancel_waiting, sql_delete, cancel, by_id,
                             "deleting a job");
      if (moved && *moved == 0)
        moved = move_rows(sql_cancel_blocked, sql_blocked_delete, cancel,
                          by_id, "deleting a job");
      if (!moved)
        return std::move(moved.error());
      if (auto settled = settle_tasks(now); !settled)
        return std::move(settled.error());
    }
  }
  static const char* const deletes[] = {
      "DELETE FROM jobs WHERE id = ?1 AND reserved_by IS NULL",
      "DELETE FROM jobs_succeeded WHERE id = ?1",
      "DELETE FROM jobs_failed WHERE id = ?1",
  };
  for (auto sql : deletes) {
    auto s = prepare(sql);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, job_id);
    if (int rc = q.step(); rc != SQLITE_DONE)
      return failure(rc, "deleting a job");
    if (sqlite3_changes(db_) > 0) {
      // A waiting job (one retried after it reported) has no history row
      // whose removal takes its progress along.
      auto gone = prepare("DELETE FROM bg_jobs_progress WHERE job_id = ?1");
      if (!gone)
        return std::move(gone.error());
      statement g{*gone};
      g.bind(1, job_id);
      if (int rc = g.step(); rc != SQLITE_DONE)
        return failure(rc, "deleting a job");
      return tx.commit();
    }
  }
  auto running = query_jobs(
      sql_job_by_id, [&](statement& q) { q.bind(1, job_id); }, false);
  if (!running)
    return std::move(running.error());
  if (!running->empty())
    return make_error(errc::invalid_state,
                      "job " + std::to_string(job_id) +
                          " is running; it cannot be deleted");
  return make_error(errc::job_not_found,
                    "no job " + std::to_string(job_id) + " to delete");
}

caf::expected<job_stats> sqlite_adapter::stats() {
  auto s = prepare(sql_stats);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, to_unix_ms(options_.clock->now()));
  if (int rc = q.step(); rc != SQLITE_ROW)
    return failure(rc, "reading job counts");
  job_stats st;
  st.available = sqlite3_column_int64(q.get(), 0);
  st.scheduled = sqlite3_column_int64(q.get(), 1);
  st.reserved = sqlite3_column_int64(q.get(), 2);
  st.succeeded = sqlite3_column_int64(q.get(), 3);
  st.failed = sqlite3_column_int64(q.get(), 4);
  st.cancelled = sqlite3_column_int64(q.get(), 5);
  return st;
}

namespace {

job_record read_record(sqlite3_stmt* s) {
  job_record r;
  r.id = sqlite3_column_int64(s, 0);
  r.name = column_text(s, 1);
  r.payload =
      parse_payload(sqlite3_column_text(s, 2), sqlite3_column_bytes(s, 2));
  r.priority = sqlite3_column_int(s, 3);
  r.attempts = sqlite3_column_int(s, 4);
  r.state = static_cast<job_state>(sqlite3_column_int(s, 5));
  r.created_at = column_time(s, 6);
  r.available_at = column_time(s, 7);
  r.reserved_at = column_time_or_null(s, 8);
  r.reserved_by = column_text_or_null(s, 9);
  r.finished_at = column_time_or_null(s, 10);
  r.error = column_text_or_null(s, 11);
  r.cancel_reason = column_text_or_null(s, 12);
  if (sqlite3_column_type(s, 13) != SQLITE_NULL) {
    auto errors =
        parse_payload(sqlite3_column_text(s, 13), sqlite3_column_bytes(s, 13));
    if (errors.is_array())
      r.errors = std::move(errors);
  }
  r.concurrency_key = column_text_or_null(s, 14).value_or("");
  r.second_concurrency_key = column_text_or_null(s, 15).value_or("");
  if (sqlite3_column_type(s, 16) != SQLITE_NULL)
    detail::read_attrs(column_text(s, 16), r);
  return r;
}

} // namespace

caf::expected<std::optional<job_record>>
sqlite_adapter::record_of(int64_t job_id) {
  auto s = prepare(sql_record_by_id);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, to_unix_ms(options_.clock->now())).bind(2, job_id);
  int rc = q.step();
  if (rc == SQLITE_DONE)
    return std::optional<job_record>{};
  if (rc != SQLITE_ROW)
    return failure(rc, "reading a job");
  return std::optional<job_record>{read_record(q.get())};
}

namespace {

caf::error wrong_state(const char* op, const job_record& r) {
  return make_error(errc::invalid_state, "job " + std::to_string(r.id) +
                                             " is " + to_string(r.state) +
                                             "; " + op);
}

caf::error no_job(int64_t id) {
  return make_error(errc::job_not_found, "no job " + std::to_string(id));
}

} // namespace

caf::expected<int>
sqlite_adapter::move_rows(const char* copy, const char* remove,
                          const std::function<void(statement&)>& bind_copy,
                          const std::function<void(statement&)>& bind_remove,
                          const char* what) {
  auto copied = execute(copy, bind_copy, what);
  if (!copied || *copied == 0)
    return copied;
  if (auto removed = execute(remove, bind_remove, what); !removed)
    return std::move(removed.error());
  return copied;
}

caf::expected<job_record> sqlite_adapter::changed_record(transaction& tx,
                                                         int64_t job_id,
                                                         bool changed,
                                                         const char* refusal) {
  auto rec = record_of(job_id);
  if (!rec)
    return std::move(rec.error());
  if (!*rec)
    return no_job(job_id);
  if (!changed)
    return wrong_state(refusal, **rec);
  if (auto r = tx.commit(); !r)
    return std::move(r.error());
  return std::move(**rec);
}

caf::expected<job_record>
sqlite_adapter::cancel_job(int64_t job_id, const std::string& reason) {
  if (auto err = check_reason(reason))
    return err;
  auto why = reason.empty() ? std::string{"cancelled"} : reason;
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return std::move(r.error());
  auto now = to_unix_ms(options_.clock->now());
  auto by_id = [&](statement& q) { q.bind(1, job_id); };
  auto changed = move_rows(
      sql_cancel_waiting, sql_delete,
      [&](statement& q) { q.bind(1, job_id).bind(2, why).bind(3, now); }, by_id,
      "cancelling a job");
  if (changed && *changed == 0)
    changed = execute(
        sql_cancel_running,
        [&](statement& q) { q.bind(1, job_id).bind(2, why); },
        "cancelling a job");
  if (changed && *changed == 0)
    changed = move_rows(
        sql_cancel_blocked, sql_blocked_delete,
        [&](statement& q) { q.bind(1, job_id).bind(2, why).bind(3, now); },
        by_id, "cancelling a job");
  // A workflow's task cancelled may doom the tasks after it.
  if (changed && *changed > 0)
    if (auto settled = settle_tasks(now); !settled)
      return std::move(settled.error());
  if (!changed)
    return std::move(changed.error());
  return changed_record(tx, job_id, *changed > 0,
                        "only a waiting or running job can be cancelled");
}

caf::expected<job_record> sqlite_adapter::retry_job(int64_t job_id) {
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return std::move(r.error());
  auto now = to_unix_ms(options_.clock->now());
  auto moved = move_rows(
      sql_retry_one, sql_retry_one_delete,
      [&](statement& q) { q.bind(1, job_id).bind(2, now); },
      [&](statement& q) { q.bind(1, job_id); }, "retrying a job");
  if (!moved)
    return std::move(moved.error());
  return changed_record(tx, job_id, *moved > 0,
                        "only a failed or cancelled job can be retried");
}

caf::expected<int64_t> sqlite_adapter::retry_failed(const std::string& name) {
  if (auto why = name_problem(name); !why.empty())
    return make_error(errc::invalid_job_name,
                      "job name '" + printable(name) + "' " + why);
  auto now = to_unix_ms(options_.clock->now());
  return in_transaction([&]() -> caf::expected<int64_t> {
    auto moved = move_rows(
        sql_retry_name, sql_retry_name_delete,
        [&](statement& q) { q.bind(1, name).bind(2, now); },
        [&](statement& q) { q.bind(1, name); }, "retrying failed jobs");
    if (!moved)
      return std::move(moved.error());
    return int64_t{*moved};
  });
}

caf::expected<void> sqlite_adapter::pause(pause_kind kind,
                                          const std::string& name) {
  if (auto err = check_pause_name(kind, name))
    return err;
  std::string k = to_string(kind);
  auto now = to_unix_ms(options_.clock->now());
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return r;
  auto r = execute(
      sql_pause, [&](statement& q) { q.bind(1, k).bind(2, name).bind(3, now); },
      "pausing");
  if (!r)
    return std::move(r.error());
  if (kind == pause_kind::schedule)
    for (auto sql : {sql_pause_schedule_skip, sql_pause_schedule_delete}) {
      auto skipped = execute(
          sql, [&](statement& q) { q.bind(1, name).bind(2, now); }, "pausing");
      if (!skipped)
        return std::move(skipped.error());
    }
  return tx.commit();
}

caf::expected<void> sqlite_adapter::resume(pause_kind kind,
                                           const std::string& name) {
  if (auto err = check_pause_name(kind, name))
    return err;
  std::string k = to_string(kind);
  auto r = execute(
      sql_resume, [&](statement& q) { q.bind(1, k).bind(2, name); },
      "resuming");
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<std::vector<pause_record>> sqlite_adapter::pauses() {
  auto s = prepare(sql_pauses);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  std::vector<pause_record> result;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    pause_record p;
    p.kind = column_text(q.get(), 0) == "queue" ? pause_kind::queue
                                                : pause_kind::schedule;
    p.name = column_text(q.get(), 1);
    p.paused_at = column_time(q.get(), 2);
    result.push_back(std::move(p));
  }
  if (rc != SQLITE_DONE)
    return failure(rc, "reading pauses");
  return result;
}

caf::expected<std::vector<name_stats>> sqlite_adapter::stats_by_name() {
  auto s = prepare(sql_stats_by_name);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, to_unix_ms(options_.clock->now()));
  std::vector<name_stats> result;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    name_stats n;
    n.name = column_text(q.get(), 0);
    n.counts.available = sqlite3_column_int64(q.get(), 1);
    n.counts.scheduled = sqlite3_column_int64(q.get(), 2);
    n.counts.reserved = sqlite3_column_int64(q.get(), 3);
    n.counts.succeeded = sqlite3_column_int64(q.get(), 4);
    n.counts.failed = sqlite3_column_int64(q.get(), 5);
    n.counts.cancelled = sqlite3_column_int64(q.get(), 6);
    if (sqlite3_column_type(q.get(), 7) != SQLITE_NULL)
      n.oldest_waiting = column_time(q.get(), 7);
    result.push_back(std::move(n));
  }
  if (rc != SQLITE_DONE)
    return failure(rc, "reading job counts");
  return result;
}

caf::expected<job_page> sqlite_adapter::list_jobs(const job_query& query) {
  auto start = start_of(query);
  if (!start)
    return std::move(start.error());
  auto after = *start;
  auto s =
      prepare(sql_list(query.state, query.newest_first, after.has_value()));
  if (!s)
    return std::move(s.error());
  statement q{*s};
  auto names = nlohmann::json(query.names).dump();
  q.bind(1, to_unix_ms(options_.clock->now()));
  if (!query.names.empty())
    q.bind(2, names);
  else
    q.bind(2, std::optional<std::string>{});
  if (after)
    q.bind(3, int64_t{after->priority})
        .bind(4, after->at_ms)
        .bind(5, after->id);
  q.bind(6, int64_t{query.limit + 1});
  if (!query.tag.empty())
    q.bind(7, query.tag);
  job_page page;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    page.jobs.push_back(read_record(q.get()));
  if (rc != SQLITE_DONE)
    return failure(rc, "listing jobs");
  finish_page(page, query);
  return page;
}

caf::expected<std::vector<finished_bucket>>
sqlite_adapter::finished_per_bucket(timestamp since,
                                    std::chrono::milliseconds bucket) {
  if (bucket.count() <= 0)
    return make_error(errc::invalid_argument, "the bucket must be positive");
  auto s = prepare("SELECT (succeeded_at / ?2) * ?2, count(*), 0"
                   " FROM jobs_succeeded WHERE succeeded_at >= ?1"
                   " GROUP BY 1"
                   " UNION ALL SELECT (failed_at / ?2) * ?2, 0, count(*)"
                   " FROM jobs_failed WHERE failed_at >= ?1 GROUP BY 1");
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, to_unix_ms(since)).bind(2, int64_t{bucket.count()});
  std::vector<std::tuple<int64_t, int64_t, int64_t>> rows;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    rows.emplace_back(sqlite3_column_int64(q.get(), 0),
                      sqlite3_column_int64(q.get(), 1),
                      sqlite3_column_int64(q.get(), 2));
  if (rc != SQLITE_DONE)
    return failure(rc, "counting finished jobs");
  return merge_buckets(rows);
}

caf::expected<job_record> sqlite_adapter::get_job(int64_t job_id) {
  auto rec = record_of(job_id);
  if (!rec)
    return std::move(rec.error());
  if (!*rec)
    return no_job(job_id);
  auto s = prepare("SELECT output FROM bg_jobs_outputs WHERE job_id = ?1");
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, job_id);
  if (q.step() == SQLITE_ROW)
    (*rec)->output =
        parse_payload(sqlite3_column_text(q.get(), 0),
                      sqlite3_column_bytes(q.get(), 0));
  auto p = prepare("SELECT attempt, fraction, text, updated_at"
                   " FROM bg_jobs_progress WHERE job_id = ?1");
  if (!p)
    return std::move(p.error());
  statement pq{*p};
  pq.bind(1, job_id);
  if (pq.step() == SQLITE_ROW) {
    job_progress x;
    x.attempt = sqlite3_column_int(pq.get(), 0);
    x.fraction = sqlite3_column_double(pq.get(), 1);
    x.text = column_text(pq.get(), 2);
    x.at = from_unix_ms(sqlite3_column_int64(pq.get(), 3));
    (*rec)->progress = std::move(x);
  }
  return std::move(**rec);
}

} // namespace bg_jobs
