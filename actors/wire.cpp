#include "bg_jobs/actors/wire.hpp"

#include <caf/actor_system_config.hpp>
#include <nlohmann/json.hpp>

#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::wire {

namespace {

using nlohmann::json;

json time_of(timestamp t) {
  return to_unix_ms(t);
}

json time_of(const std::optional<timestamp>& t) {
  return t ? json(to_unix_ms(*t)) : json();
}

template <class T>
json maybe(const std::optional<T>& x) {
  return x ? json(*x) : json();
}

timestamp time_at(const json& j, const char* key) {
  return from_unix_ms(j.at(key).get<int64_t>());
}

std::optional<timestamp> maybe_time(const json& j, const char* key) {
  auto i = j.find(key);
  if (i == j.end() || i->is_null())
    return std::nullopt;
  return from_unix_ms(i->get<int64_t>());
}

template <class T>
std::optional<T> maybe_of(const json& j, const char* key) {
  auto i = j.find(key);
  if (i == j.end() || i->is_null())
    return std::nullopt;
  return i->get<T>();
}

/// `s`, or null when empty.
json text_or_null(const std::string& s) {
  return s.empty() ? json(nullptr) : json(s);
}

/// Adds the metadata, tags and trace context a job or a record has (only
/// those it has) to `j`.
template <class Job>
void put_attrs(json& j, const Job& x) {
  if (!x.meta.empty())
    j["meta"] = x.meta;
  if (!x.tags.empty())
    j["tags"] = x.tags;
  if (!x.trace.traceparent.empty())
    j["traceparent"] = x.trace.traceparent;
  if (!x.trace.tracestate.empty())
    j["tracestate"] = x.trace.tracestate;
}

template <class Job>
void get_attrs(const json& j, Job& x) {
  if (auto m = j.find("meta"); m != j.end() && !m->is_null()) {
    if (!m->is_object())
      throw std::invalid_argument("meta must be an object");
    x.meta = *m;
  }
  if (auto t = j.find("tags"); t != j.end() && !t->is_null())
    x.tags = t->get<std::vector<std::string>>();
  x.trace.traceparent = maybe_of<std::string>(j, "traceparent").value_or("");
  x.trace.tracestate = maybe_of<std::string>(j, "tracestate").value_or("");
}

json to_json(const job& x) {
  json j = {{"id", x.id},
          {"name", x.name},
          {"payload", x.payload},
          {"attempts", x.attempts},
          {"priority", x.priority},
          {"created_at", time_of(x.created_at)},
          {"available_at", time_of(x.available_at)},
          {"reserved_at", time_of(x.reserved_at)},
          {"reserved_by", maybe(x.reserved_by)},
          {"last_error", maybe(x.last_error)},
          {"cancel_reason", maybe(x.cancel_reason)},
          {"concurrency_key", x.concurrency_key},
          {"second_concurrency_key", x.second_concurrency_key},
          {"conflict", x.conflict}};
  put_attrs(j, x);
  return j;
}

void from_json(const json& j, job& x) {
  x.id = j.at("id").get<int64_t>();
  x.name = j.at("name").get<std::string>();
  x.payload = j.at("payload");
  x.attempts = j.at("attempts").get<int>();
  x.priority = j.at("priority").get<int>();
  x.created_at = time_at(j, "created_at");
  x.available_at = time_at(j, "available_at");
  x.reserved_at = maybe_time(j, "reserved_at");
  x.reserved_by = maybe_of<std::string>(j, "reserved_by");
  x.last_error = maybe_of<std::string>(j, "last_error");
  x.cancel_reason = maybe_of<std::string>(j, "cancel_reason");
  x.conflict = j.at("conflict").get<bool>();
  x.concurrency_key =
      maybe_of<std::string>(j, "concurrency_key").value_or("");
  x.second_concurrency_key =
      maybe_of<std::string>(j, "second_concurrency_key").value_or("");
  get_attrs(j, x);
}

json to_json(const job_request& x) {
  json j = {
      {"name", x.name()}, {"payload", x.payload()}, {"priority", x.priority()}};
  if (auto t = std::get_if<timestamp>(&x.when()))
    j["available_at"] = to_unix_ms(*t);
  else if (auto d = std::get_if<std::chrono::milliseconds>(&x.when()))
    j["available_in"] = d->count();
  if (!x.concurrency_key().empty())
    j["concurrency_key"] = x.concurrency_key();
  if (!x.second_concurrency_key().empty())
    j["second_concurrency_key"] = x.second_concurrency_key();
  if (auto& e = x.expiry()) {
    if (auto t = std::get_if<timestamp>(&*e))
      j["expires_at"] = to_unix_ms(*t);
    else
      j["expires_in"] = std::get<std::chrono::milliseconds>(*e).count();
  }
  if (!x.rate_key().empty() || x.rate_cost() != 1) {
    j["rate_key"] = x.rate_key();
    j["rate_cost"] = x.rate_cost();
  }
  if (!x.meta().is_object() || !x.meta().empty())
    j["meta"] = x.meta(); // not an object: refused by validation
  if (!x.tags().empty())
    j["tags"] = x.tags();
  if (x.is_encrypted())
    j["encrypted"] = true;
  if (!x.secret_meta().empty())
    j["secret_meta"] = x.secret_meta();
  if (!x.trace().traceparent.empty() || !x.trace().tracestate.empty()) {
    j["traceparent"] = x.trace().traceparent;
    j["tracestate"] = x.trace().tracestate;
  }
  if (auto& u = x.unique()) {
    json uj = {{"include_succeeded", u->include_succeeded}};
    if (u->key)
      uj["key"] = *u->key;
    if (u->period)
      uj["period_ms"] = u->period->count();
    if (u->on_conflict != unique_conflict::keep)
      uj["on_conflict"] = static_cast<int>(u->on_conflict);
    if (u->max_wait)
      uj["max_wait_ms"] = u->max_wait->count();
    j["unique"] = std::move(uj);
  }
  return j;
}

void from_json(const json& j, job_request& x) {
  x = job_request{j.at("name").get<std::string>(), j.at("payload")};
  x.with_priority(j.at("priority").get<int>());
  if (auto t = maybe_time(j, "available_at"))
    x.available_at(*t);
  else if (auto d = maybe_of<int64_t>(j, "available_in"))
    x.available_in(std::chrono::milliseconds{*d});
  auto key = maybe_of<std::string>(j, "concurrency_key");
  auto second = maybe_of<std::string>(j, "second_concurrency_key");
  if (key || second) // a second without a first fails validation
    x.with_concurrency_key(key.value_or(""), second.value_or(""));
  if (auto t = maybe_time(j, "expires_at"))
    x.expires_at(*t);
  else if (auto d = maybe_of<int64_t>(j, "expires_in"))
    x.expires_in(std::chrono::milliseconds{*d});
  auto rate_key = maybe_of<std::string>(j, "rate_key");
  auto rate_cost = maybe_of<int64_t>(j, "rate_cost");
  if (rate_key || rate_cost) // checked by validation
    x.with_rate(rate_key.value_or(""), rate_cost.value_or(1));
  if (auto m = j.find("meta"); m != j.end())
    x.with_meta(*m); // checked by validation
  if (auto s = j.find("secret_meta"); s != j.end() && !s->is_null())
    for (auto& key : s->get<std::vector<std::string>>())
      x.with_secret_meta(key, x.meta().is_object() && x.meta().contains(key)
                                  ? x.meta()[key]
                                  : nlohmann::json());
  if (maybe_of<bool>(j, "encrypted").value_or(false))
    x.encrypted();
  if (auto t = j.find("tags"); t != j.end() && !t->is_null())
    x.with_tags(t->get<std::vector<std::string>>());
  auto traceparent = maybe_of<std::string>(j, "traceparent");
  auto tracestate = maybe_of<std::string>(j, "tracestate");
  if (traceparent || tracestate)
    x.with_trace(traceparent.value_or(""), tracestate.value_or(""));
  if (auto i = j.find("unique"); i != j.end() && !i->is_null()) {
    unique_options u;
    u.key = maybe_of<std::string>(*i, "key");
    if (auto p = maybe_of<int64_t>(*i, "period_ms"))
      u.period = std::chrono::milliseconds{*p};
    u.include_succeeded = i->at("include_succeeded").get<bool>();
    if (auto c = maybe_of<int>(*i, "on_conflict")) {
      if (*c < 0 || *c > static_cast<int>(unique_conflict::merge))
        throw std::invalid_argument("unknown unique conflict mode");
      u.on_conflict = static_cast<unique_conflict>(*c);
    }
    if (auto w = maybe_of<int64_t>(*i, "max_wait_ms"))
      u.max_wait = std::chrono::milliseconds{*w};
    x.with_unique(std::move(u));
  }
}

json to_json(const job_record& x) {
  json j = {{"id", x.id},
          {"name", x.name},
          {"payload", x.payload},
          {"priority", x.priority},
          {"attempts", x.attempts},
          {"state", to_string(x.state)},
          {"created_at", time_of(x.created_at)},
          {"available_at", time_of(x.available_at)},
          {"reserved_at", time_of(x.reserved_at)},
          {"reserved_by", maybe(x.reserved_by)},
          {"finished_at", time_of(x.finished_at)},
          {"error", maybe(x.error)},
          {"cancel_reason", maybe(x.cancel_reason)},
          {"errors", x.errors},
          {"concurrency_key", text_or_null(x.concurrency_key)},
          {"second_concurrency_key", text_or_null(x.second_concurrency_key)}};
  put_attrs(j, x);
  if (!x.output.is_null())
    j["output"] = x.output;
  if (x.progress)
    j["progress"] = {{"fraction", x.progress->fraction},
                     {"text", x.progress->text},
                     {"attempt", x.progress->attempt},
                     {"at", time_of(x.progress->at)}};
  return j;
}

void from_json(const json& j, job_record& x) {
  x.id = j.at("id").get<int64_t>();
  x.name = j.at("name").get<std::string>();
  x.payload = j.at("payload");
  x.priority = j.at("priority").get<int>();
  x.attempts = j.at("attempts").get<int>();
  auto state = parse_job_state(j.at("state").get<std::string>());
  if (!state)
    throw std::invalid_argument("unknown job state");
  x.state = *state;
  x.created_at = time_at(j, "created_at");
  x.available_at = time_at(j, "available_at");
  x.reserved_at = maybe_time(j, "reserved_at");
  x.reserved_by = maybe_of<std::string>(j, "reserved_by");
  x.finished_at = maybe_time(j, "finished_at");
  x.error = maybe_of<std::string>(j, "error");
  x.cancel_reason = maybe_of<std::string>(j, "cancel_reason");
  x.errors = j.at("errors");
  x.concurrency_key =
      maybe_of<std::string>(j, "concurrency_key").value_or("");
  x.second_concurrency_key =
      maybe_of<std::string>(j, "second_concurrency_key").value_or("");
  get_attrs(j, x);
  x.output = j.value("output", json());
  if (auto p = j.find("progress"); p != j.end() && !p->is_null()) {
    job_progress g;
    g.fraction = p->at("fraction").get<double>();
    g.text = p->at("text").get<std::string>();
    g.attempt = p->at("attempt").get<int>();
    g.at = time_at(*p, "at");
    x.progress = std::move(g);
  }
}

json to_json(const job_query& x) {
  return {{"state", to_string(x.state)},
          {"names", x.names},
          {"queue", x.queue},
          {"tag", x.tag},
          {"newest_first", x.newest_first},
          {"after", x.after},
          {"limit", x.limit}};
}

void from_json(const json& j, job_query& x) {
  auto state = parse_job_state(j.at("state").get<std::string>());
  if (!state)
    throw std::invalid_argument("unknown job state");
  x.state = *state;
  x.names = j.at("names").get<std::vector<std::string>>();
  x.queue = j.at("queue").get<std::string>();
  x.tag = maybe_of<std::string>(j, "tag").value_or("");
  x.newest_first = j.at("newest_first").get<bool>();
  x.after = j.at("after").get<std::string>();
  x.limit = j.at("limit").get<int>();
}

json to_json(const workflow& x) {
  json tasks = json::array();
  for (auto& t : x.tasks()) {
    json after = json::array();
    for (auto& d : t.after)
      after.push_back({{"parent", d.parent},
                       {"on_failure", to_string(d.on_failure)}});
    tasks.push_back({{"name", t.name},
                     {"request", to_json(t.request)},
                     {"after", std::move(after)}});
  }
  json j = {{"name", x.name()}, {"tasks", std::move(tasks)}};
  static const char* const roles[] = {"on_success", "on_finish",
                                      "on_failure"};
  for (size_t role = 0; role < 3; ++role)
    if (auto& c = x.callback(role))
      j[roles[role]] = to_json(*c);
  if (x.open())
    j["open"] = true;
  return j;
}

void from_json(const json& j, workflow& x) {
  x = workflow{j.at("name").get<std::string>()};
  for (auto& t : j.at("tasks")) {
    std::vector<task_dependency> after;
    for (auto& d : t.at("after")) {
      auto policy =
          parse_parent_failure(d.value("on_failure", std::string{"cancel"}));
      if (!policy)
        throw std::invalid_argument("unknown on_failure policy");
      after.push_back({d.at("parent").get<std::string>(), *policy});
    }
    job_request r{""};
    from_json(t.at("request"), r);
    x.add(t.at("name").get<std::string>(), std::move(r), std::move(after));
  }
  if (j.contains("on_success")) {
    job_request r{""};
    from_json(j.at("on_success"), r);
    x.on_success(std::move(r));
  }
  if (j.contains("on_finish")) {
    job_request r{""};
    from_json(j.at("on_finish"), r);
    x.on_finish(std::move(r));
  }
  if (j.contains("on_failure")) {
    job_request r{""};
    from_json(j.at("on_failure"), r);
    x.on_failure(std::move(r));
  }
  x.keep_open(j.value("open", false));
}

json to_json(const workflow_ids& x) {
  return {{"workflow_id", x.workflow_id}, {"tasks", x.tasks}};
}

void from_json(const json& j, workflow_ids& x) {
  x.workflow_id = j.at("workflow_id").get<int64_t>();
  x.tasks = j.at("tasks").get<std::map<std::string, int64_t>>();
}

json to_json(const workflow_info& x) {
  json tasks = json::array();
  for (auto& t : x.tasks) {
    json after = json::array();
    for (auto& d : t.after)
      after.push_back({{"parent", d.parent},
                       {"on_failure", to_string(d.on_failure)}});
    json tj = {{"name", t.name},
               {"job_id", t.job_id},
               {"job_name", t.job_name},
               {"state", to_string(t.state)},
               {"after", std::move(after)},
               {"finished_at", time_of(t.finished_at)}};
    if (!t.output.is_null())
      tj["output"] = t.output;
    tasks.push_back(std::move(tj));
  }
  return {{"id", x.id},
          {"name", x.name},
          {"state", to_string(x.state)},
          {"stuck", x.stuck()},
          {"total", x.total},
          {"succeeded", x.succeeded},
          {"failed", x.failed},
          {"cancelled", x.cancelled},
          {"held", x.held},
          {"open", x.open},
          {"created_at", time_of(x.created_at)},
          {"finished_at", time_of(x.finished_at)},
          {"tasks", std::move(tasks)}};
}

void from_json(const json& j, workflow_info& x) {
  x.id = j.at("id").get<int64_t>();
  x.name = j.at("name").get<std::string>();
  auto state = parse_workflow_state(j.at("state").get<std::string>());
  if (!state)
    throw std::invalid_argument("unknown workflow state");
  x.state = *state;
  x.total = j.at("total").get<int64_t>();
  x.succeeded = j.at("succeeded").get<int64_t>();
  x.failed = j.at("failed").get<int64_t>();
  x.cancelled = j.at("cancelled").get<int64_t>();
  x.held = j.at("held").get<int64_t>();
  x.open = j.value("open", false);
  x.created_at = time_at(j, "created_at");
  x.finished_at = maybe_time(j, "finished_at");
  x.tasks.clear();
  for (auto& tj : j.at("tasks")) {
    task_info t;
    t.name = tj.at("name").get<std::string>();
    t.job_id = tj.at("job_id").get<int64_t>();
    t.job_name = tj.at("job_name").get<std::string>();
    auto ts = parse_task_state(tj.at("state").get<std::string>());
    if (!ts)
      throw std::invalid_argument("unknown task state");
    t.state = *ts;
    for (auto& d : tj.at("after")) {
      auto policy = parse_parent_failure(d.at("on_failure").get<std::string>());
      if (!policy)
        throw std::invalid_argument("unknown on_failure policy");
      t.after.push_back({d.at("parent").get<std::string>(), *policy});
    }
    t.finished_at = maybe_time(tj, "finished_at");
    t.output = tj.value("output", json());
    x.tasks.push_back(std::move(t));
  }
}

json to_json(const workflow_query& x) {
  return {{"state", x.state ? json(to_string(*x.state)) : json()},
          {"before_id", x.before_id},
          {"limit", x.limit}};
}

void from_json(const json& j, workflow_query& x) {
  x.state.reset();
  if (auto s = maybe_of<std::string>(j, "state")) {
    x.state = parse_workflow_state(*s);
    if (!x.state)
      throw std::invalid_argument("unknown workflow state");
  }
  x.before_id = j.at("before_id").get<int64_t>();
  x.limit = j.at("limit").get<int>();
}

json to_json(const job_page& x) {
  json jobs = json::array();
  for (auto& r : x.jobs)
    jobs.push_back(to_json(r));
  return {{"jobs", std::move(jobs)}, {"next", x.next}};
}

void from_json(const json& j, job_page& x) {
  x.jobs.clear();
  for (auto& r : j.at("jobs")) {
    job_record rec;
    from_json(r, rec);
    x.jobs.push_back(std::move(rec));
  }
  x.next = j.at("next").get<std::string>();
}

json to_json(const pause_record& x) {
  return {{"kind", to_string(x.kind)},
          {"name", x.name},
          {"paused_at", time_of(x.paused_at)}};
}

void from_json(const json& j, pause_record& x) {
  auto kind = j.at("kind").get<std::string>();
  if (kind != "queue" && kind != "schedule")
    throw std::invalid_argument("unknown pause kind");
  x.kind = kind == "queue" ? pause_kind::queue : pause_kind::schedule;
  x.name = j.at("name").get<std::string>();
  x.paused_at = time_at(j, "paused_at");
}

json to_json(const job_stats& x) {
  return {{"waiting", x.available},  {"scheduled", x.scheduled},
          {"running", x.reserved},   {"succeeded", x.succeeded},
          {"failed", x.failed},      {"cancelled", x.cancelled},
          {"history_estimated", x.history_estimated}};
}

void from_json(const json& j, job_stats& x) {
  x.available = j.at("waiting").get<int64_t>();
  x.scheduled = j.at("scheduled").get<int64_t>();
  x.reserved = j.at("running").get<int64_t>();
  x.succeeded = j.at("succeeded").get<int64_t>();
  x.failed = j.at("failed").get<int64_t>();
  x.cancelled = j.at("cancelled").get<int64_t>();
  x.history_estimated = j.value("history_estimated", false);
}

json limits_json(const queue_stats& q) {
  json limits = json::array(), keys = json::array();
  for (auto& l : q.limits)
    limits.push_back({{"kind", to_string(l.kind)},
                      {"key", l.key},
                      {"max_running", l.max_running}});
  for (auto& k : q.keys)
    keys.push_back({{"key", k.key},
                    {"running", k.running},
                    {"waiting", k.waiting},
                    {"max_running", k.max_running},
                    {"full", k.full()}});
  json blocked = json::array();
  for (auto& b : q.blocked)
    blocked.push_back({{"key", b.key},
                       {"failed_job", b.failed_job},
                       {"waiting", b.waiting}});
  json out = {{"limits", limits},
              {"keys", keys},
              {"blocked", blocked},
              {"keys_full", q.keys_full},
              {"waiting_on_limit", q.waiting_on_limit}};
  if (q.rate) {
    json rate_keys = json::array();
    for (auto& k : q.rate->keys)
      rate_keys.push_back({{"key", k.key},
                           {"available", k.available},
                           {"blocked_ms", k.blocked_ms}});
    auto& l = q.rate->limit;
    out["rate"] = {{"name", l.name},
                   {"allowed", l.allowed},
                   {"period_ms", l.period.count()},
                   {"burst", l.bucket()},
                   {"keys", rate_keys}};
  }
  return out;
}

void limits_from_json(const json& j, queue_stats& q) {
  if (!j.contains("limits"))
    return;
  for (auto& l : j.at("limits")) {
    concurrency_limit x;
    x.kind = parse_limit_kind(l.at("kind").get<std::string>())
                 .value_or(limit_kind::key);
    x.key = l.at("key").get<std::string>();
    x.max_running = l.at("max_running").get<int>();
    q.limits.push_back(std::move(x));
  }
  for (auto& k : j.at("keys")) {
    key_usage u;
    u.key = k.at("key").get<std::string>();
    u.running = k.at("running").get<int64_t>();
    u.waiting = k.at("waiting").get<int64_t>();
    u.max_running = k.at("max_running").get<int>();
    q.keys.push_back(std::move(u));
  }
  for (auto& b : j.value("blocked", json::array()))
    q.blocked.push_back({b.at("key").get<std::string>(),
                         b.at("failed_job").get<int64_t>(),
                         b.at("waiting").get<int64_t>()});
  q.keys_full = j.at("keys_full").get<int64_t>();
  q.waiting_on_limit = j.at("waiting_on_limit").get<int64_t>();
  if (auto r = j.find("rate"); r != j.end() && r->is_object()) {
    rate_limit_state st;
    st.limit.name = r->at("name").get<std::string>();
    st.limit.allowed = r->at("allowed").get<int64_t>();
    st.limit.period = std::chrono::milliseconds{r->at("period_ms").get<int64_t>()};
    st.limit.burst = r->at("burst").get<int64_t>();
    for (auto& k : r->at("keys"))
      st.keys.push_back({k.at("key").get<std::string>(),
                         k.at("available").get<int64_t>(),
                         k.at("blocked_ms").get<int64_t>()});
    q.rate = std::move(st);
  }
}

json to_json(const stats_report& x) {
  json queues = json::array(), names = json::array();
  for (auto& q : x.queues) {
    json one = {{"queue", q.queue},
                {"job_names", q.job_names},
                {"counts", to_json(q.counts)},
                {"oldest_waiting", time_of(q.oldest_waiting)},
                {"lag_ms", q.lag.count()},
                {"paused", q.paused},
                {"max_concurrent_jobs", q.max_concurrent_jobs},
                {"nodes", q.nodes},
                {"concurrency", q.concurrency}};
    one.update(limits_json(q));
    queues.push_back(std::move(one));
  }
  for (auto& n : x.names)
    names.push_back({{"name", n.name},
                     {"counts", to_json(n.counts)},
                     {"oldest_waiting", time_of(n.oldest_waiting)}});
  return {{"at", time_of(x.at)}, {"queues", queues}, {"names", names}};
}

void from_json(const json& j, stats_report& x) {
  x.at = time_at(j, "at");
  x.queues.clear();
  x.names.clear();
  for (auto& q : j.at("queues")) {
    queue_stats s;
    s.queue = q.at("queue").get<std::string>();
    s.job_names = q.at("job_names").get<std::vector<std::string>>();
    from_json(q.at("counts"), s.counts);
    s.oldest_waiting = maybe_time(q, "oldest_waiting");
    s.lag = std::chrono::milliseconds{q.at("lag_ms").get<int64_t>()};
    s.paused = q.at("paused").get<bool>();
    s.max_concurrent_jobs = q.at("max_concurrent_jobs").get<int>();
    s.nodes = q.value("nodes", std::vector<std::string>{});
    s.concurrency = q.value("concurrency", 0);
    limits_from_json(q, s);
    x.queues.push_back(std::move(s));
  }
  for (auto& n : j.at("names")) {
    name_stats s;
    s.name = n.at("name").get<std::string>();
    from_json(n.at("counts"), s.counts);
    s.oldest_waiting = maybe_time(n, "oldest_waiting");
    x.names.push_back(std::move(s));
  }
}

/// The deepest a message text may nest: a payload's limit and the few
/// levels of the message around it.
constexpr size_t max_text_depth = max_payload_depth + 4;

template <class T>
caf::error decode_as(const std::string& text, T& x, const char* what) {
  auto fail = [&](const std::string& why) {
    return make_error(errc::invalid_payload,
                      std::string{"a "} + what + " from the wire " + why);
  };
  if (text.size() > max_payload_size + 64 * 1024)
    return fail("is larger than the payload limit");
  // Depth first, without parsing (a deep text would exhaust the stack).
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > static_cast<int>(max_text_depth))
        return fail("nests too deep");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return fail("is not a JSON object");
  try {
    from_json(j, x);
  } catch (const std::exception& e) {
    return fail(std::string{"is malformed: "} + e.what());
  }
  return caf::none;
}

} // namespace

json as_json(const job& x) {
  return to_json(x);
}
json as_json(const job_record& x) {
  return to_json(x);
}
json as_json(const job_stats& x) {
  return to_json(x);
}

json limits_as_json(const queue_stats& x) { return limits_json(x); }

std::string encode(const job& x) {
  return to_json(x).dump();
}
std::string encode(const job_request& x) {
  return to_json(x).dump();
}
std::string encode(const job_record& x) {
  return to_json(x).dump();
}
std::string encode(const job_query& x) {
  return to_json(x).dump();
}
std::string encode(const job_page& x) {
  return to_json(x).dump();
}
std::string encode(const pause_record& x) {
  return to_json(x).dump();
}
std::string encode(const stats_report& x) {
  return to_json(x).dump();
}

caf::error decode(const std::string& text, job& x) {
  return decode_as(text, x, "job");
}
caf::error decode(const std::string& text, job_request& x) {
  return decode_as(text, x, "job request");
}
caf::error decode(const std::string& text, job_record& x) {
  return decode_as(text, x, "job record");
}
caf::error decode(const std::string& text, job_query& x) {
  return decode_as(text, x, "job query");
}
caf::error decode(const std::string& text, job_page& x) {
  return decode_as(text, x, "job page");
}
caf::error decode(const std::string& text, pause_record& x) {
  return decode_as(text, x, "pause");
}
caf::error decode(const std::string& text, stats_report& x) {
  return decode_as(text, x, "stats report");
}

std::string encode(const workflow& x) {
  return to_json(x).dump();
}
std::string encode(const workflow_ids& x) {
  return to_json(x).dump();
}
std::string encode(const workflow_info& x) {
  return to_json(x).dump();
}
std::string encode(const workflow_query& x) {
  return to_json(x).dump();
}
caf::error decode(const std::string& text, workflow& x) {
  return decode_as(text, x, "workflow");
}
caf::error decode(const std::string& text, workflow_ids& x) {
  return decode_as(text, x, "workflow's ids");
}
caf::error decode(const std::string& text, workflow_info& x) {
  return decode_as(text, x, "workflow");
}
caf::error decode(const std::string& text, workflow_query& x) {
  return decode_as(text, x, "workflow query");
}

json as_json(const workflow_info& x) {
  return to_json(x);
}

} // namespace bg_jobs::wire

namespace bg_jobs {

void add_message_types(caf::actor_system_config& cfg) {
  add_error_category(cfg);
  cfg.add_message_type<job>("bg_jobs::job");
  cfg.add_message_type<job_request>("bg_jobs::job_request");
  cfg.add_message_type<job_record>("bg_jobs::job_record");
  cfg.add_message_type<job_query>("bg_jobs::job_query");
  cfg.add_message_type<job_page>("bg_jobs::job_page");
  cfg.add_message_type<pause_kind>("bg_jobs::pause_kind");
  cfg.add_message_type<pause_record>("bg_jobs::pause_record");
  cfg.add_message_type<stats_report>("bg_jobs::stats_report");
  cfg.add_message_type<workflow>("bg_jobs::workflow");
  cfg.add_message_type<workflow_ids>("bg_jobs::workflow_ids");
  cfg.add_message_type<workflow_info>("bg_jobs::workflow_info");
  cfg.add_message_type<workflow_query>("bg_jobs::workflow_query");
  // The ids a bulk enqueue answers with.
  cfg.add_message_type<std::vector<int64_t>>("std::vector<int64_t>");
}

} // namespace bg_jobs
