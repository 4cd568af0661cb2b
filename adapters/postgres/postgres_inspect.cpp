// What operators do and see on PostgreSQL: job records, listings, counts,
// cancel, retry, delete, pause and resume.

#include "bg_jobs/adapters/postgres/detail/postgres_internal.hpp"

namespace bg_jobs {

using namespace detail::postgres;

caf::expected<void> postgres_adapter::delete_job(int64_t job_id) {
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("deleting a job", [&](pqxx::work& tx) {
    // A workflow's task that has not run is cancelled first, so that the
    // tasks after it see it end as their policy says.
    if (!tx.exec_params("SELECT 1 FROM bg_jobs_tasks WHERE job_id = $1"
                        " AND state IN ('blocked', 'held', 'ready')",
                        job_id)
             .empty()) {
      if (tx.exec_params(
                "WITH m AS (DELETE FROM jobs WHERE id = $1"
                "   AND reserved_by IS NULL RETURNING *)"
                " INSERT INTO jobs_failed (id, name, payload, attempts,"
                "   exception, created_at, available_at, failed_at, priority,"
                "   cancelled, errors, concurrency_key, second_concurrency_key,"
                "   attrs)"
                " SELECT id, name, payload, attempts, 'deleted', created_at,"
                "   available_at, " BG_JOBS_TS("$2") ", priority, true, errors,"
                "   concurrency_key, second_concurrency_key, attrs FROM m",
                job_id, now)
              .affected_rows() == 0)
        cancel_blocked(tx, job_id, "deleted", now);
    }
    for (auto sql : {"DELETE FROM jobs WHERE id = $1 AND reserved_by IS NULL",
                     "DELETE FROM jobs_succeeded WHERE id = $1",
                     "DELETE FROM jobs_failed WHERE id = $1"})
      if (tx.exec_params(sql, job_id).affected_rows() > 0) {
        // A waiting job (one retried after it reported) has no history
        // row whose removal takes its progress along.
        tx.exec_params("DELETE FROM bg_jobs_progress WHERE job_id = $1",
                       job_id);
        return 0;
      }
    return tx.exec_params("SELECT 1 FROM jobs WHERE id = $1", job_id).empty()
               ? 2
               : 1;
  });
  if (!r)
    return std::move(r.error());
  if (*r == 1)
    return make_error(errc::invalid_state,
                      "job " + std::to_string(job_id) +
                          " is running; it cannot be deleted");
  if (*r == 2)
    return make_error(errc::job_not_found,
                      "no job " + std::to_string(job_id) + " to delete");
  return caf::unit;
}

namespace {

/// The size of a history table as the planner sees it: its row estimate
/// scaled to the table's current number of pages.
struct history_size {
  double rows = 0;
  bool estimated = false;
};

history_size size_of(pqxx::transaction_base& tx, const char* table) {
  auto r = tx.exec_params(
      "SELECT c.reltuples::float8, c.relpages::float8,"
      " (pg_relation_size(c.oid) / current_setting('block_size')::int)::float8"
      " FROM pg_class c WHERE c.oid = $1::regclass",
      table)[0];
  auto tuples = r[0].as<double>(), pages = r[1].as<double>(),
       now_pages = r[2].as<double>();
  history_size size;
  // Never analyzed (-1): about 30 history rows to a page.
  size.rows = tuples < 0 ? now_pages * 30
              : pages > 0 ? tuples / pages * now_pages
                          : tuples;
  size.estimated = size.rows > job_stats::exact_history_rows;
  return size;
}

/// The share of each job name among a history table's rows, from the
/// planner's most common values (empty before the first ANALYZE).
std::map<std::string, double> name_shares(pqxx::transaction_base& tx,
                                          const char* table) {
  std::map<std::string, double> shares;
  auto rows = tx.exec_params(
      "SELECT m.v, m.f FROM pg_stats s"
      " JOIN pg_class c ON c.oid = $1::regclass"
      " JOIN pg_namespace n ON n.oid = c.relnamespace"
      " CROSS JOIN LATERAL unnest(s.most_common_vals::text::text[],"
      "   s.most_common_freqs) AS m(v, f)"
      " WHERE s.schemaname = n.nspname AND s.tablename = c.relname"
      "   AND s.attname = 'name'",
      table);
  for (const auto& r : rows)
    shares[r[0].as<std::string>()] = r[1].as<double>();
  return shares;
}

/// The share of cancelled rows in `jobs_failed`, from the statistics.
double cancelled_share(pqxx::transaction_base& tx) {
  auto rows = tx.exec(
      "SELECT m.v, m.f FROM pg_stats s"
      " JOIN pg_class c ON c.oid = 'jobs_failed'::regclass"
      " JOIN pg_namespace n ON n.oid = c.relnamespace"
      " CROSS JOIN LATERAL unnest(s.most_common_vals::text::boolean[],"
      "   s.most_common_freqs) AS m(v, f)"
      " WHERE s.schemaname = n.nspname AND s.tablename = c.relname"
      "   AND s.attname = 'cancelled'");
  for (const auto& r : rows)
    if (r[0].as<bool>())
      return r[1].as<double>();
  return 0;
}

int64_t rounded(double x) { return static_cast<int64_t>(x + 0.5); }

} // namespace

// Counts read in one REPEATABLE READ snapshot. The history tables can hold
// millions of rows: counting them would scan them whole at every refresh
// of a dashboard, so past `exact_history_rows` they are estimated.
caf::expected<job_stats> postgres_adapter::stats() {
  try {
    pqxx::transaction<pqxx::repeatable_read,
                      pqxx::read_only>
        tx{*impl_->conn};
    auto r = tx.exec_prepared("bgj_stats_live", impl_->now_ms())[0];
    job_stats st;
    st.available = r[0].as<int64_t>();
    st.scheduled = r[1].as<int64_t>();
    st.reserved = r[2].as<int64_t>();
    auto succeeded = size_of(tx, "jobs_succeeded");
    if (succeeded.estimated)
      st.succeeded = rounded(succeeded.rows);
    else
      st.succeeded =
          tx.exec("SELECT count(*) FROM jobs_succeeded")[0][0].as<int64_t>();
    auto failed = size_of(tx, "jobs_failed");
    if (failed.estimated) {
      auto share = cancelled_share(tx);
      st.cancelled = rounded(failed.rows * share);
      st.failed = rounded(failed.rows) - st.cancelled;
    } else {
      auto c = tx.exec("SELECT count(*) FILTER (WHERE NOT cancelled),"
                       " count(*) FILTER (WHERE cancelled) FROM jobs_failed")[0];
      st.failed = c[0].as<int64_t>();
      st.cancelled = c[1].as<int64_t>();
    }
    st.history_estimated = succeeded.estimated || failed.estimated;
    tx.commit();
    return st;
  } catch (...) {
    return failure("reading job counts");
  }
}

// -- job control
// -----------------------------------------------------------------

namespace {

// Job records: the same 17 columns from each table ($1 is now in ms).
// clang-format off
#define BG_JOBS_PG_RECORD_OF_JOBS                                              \
  "SELECT id, name, payload, priority, attempts,"                              \
  " CASE WHEN reserved_by IS NOT NULL THEN 2"                                  \
  "      WHEN available_at > " BG_JOBS_TS("$1") " THEN 1 ELSE 0 END, "         \
  BG_JOBS_MS("created_at") ", " BG_JOBS_MS("available_at") ", "                \
  BG_JOBS_MS("reserved_at") ", reserved_by, NULL::bigint, last_error,"         \
  " cancel_reason, errors::text, concurrency_key, second_concurrency_key,"    \
  " attrs FROM jobs"
#define BG_JOBS_PG_RECORD_OF_SUCCEEDED                                         \
  "SELECT id, name, payload, priority, attempts, 3, "                          \
  BG_JOBS_MS("created_at") ", " BG_JOBS_MS("available_at") ", NULL::bigint,"   \
  " NULL, " BG_JOBS_MS("succeeded_at") ", NULL, NULL, errors::text,"           \
  " NULL, NULL, attrs FROM jobs_succeeded"
#define BG_JOBS_PG_RECORD_OF_FAILED                                            \
  "SELECT id, name, payload, priority, attempts,"                              \
  " CASE WHEN cancelled THEN 5 ELSE 4 END, " BG_JOBS_MS("created_at") ", "     \
  BG_JOBS_MS("available_at") ", NULL::bigint, NULL, "                          \
  BG_JOBS_MS("failed_at") ", exception, NULL, errors::text, concurrency_key,"  \
  " second_concurrency_key, attrs FROM jobs_failed"
#define BG_JOBS_PG_RECORD_OF_BLOCKED                                           \
  "SELECT id, name, payload, priority, attempts, 6, "                          \
  BG_JOBS_MS("created_at") ", " BG_JOBS_MS("available_at") ", NULL::bigint,"   \
  " NULL, NULL::bigint, last_error, NULL, errors::text, concurrency_key,"      \
  " second_concurrency_key, attrs FROM bg_jobs_blocked"
const char pg_record_by_id[] = BG_JOBS_PG_RECORD_OF_JOBS
    " WHERE id = $2"
    " UNION ALL " BG_JOBS_PG_RECORD_OF_SUCCEEDED " WHERE id = $2"
    " UNION ALL " BG_JOBS_PG_RECORD_OF_FAILED " WHERE id = $2"
    " UNION ALL " BG_JOBS_PG_RECORD_OF_BLOCKED " WHERE id = $2";

#define BG_JOBS_PG_RETRY_FROM(m)                                               \
  " INSERT INTO jobs (id, name, payload, attempts, created_at, available_at,"  \
  " priority, errors, last_error, concurrency_key, second_concurrency_key,"   \
  " attrs)"                                                                    \
  " SELECT id, name, payload, 0, created_at, " BG_JOBS_TS("$2") ", priority,"  \
  " errors, exception, concurrency_key, second_concurrency_key, attrs"         \
  " FROM " m

const char pg_stats_live_by_name[] =
    "SELECT name,"
    "   count(*) FILTER (WHERE reserved_by IS NULL"
    "     AND available_at <= " BG_JOBS_TS("$1") "),"
    "   count(*) FILTER (WHERE reserved_by IS NULL"
    "     AND available_at > " BG_JOBS_TS("$1") "),"
    "   count(*) FILTER (WHERE reserved_by IS NOT NULL), "
    BG_JOBS_MS("min(available_at) FILTER (WHERE reserved_by IS NULL"
               "     AND available_at <= " BG_JOBS_TS("$1") ")")
    " FROM jobs GROUP BY name";

// A paused schedule's waiting occurrence is skipped (cancelled).
const char pg_skip_paused_schedule[] =
    "WITH m AS (DELETE FROM jobs WHERE reserved_by IS NULL AND id = ANY"
    "   (ARRAY(SELECT job_id FROM bg_jobs_schedule WHERE name = $1))"
    "   RETURNING *)"
    " INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
    "   created_at, available_at, failed_at, priority, cancelled, errors,"
    "   concurrency_key, second_concurrency_key, attrs)"
    " SELECT id, name, payload, attempts, 'skipped: the schedule is paused',"
    "   created_at, available_at, " BG_JOBS_TS("$2") ", priority, true, errors,"
    "   concurrency_key, second_concurrency_key, attrs FROM m";
// clang-format on

job_record read_record(const pqxx::row& r) {
  job_record rec;
  rec.id = r[0].as<int64_t>();
  rec.name = r[1].as<std::string>();
  rec.payload = parse_payload(r[2]);
  rec.priority = r[3].as<int>();
  rec.attempts = r[4].as<int>();
  rec.state = static_cast<job_state>(r[5].as<int>());
  rec.created_at = field_time(r[6]);
  rec.available_at = field_time(r[7]);
  if (!r[8].is_null())
    rec.reserved_at = field_time(r[8]);
  if (!r[9].is_null())
    rec.reserved_by = r[9].as<std::string>();
  if (!r[10].is_null())
    rec.finished_at = field_time(r[10]);
  if (!r[11].is_null())
    rec.error = r[11].as<std::string>();
  if (!r[12].is_null())
    rec.cancel_reason = r[12].as<std::string>();
  if (!r[13].is_null()) {
    auto errors = parse_payload(r[13]);
    if (errors.is_array())
      rec.errors = std::move(errors);
  }
  if (!r[14].is_null())
    rec.concurrency_key = r[14].as<std::string>();
  if (!r[15].is_null())
    rec.second_concurrency_key = r[15].as<std::string>();
  if (!r[16].is_null())
    detail::read_attrs(std::string_view{r[16].c_str(), r[16].size()}, rec);
  return rec;
}

std::optional<job_record> record_in(pqxx::transaction_base& tx, int64_t now,
                                    int64_t job_id) {
  auto r = tx.exec_params(pg_record_by_id, now, job_id);
  if (r.empty())
    return std::nullopt;
  return read_record(r[0]);
}

/// The outcome of a state change: the record after it, or why not.
struct change_result {
  std::optional<job_record> record;
  bool changed = false;
};

caf::expected<job_record> settle(caf::expected<change_result> r, int64_t id,
                                 const char* op) {
  if (!r)
    return std::move(r.error());
  if (!r->record)
    return make_error(errc::job_not_found, "no job " + std::to_string(id));
  if (!r->changed)
    return make_error(errc::invalid_state,
                      "job " + std::to_string(id) + " is " +
                          to_string(r->record->state) + "; " + op);
  return std::move(*r->record);
}

/// The statement of one page of `list_jobs`: $1 now, $2 names (JSON) or
/// NULL, $3 to $5 the key after which the page starts, $6 the row limit,
/// $7 the tag or NULL.
std::string pg_list(job_state state, bool desc, bool after) {
  std::string from, where, order, cmp;
  switch (state) {
  case job_state::waiting:
  case job_state::scheduled:
    from = BG_JOBS_PG_RECORD_OF_JOBS;
    where = state == job_state::waiting
                ? "reserved_by IS NULL AND available_at <= " BG_JOBS_TS("$1")
                : "reserved_by IS NULL AND available_at > " BG_JOBS_TS("$1");
    order = "priority, available_at, id";
    cmp = "(priority, available_at, id) %s ($3::integer, " BG_JOBS_TS(
        "$4") ", $5::bigint)";
    break;
  case job_state::running:
    from = BG_JOBS_PG_RECORD_OF_JOBS;
    where = "reserved_by IS NOT NULL";
    order = "reserved_at, id";
    cmp = "(reserved_at, id) %s (" BG_JOBS_TS("$4") ", $5::bigint)";
    break;
  case job_state::succeeded:
    from = BG_JOBS_PG_RECORD_OF_SUCCEEDED;
    where = "true";
    order = "succeeded_at, id";
    cmp = "(succeeded_at, id) %s (" BG_JOBS_TS("$4") ", $5::bigint)";
    break;
  case job_state::failed:
  case job_state::cancelled:
    from = BG_JOBS_PG_RECORD_OF_FAILED;
    where = state == job_state::failed ? "NOT cancelled" : "cancelled";
    order = "failed_at, id";
    cmp = "(failed_at, id) %s (" BG_JOBS_TS("$4") ", $5::bigint)";
    break;
  case job_state::blocked:
    from = BG_JOBS_PG_RECORD_OF_BLOCKED;
    where = "true";
    order = "priority, available_at, id";
    cmp = "(priority, available_at, id) %s ($3::integer, " BG_JOBS_TS(
        "$4") ", $5::bigint)";
    break;
  }
  // Every parameter is typed even where the state leaves it unused.
  auto sql = from + " WHERE " + where +
             " AND ($1::bigint, $3::integer, $4::bigint, $5::bigint)"
             " IS NOT NULL AND ($2::json IS NULL OR name = ANY"
             " (ARRAY(SELECT json_array_elements_text($2::json))))"
             " AND ($7::text IS NULL OR attrs -> 'tags' ? $7::text)";
  if (after) {
    auto at = cmp.find("%s");
    cmp.replace(at, 2, desc ? "<" : ">");
    sql += " AND " + cmp;
  }
  return sql + sql_order_by(order, desc) + " LIMIT $6";
}

} // namespace

caf::expected<job_record>
postgres_adapter::cancel_job(int64_t job_id, const std::string& reason) {
  if (auto err = check_reason(reason))
    return err;
  auto why = reason.empty() ? std::string{"cancelled"} : reason;
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("cancelling a job", [&](pqxx::work& tx) {
    change_result out;
    out.changed =
        tx.exec_params(
              "WITH m AS (DELETE FROM jobs WHERE id = $1"
              "   AND reserved_by IS NULL RETURNING *)"
              " INSERT INTO jobs_failed (id, name, payload, attempts,"
              "   exception, created_at, available_at, failed_at, priority,"
              "   cancelled, errors, concurrency_key, second_concurrency_key, attrs)"
              " SELECT id, name, payload, attempts, $2, created_at,"
              "   available_at, " BG_JOBS_TS("$3") ", priority, true, errors,"
              "   concurrency_key, second_concurrency_key, attrs FROM m",
              job_id, why, now)
            .affected_rows() > 0;
    if (!out.changed)
      out.changed = tx.exec_params("UPDATE jobs SET cancel_reason = $2"
                                   " WHERE id = $1 AND reserved_by IS NOT NULL",
                                   job_id, why)
                        .affected_rows() > 0;
    if (!out.changed)
      out.changed = cancel_blocked(tx, job_id, why, now);
    out.record = record_in(tx, now, job_id);
    return out;
  });
  return settle(std::move(r), job_id,
                "only a waiting or running job can be cancelled");
}

caf::expected<job_record> postgres_adapter::retry_job(int64_t job_id) {
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("retrying a job", [&](pqxx::work& tx) {
    change_result out;
    out.changed =
        tx.exec_params("WITH m AS (DELETE FROM jobs_failed WHERE id = $1"
                       " RETURNING *)" BG_JOBS_PG_RETRY_FROM(
                           "m") " RETURNING pg_notify($3, name)",
                       job_id, now, impl_->channel)
            .affected_rows() > 0;
    out.record = record_in(tx, now, job_id);
    return out;
  });
  return settle(std::move(r), job_id,
                "only a failed or cancelled job can be retried");
}

caf::expected<int64_t> postgres_adapter::retry_failed(const std::string& name) {
  if (auto why = name_problem(name); !why.empty())
    return make_error(errc::invalid_job_name,
                      "job name '" + printable(name) + "' " + why);
  auto now = impl_->now_ms();
  return impl_->in_transaction("retrying failed jobs", [&](pqxx::work& tx) {
    auto n = static_cast<int64_t>(
        tx.exec_params(
              "WITH m AS (DELETE FROM jobs_failed WHERE name = $1"
              " AND NOT cancelled RETURNING *)" BG_JOBS_PG_RETRY_FROM("m"),
              name, now)
            .affected_rows());
    if (n > 0)
      tx.exec_params("SELECT pg_notify($1, $2)", impl_->channel, name);
    return n;
  });
}

caf::expected<void> postgres_adapter::pause(pause_kind kind,
                                            const std::string& name) {
  if (auto err = check_pause_name(kind, name))
    return err;
  auto now = impl_->now_ms();
  auto r = impl_->in_transaction("pausing", [&](pqxx::work& tx) {
    if (kind == pause_kind::schedule)
      tx.exec_prepared("bgj_schedule_lock", name);
    tx.exec_params("INSERT INTO bg_jobs_paused (kind, name, paused_at)"
                   " VALUES ($1, $2, " BG_JOBS_TS(
                       "$3") ")"
                             " ON CONFLICT (kind, name) DO NOTHING",
                   std::string{to_string(kind)}, name, now);
    if (kind == pause_kind::schedule)
      tx.exec_params(pg_skip_paused_schedule, name, now);
    return 0;
  });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<void> postgres_adapter::resume(pause_kind kind,
                                             const std::string& name) {
  if (auto err = check_pause_name(kind, name))
    return err;
  auto r = impl_->in_statement("resuming", [&](pqxx::transaction_base& tx) {
    tx.exec_params("DELETE FROM bg_jobs_paused WHERE kind = $1 AND name = $2",
                   std::string{to_string(kind)}, name);
    // Wakes every node's queues: the resumed one may have work.
    tx.exec_params("SELECT pg_notify($1, '*')", impl_->channel);
    return 0;
  });
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<std::vector<pause_record>> postgres_adapter::pauses() {
  return impl_->in_statement("reading pauses", [&](pqxx::transaction_base& tx) {
    std::vector<pause_record> result;
    for (const auto& r : tx.exec("SELECT kind, name, " BG_JOBS_MS(
             "paused_at") " FROM bg_jobs_paused ORDER BY kind, name")) {
      pause_record p;
      p.kind = r[0].as<std::string>() == "queue" ? pause_kind::queue
                                                 : pause_kind::schedule;
      p.name = r[1].as<std::string>();
      p.paused_at = field_time(r[2]);
      result.push_back(std::move(p));
    }
    return result;
  });
}

caf::expected<std::vector<name_stats>> postgres_adapter::stats_by_name() {
  try {
    pqxx::transaction<pqxx::repeatable_read,
                      pqxx::read_only>
        tx{*impl_->conn};
    std::map<std::string, name_stats> by_name;
    auto entry = [&](const std::string& name) -> job_stats& {
      auto& n = by_name[name];
      n.name = name;
      return n.counts;
    };
    for (const auto& r : tx.exec_params(pg_stats_live_by_name,
                                        impl_->now_ms())) {
      auto& c = entry(r[0].as<std::string>());
      c.available = r[1].as<int64_t>();
      c.scheduled = r[2].as<int64_t>();
      c.reserved = r[3].as<int64_t>();
      if (!r[4].is_null())
        by_name[r[0].as<std::string>()].oldest_waiting = field_time(r[4]);
    }
    auto succeeded = size_of(tx, "jobs_succeeded");
    if (succeeded.estimated) {
      for (auto& [name, share] : name_shares(tx, "jobs_succeeded"))
        entry(name).succeeded = rounded(succeeded.rows * share);
    } else {
      for (const auto& r : tx.exec("SELECT name, count(*) FROM jobs_succeeded"
                                   " GROUP BY name"))
        entry(r[0].as<std::string>()).succeeded = r[1].as<int64_t>();
    }
    auto failed = size_of(tx, "jobs_failed");
    if (failed.estimated) {
      auto cancelled = cancelled_share(tx);
      for (auto& [name, share] : name_shares(tx, "jobs_failed")) {
        auto& c = entry(name);
        auto rows = failed.rows * share;
        c.cancelled = rounded(rows * cancelled);
        c.failed = rounded(rows) - c.cancelled;
      }
    } else {
      for (const auto& r : tx.exec(
               "SELECT name, count(*) FILTER (WHERE NOT cancelled),"
               " count(*) FILTER (WHERE cancelled) FROM jobs_failed"
               " GROUP BY name")) {
        auto& c = entry(r[0].as<std::string>());
        c.failed = r[1].as<int64_t>();
        c.cancelled = r[2].as<int64_t>();
      }
    }
    tx.commit();
    std::vector<name_stats> result;
    for (auto& [name, n] : by_name) {
      n.counts.history_estimated = succeeded.estimated || failed.estimated;
      // An estimate can round a name's share down to nothing.
      if (n.counts.total() > 0)
        result.push_back(std::move(n));
    }
    return result;
  } catch (...) {
    return failure("reading job counts");
  }
}

caf::expected<job_page> postgres_adapter::list_jobs(const job_query& query) {
  auto start = start_of(query);
  if (!start)
    return std::move(start.error());
  auto after = *start;
  auto sql = pg_list(query.state, query.newest_first, after.has_value());
  auto names = nlohmann::json(query.names).dump();
  const char* names_arg = query.names.empty() ? nullptr : names.c_str();
  page_key key = after.value_or(page_key{});
  auto page =
      impl_->in_statement("listing jobs", [&](pqxx::transaction_base& tx) {
        job_page result;
        for (const auto& r :
             tx.exec_params(sql, impl_->now_ms(), names_arg, key.priority,
                            key.at_ms, key.id, query.limit + 1,
                            query.tag.empty() ? nullptr : query.tag.c_str()))
          result.jobs.push_back(read_record(r));
        return result;
      });
  if (!page)
    return page;
  finish_page(*page, query);
  return page;
}

caf::expected<std::vector<finished_bucket>>
postgres_adapter::finished_per_bucket(timestamp since,
                                      std::chrono::milliseconds bucket) {
  if (bucket.count() <= 0)
    return make_error(errc::invalid_argument, "the bucket must be positive");
  return impl_->in_statement("counting finished jobs", [&](pqxx::
                                                               transaction_base&
                                                                   tx) {
    std::vector<std::tuple<int64_t, int64_t, int64_t>> rows;
    for (
        const auto& r : tx.exec_params(
            "SELECT (" BG_JOBS_MS(
                "succeeded_at") " / $2) * $2,"
                                " count(*), 0 FROM jobs_succeeded"
                                " WHERE succeeded_at >= " BG_JOBS_TS(
                                    "$1") " GROUP BY 1"
                                          " UNION ALL SELECT (" BG_JOBS_MS(
                                              "failed_at") " / $2) * $2,"
                                                           " 0, count(*) FROM jobs_failed"
                                                           " WHERE failed_at >= " BG_JOBS_TS(
                                                               "$1") " GROUP BY 1",
            to_unix_ms(since), bucket.count()))
      rows.emplace_back(r[0].as<int64_t>(), r[1].as<int64_t>(),
                        r[2].as<int64_t>());
    return merge_buckets(rows);
  });
}

caf::expected<job_record> postgres_adapter::get_job(int64_t job_id) {
  auto now = impl_->now_ms();
  auto r =
      impl_->in_statement("reading a job", [&](pqxx::transaction_base& tx) {
        change_result out;
        out.record = record_in(tx, now, job_id);
        out.changed = true;
        if (out.record) {
          auto o = tx.exec_params("SELECT output::text FROM bg_jobs_outputs"
                                  " WHERE job_id = $1",
                                  job_id);
          if (!o.empty())
            out.record->output = parse_payload(o[0][0]);
          auto p = tx.exec_params(
              "SELECT attempt, fraction, text, " BG_JOBS_MS("updated_at")
              " FROM bg_jobs_progress WHERE job_id = $1",
              job_id);
          if (!p.empty()) {
            job_progress x;
            x.attempt = p[0][0].as<int>();
            x.fraction = p[0][1].as<double>();
            x.text = p[0][2].as<std::string>();
            x.at = from_unix_ms(p[0][3].as<int64_t>());
            out.record->progress = std::move(x);
          }
        }
        return out;
      });
  return settle(std::move(r), job_id, "");
}

} // namespace bg_jobs
