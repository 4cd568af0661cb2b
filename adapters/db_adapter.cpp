#include "bg_jobs/adapters/db_adapter.hpp"

#include <limits>

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <set>
#include <string_view>

#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/parse.hpp"

namespace bg_jobs {

caf::expected<void> db_adapter::check_schema() {
  auto v = schema_version();
  if (!v)
    return std::move(v.error());
  if (*v == 0)
    return make_error(errc::schema_missing,
                      "the bg_jobs tables do not exist: run migrate_up");
  if (*v < schema_version_current)
    return make_error(
        errc::schema_missing,
        "schema version " + std::to_string(*v) + " is older than " +
            std::to_string(schema_version_current) + ": run migrate_up");
  if (*v > schema_version_current)
    return make_error(errc::schema_too_new,
                      "schema version " + std::to_string(*v) +
                          " is newer than this bg_jobs understands (" +
                          std::to_string(schema_version_current) + ")");
  return caf::unit;
}

caf::error check_limits(const std::string& queue,
                        const std::vector<concurrency_limit>& limits) {
  if (auto why = name_problem(queue); !why.empty())
    return make_error(errc::invalid_argument,
                      "queue name '" + printable(queue) + "' " + why);
  return check_limits(limits);
}

caf::error check_limit_change(const std::string& queue,
                              const concurrency_limit& limit) {
  if (limit.kind == limit_kind::rate)
    return make_error(errc::invalid_argument,
                      "a queue's rate limit is declared by the queue "
                      "(queue_spec::with_rate_limit); its numbers change "
                      "with set_rate_limit");
  auto checked = limit;
  if (checked.max_running == 0)
    checked.max_running = 1; // a removal: its kind and key are checked
  return check_limits(queue, {checked});
}

int limited_scan(int limit) {
  // The jobs of full keys are passed over before they count, so the jobs
  // wanted and a margin for keys with less room than ready jobs; bounded,
  // so that a claim costs the same whatever the backlog.
  return std::clamp(limit, 1, 500) + 32;
}

caf::expected<complete_reserve_result>
db_adapter::complete_and_reserve(const std::vector<completion>& completions,
                                 const reserve_params& params) {
  if (auto err = check_reserve(params))
    return err;
  complete_reserve_result result;
  if (!completions.empty()) {
    auto r = complete_jobs(completions);
    if (!r)
      return std::move(r.error());
    result.applied = std::move(*r);
  }
  auto jobs = reserve_jobs(params);
  if (!jobs) {
    if (completions.empty())
      return std::move(jobs.error());
    result.reserve_error = std::move(jobs.error());
    return result;
  }
  result.reserved = std::move(*jobs);
  return result;
}

caf::expected<std::vector<std::pair<int64_t, std::string>>>
db_adapter::cancels_asked(const std::string& reserved_by,
                          const std::vector<int64_t>& ids) {
  auto running = get_running_jobs_of_owner(reserved_by);
  if (!running)
    return std::move(running.error());
  std::set<int64_t> wanted(ids.begin(), ids.end());
  std::vector<std::pair<int64_t, std::string>> asked;
  for (auto& j : *running)
    if (j.cancel_reason && wanted.count(j.id) > 0)
      asked.emplace_back(j.id, *j.cancel_reason);
  std::sort(asked.begin(), asked.end());
  return asked;
}

caf::expected<vacuum_report> db_adapter::vacuum_jobs(int64_t) {
  return vacuum_report{};
}

caf::error db_adapter::check_reserve(const reserve_params& params) {
  if (params.limit <= 0)
    return make_error(errc::invalid_argument,
                      "reserve limit must be positive, got " +
                          std::to_string(params.limit));
  if (params.reserved_by.empty())
    return make_error(errc::invalid_argument, "reserved_by is empty");
  return caf::none;
}

caf::error db_adapter::check_query(const job_query& query) {
  if (!query.queue.empty())
    return make_error(errc::invalid_argument,
                      "a store lists by job names; the runtime resolves the "
                      "queue '" +
                          printable(query.queue) + "'");
  if (query.limit < 1 || query.limit > 1000)
    return make_error(errc::invalid_argument,
                      "page limit must be 1 to 1000, got " +
                          std::to_string(query.limit));
  for (auto& n : query.names)
    if (auto why = name_problem(n); !why.empty())
      return make_error(errc::invalid_argument,
                        "job name '" + printable(n) + "' " + why);
  if (!query.tag.empty())
    if (auto why = tag_problem(query.tag); !why.empty())
      return make_error(errc::invalid_argument,
                        "tag '" + printable(query.tag) + "' " + why);
  return caf::none;
}

caf::error db_adapter::check_pause_name(pause_kind kind,
                                        const std::string& name) {
  if (auto why = name_problem(name); !why.empty())
    return make_error(errc::invalid_argument, std::string{to_string(kind)} +
                                                  " name '" + printable(name) +
                                                  "' " + why);
  return caf::none;
}

std::string db_adapter::encode_key(const page_key& key) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%d.%" PRId64 ".%" PRId64, key.priority,
                key.at_ms, key.id);
  return buf;
}

caf::expected<db_adapter::page_key>
db_adapter::decode_key(const std::string& text) {
  // `priority.at_ms.id`, each a plain decimal number in range.
  auto bad = make_error(errc::invalid_argument,
                        "malformed page position '" + printable(text) + "'");
  auto first = text.find('.');
  auto second = first == std::string::npos ? first : text.find('.', first + 1);
  if (text.size() > 60 || second == std::string::npos)
    return bad;
  std::string_view all{text};
  auto priority = parse_count("priority", all.substr(0, first), 0, 9);
  auto at = parse_count("time", all.substr(first + 1, second - first - 1), 0,
                        std::numeric_limits<int64_t>::max());
  auto id = parse_count("id", all.substr(second + 1), 0,
                        std::numeric_limits<int64_t>::max());
  if (!priority || !at || !id)
    return bad;
  page_key key;
  key.priority = static_cast<int>(*priority);
  key.at_ms = *at;
  key.id = *id;
  return key;
}

caf::error db_adapter::check_reason(const std::string& reason) {
  if (auto why = text_problem(reason, 1000); !why.empty())
    return make_error(errc::invalid_argument, "the cancel reason " + why);
  return caf::none;
}

std::string db_adapter::prefixed_sql(const char* sql,
                                     const std::string& prefix) {
  static const std::set<std::string_view> names = {
      "jobs",
      "jobs_succeeded",
      "jobs_failed",
      "jobs_claim_idx",
      "jobs_reserved_by_idx",
      "jobs_succeeded_at_idx",
      "jobs_failed_at_idx",
      "jobs_failed_name_idx",
      "jobs_key_idx",
      "jobs_unsequenced_idx",
      "jobs_failed_key_idx",
      "jobs_expiry_idx",
      "bg_jobs_migrations",
      "bg_jobs_schedule",
      "bg_jobs_nodes",
      "bg_jobs_unique",
      "bg_jobs_paused",
      "bg_jobs_queues",
      "bg_jobs_leases",
      "bg_jobs_actions",
      "bg_jobs_limits",
      "bg_jobs_rate_limits",
      "bg_jobs_rate_keys",
      "bg_jobs_rate_of",
      "bg_jobs_wakes",
      "jobs_failed_retry_wake",
      "bg_jobs_paused_wake",
      "jobs_failed_unblock_wake",
      "bg_jobs_workflows",
      "bg_jobs_workflows_state_idx",
      "bg_jobs_tasks",
      "bg_jobs_tasks_doomed_idx",
      "bg_jobs_deps",
      "bg_jobs_deps_child_idx",
      "bg_jobs_blocked",
      "bg_jobs_outputs",
      "bg_jobs_blocked_wake",
      "bg_jobs_task_succeeded",
      "bg_jobs_task_failed",
      "bg_jobs_task_retried",
      "bg_jobs_output_pruned",
      "bg_jobs_progress",
      "bg_jobs_progress_pruned",
      "bg_jobs_progress_pruned_failed",
      "bg_jobs_schedules",
      "bg_jobs_workflows_unreported_idx",
      "bg_jobs_tasks_held_idx",
      "bg_jobs_tasks_callbacks_idx",
      "bg_jobs_workflow_finished",
      "bg_jobs_task_held",
      "bg_jobs_ids",
      "jobs_v22",
      "jobs_id_hwm",
  };
  std::string text{sql};
  if (prefix.empty())
    return text;
  auto is_ident = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  };
  std::string out;
  out.reserve(text.size() + 64);
  for (size_t i = 0; i < text.size();) {
    if (!is_ident(text[i])) {
      out += text[i++];
      continue;
    }
    auto j = i;
    while (j < text.size() && is_ident(text[j]))
      ++j;
    std::string_view word{text.data() + i, j - i};
    if (names.count(word) > 0)
      out += prefix;
    out += word;
    i = j;
  }
  return out;
}

caf::error db_adapter::check_identifier(const char* what,
                                        const std::string& name, size_t max) {
  bool ok = name.size() <= max;
  for (size_t i = 0; ok && i < name.size(); ++i) {
    char c = name[i];
    ok = (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
  }
  if (ok)
    return caf::none;
  return make_error(errc::invalid_argument,
                    std::string{what} + " '" + printable(name) +
                        "' must be a lower-case SQL identifier ([a-z_]"
                        "[a-z0-9_]*) of at most " +
                        std::to_string(max) + " bytes");
}

caf::expected<std::optional<db_adapter::page_key>>
db_adapter::start_of(const job_query& query) {
  if (auto err = check_query(query))
    return err;
  if (query.after.empty())
    return std::optional<page_key>{};
  auto key = decode_key(query.after);
  if (!key)
    return std::move(key.error());
  return std::optional<page_key>{*key};
}

std::string sql_order_by(const std::string& key, bool desc) {
  std::string ordered;
  for (size_t start = 0; start < key.size();) {
    auto end = key.find(", ", start);
    ordered += (ordered.empty() ? "" : ", ") + key.substr(start, end - start) +
               (desc ? " DESC" : "");
    start = end == std::string::npos ? key.size() : end + 2;
  }
  return " ORDER BY " + ordered;
}

void db_adapter::finish_page(job_page& page, const job_query& query) {
  if (page.jobs.size() <= static_cast<size_t>(query.limit))
    return;
  page.jobs.resize(static_cast<size_t>(query.limit));
  auto& last = page.jobs.back();
  page_key key;
  key.id = last.id;
  switch (query.state) {
  case job_state::waiting:
  case job_state::scheduled:
    key.priority = last.priority;
    key.at_ms = to_unix_ms(last.available_at);
    break;
  case job_state::running:
    key.at_ms = last.reserved_at ? to_unix_ms(*last.reserved_at) : 0;
    break;
  default:
    key.at_ms = last.finished_at ? to_unix_ms(*last.finished_at) : 0;
    break;
  }
  page.next = encode_key(key);
}

std::vector<known_queue> db_adapter::merge_announcements(
    const std::vector<std::tuple<std::string, std::string, std::string, int>>&
        rows) {
  std::vector<known_queue> result;
  for (auto& [queue, job_name, node, concurrency] : rows) {
    if (result.empty() || result.back().queue != queue)
      result.push_back(known_queue{queue, {}, {}, 0});
    auto& q = result.back();
    if (std::find(q.job_names.begin(), q.job_names.end(), job_name) ==
        q.job_names.end())
      q.job_names.push_back(job_name);
    // '': kept after its last node gave its name up.
    if (!node.empty() &&
        std::find(q.nodes.begin(), q.nodes.end(), node) == q.nodes.end()) {
      q.nodes.push_back(node);
      q.concurrency += concurrency;
    }
  }
  return result;
}

std::vector<finished_bucket> db_adapter::merge_buckets(
    const std::vector<std::tuple<int64_t, int64_t, int64_t>>& rows) {
  std::map<int64_t, finished_bucket> by_start;
  for (auto& [start, ok, bad] : rows) {
    auto& b = by_start[start];
    b.start = from_unix_ms(start);
    b.succeeded += ok;
    b.failed += bad;
  }
  std::vector<finished_bucket> result;
  for (auto& kvp : by_start)
    result.push_back(kvp.second);
  return result;
}

name_stats sum_of(const std::vector<name_stats>& by_name,
                  const std::vector<std::string>& names) {
  name_stats total;
  for (auto& n : by_name) {
    if (std::find(names.begin(), names.end(), n.name) == names.end())
      continue;
    auto& c = total.counts;
    c.available += n.counts.available;
    c.scheduled += n.counts.scheduled;
    c.reserved += n.counts.reserved;
    c.succeeded += n.counts.succeeded;
    c.failed += n.counts.failed;
    c.cancelled += n.counts.cancelled;
    c.history_estimated = c.history_estimated || n.counts.history_estimated;
    if (n.oldest_waiting &&
        (!total.oldest_waiting || *n.oldest_waiting < *total.oldest_waiting))
      total.oldest_waiting = n.oldest_waiting;
  }
  return total;
}

bool queue_paused(const std::vector<pause_record>& pauses,
                  const std::string& queue) {
  return std::any_of(pauses.begin(), pauses.end(), [&](const auto& p) {
    return p.kind == pause_kind::queue && p.name == queue;
  });
}

const char* to_string(pause_kind k) {
  return k == pause_kind::queue ? "queue" : "schedule";
}

caf::expected<std::vector<std::string>>
db_adapter::await_wakeups(std::chrono::milliseconds, int) {
  return make_error(errc::invalid_argument,
                    "this store cannot notify other processes");
}

namespace {

caf::expected<void> complete_one(db_adapter& db, completion c) {
  std::vector<completion> cs{std::move(c)};
  auto applied = db.complete_jobs(cs);
  if (!applied)
    return std::move(applied.error());
  if (applied->empty() || !applied->front())
    return make_error(errc::reservation_lost,
                      "job " + std::to_string(cs.front().job_id) +
                          " is not in jobs with the expected reservation");
  return caf::unit;
}

} // namespace

caf::expected<void> db_adapter::move_job_to_succeeded(const job& j) {
  completion c;
  c.what = completion::kind::succeeded;
  c.job_id = j.id;
  c.reserved_by = j.reserved_by;
  return complete_one(*this, std::move(c));
}

caf::expected<void> db_adapter::move_job_to_failed(const job& j,
                                                   const std::string& exc) {
  completion c;
  c.what = completion::kind::failed;
  c.job_id = j.id;
  c.reserved_by = j.reserved_by;
  c.error = exc;
  return complete_one(*this, std::move(c));
}

} // namespace bg_jobs
