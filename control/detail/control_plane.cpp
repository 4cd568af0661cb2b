#include "bg_jobs/control/detail/control_plane.hpp"

#include <algorithm>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

queue_stats queue_stats_of(const std::vector<name_stats>& names,
                           const std::vector<pause_record>& pauses,
                           std::string queue,
                           std::vector<std::string> job_names, timestamp now) {
  queue_stats qs;
  auto total = sum_of(names, job_names);
  qs.counts = total.counts;
  qs.oldest_waiting = total.oldest_waiting;
  if (qs.oldest_waiting)
    qs.lag = std::max(std::chrono::milliseconds{0},
                      std::chrono::duration_cast<std::chrono::milliseconds>(
                          now - *qs.oldest_waiting));
  qs.paused = queue_paused(pauses, queue);
  qs.queue = std::move(queue);
  qs.job_names = std::move(job_names);
  return qs;
}

caf::expected<stats_report> store_stats(db_adapter& db, timestamp now) {
  auto names = db.stats_by_name();
  if (!names)
    return std::move(names.error());
  auto queues = db.known_queues();
  if (!queues)
    return std::move(queues.error());
  auto pauses = db.pauses();
  if (!pauses)
    return std::move(pauses.error());
  stats_report report;
  report.at = now;
  for (auto& q : *queues) {
    auto qs = queue_stats_of(*names, *pauses, q.queue, q.job_names, now);
    qs.nodes = q.nodes;
    qs.concurrency = q.concurrency;
    if (auto err = add_limits(db, qs))
      return err;
    report.queues.push_back(std::move(qs));
  }
  report.names = std::move(*names);
  return report;
}

caf::error add_limits(db_adapter& db, queue_stats& qs) {
  auto limits = db.stored_limits(qs.queue);
  if (!limits)
    return std::move(limits.error());
  if (limits->empty())
    return caf::none;
  qs.limits = std::move(*limits);
  // Every key in use (up to a bound) for the totals; the first few shown.
  auto keys = db.keys_in_use(qs.queue, qs.job_names, 10000);
  if (!keys)
    return std::move(keys.error());
  for (auto& k : *keys)
    if (k.full()) {
      ++qs.keys_full;
      qs.waiting_on_limit += k.waiting;
    }
  if (keys->size() > static_cast<size_t>(queue_stats::shown_keys))
    keys->resize(queue_stats::shown_keys);
  qs.keys = std::move(*keys);
  auto blocked = db.blocked_keys(qs.queue, qs.job_names);
  if (!blocked)
    return std::move(blocked.error());
  qs.blocked = std::move(*blocked);
  for (auto& l : qs.limits)
    if (l.kind == limit_kind::rate) {
      auto rate = db.rate_state(l.key, queue_stats::shown_keys);
      if (!rate)
        return std::move(rate.error());
      qs.rate = std::move(*rate);
    }
  return caf::none;
}

caf::error record_in_journal(db_adapter& db, const action_effects& fx) {
  if (fx.events.empty())
    return caf::none;
  auto r = db.record_actions(fx.events);
  return r ? caf::none : std::move(r.error());
}

control_plane::control_plane(
    db_adapter& db, std::function<std::string(const std::string&)> queue_of,
    pausable_check pausable)
    : db_(db), queue_of_(std::move(queue_of)), pausable_(std::move(pausable)) {}

std::string control_plane::queue_of(const std::string& job_name) {
  if (queue_of_)
    return queue_of_(job_name);
  if (!announced_) {
    announced_.emplace();
    if (auto queues = db_.known_queues())
      for (auto& q : *queues)
        for (auto& n : q.job_names)
          announced_->emplace(n, q.queue);
  }
  auto i = announced_->find(job_name);
  return i != announced_->end() ? i->second : std::string{};
}

void control_plane::report(event_kind k, const job_record& r,
                           std::string message) {
  event e{k};
  job j;
  j.id = r.id;
  j.name = r.name;
  j.payload = r.payload;
  j.priority = r.priority;
  j.attempts = r.attempts;
  j.created_at = r.created_at;
  j.available_at = r.available_at;
  j.reserved_at = r.reserved_at;
  j.reserved_by = r.reserved_by;
  e.job = std::move(j);
  e.queue = queue_of(r.name);
  e.message = std::move(message);
  effects_.events.push_back(std::move(e));
}

caf::expected<job_record> control_plane::cancel(int64_t id,
                                                const std::string& reason) {
  auto r = db_.cancel_job(id, reason);
  if (!r)
    return r;
  if (r->state == job_state::running) {
    effects_.cancels.push_back(
        cancel_notice{id, r->cancel_reason.value_or(reason), r->name});
    report(event_kind::job_cancel_requested, *r,
           r->cancel_reason.value_or(reason));
  } else {
    report(event_kind::job_cancelled, *r, r->error.value_or(""));
  }
  return r;
}

caf::expected<job_record> control_plane::retry(int64_t id) {
  auto r = db_.retry_job(id);
  if (!r)
    return r;
  effects_.wake.push_back(r->name);
  report(event_kind::job_retried, *r);
  return r;
}

caf::expected<workflow_info>
control_plane::cancel_workflow(int64_t id, const std::string& reason) {
  auto w = db_.cancel_workflow(id, reason);
  if (!w)
    return w;
  auto why = reason.empty() ? std::string{"cancelled"} : reason;
  // What is still in `jobs` after the cancel runs: it stops as a cancelled
  // job does.
  for (auto& t : w->tasks)
    if (t.state == task_state::ready)
      effects_.cancels.push_back(cancel_notice{t.job_id, why, t.job_name});
  event e{event_kind::workflow_cancelled};
  e.workflow_id = id;
  e.message = "workflow " + std::to_string(id) + ": " + why;
  effects_.events.push_back(std::move(e));
  return w;
}

caf::expected<workflow_info> control_plane::retry_workflow(int64_t id) {
  auto w = db_.retry_workflow(id);
  if (!w)
    return w;
  for (auto& t : w->tasks)
    if (t.state == task_state::ready)
      effects_.wake.push_back(t.job_name);
  event e{event_kind::workflow_retried};
  e.workflow_id = id;
  e.message = "workflow " + std::to_string(id);
  effects_.events.push_back(std::move(e));
  return w;
}

caf::expected<int64_t> control_plane::retry_failed(const std::string& name) {
  auto n = db_.retry_failed(name);
  if (!n || *n == 0)
    return n;
  effects_.wake.push_back(name);
  event e{event_kind::job_retried};
  e.queue = queue_of(name);
  e.message = std::to_string(*n) + " failed jobs of '" + name + "'";
  effects_.events.push_back(std::move(e));
  return n;
}

caf::expected<void> control_plane::remove(int64_t id) {
  // Read first: the event reports the job as it was.
  auto rec = db_.get_job(id);
  auto r = db_.delete_job(id);
  if (!r)
    return r;
  if (rec)
    report(event_kind::job_deleted, *rec);
  return r;
}

caf::error control_plane::check_pausable(pause_kind k,
                                         const std::string& name) {
  if (k == pause_kind::schedule) {
    // A stored schedule, wherever it was declared or added.
    auto rows = db_.list_schedules();
    if (!rows)
      return std::move(rows.error());
    for (auto& r : *rows)
      if (r.name == name)
        return caf::none;
  }
  if (pausable_)
    return pausable_(k, name);
  if (k != pause_kind::queue)
    return caf::none;
  auto queues = db_.known_queues();
  if (!queues)
    return std::move(queues.error());
  for (auto& q : *queues)
    if (q.queue == name)
      return caf::none;
  return make_error(errc::unknown_queue, "no node has announced a queue '" +
                                             printable(name) + "'");
}

caf::expected<void> control_plane::set_paused(pause_kind k,
                                              const std::string& name,
                                              bool paused) {
  if (auto err = check_pausable(k, name))
    return err;
  auto r = paused ? db_.pause(k, name) : db_.resume(k, name);
  if (!r)
    return r;
  if (!paused)
    effects_.wake.push_back("*");
  event e{k == pause_kind::queue
              ? (paused ? event_kind::queue_paused : event_kind::queue_resumed)
              : (paused ? event_kind::schedule_paused
                        : event_kind::schedule_resumed)};
  e.queue = name;
  effects_.events.push_back(std::move(e));
  return r;
}

caf::expected<std::vector<std::string>>
control_plane::limited_queue(const std::string& queue) {
  auto queues = db_.known_queues();
  if (!queues)
    return std::move(queues.error());
  auto q = std::find_if(queues->begin(), queues->end(),
                        [&](const known_queue& k) { return k.queue == queue; });
  if (q == queues->end())
    return make_error(errc::invalid_argument,
                      "no node has announced a queue '" + queue + "'");
  // Only a queue that its nodes run as limited: its configuration declares
  // limits, which its nodes stored when they started.
  auto stored = db_.stored_limits(queue);
  if (!stored)
    return std::move(stored.error());
  if (stored->empty())
    return make_error(errc::invalid_argument,
                      "queue '" + queue +
                          "' has no concurrency limits; declare them in its "
                          "configuration (queue_spec::with_key_limit) first");
  return q->job_names;
}

caf::expected<int64_t> control_plane::unblock_key(const std::string& queue,
                                                  const std::string& key) {
  if (auto why = concurrency_key_problem(key); !why.empty() || key.empty())
    return make_error(errc::invalid_argument,
                      "concurrency key '" + printable(key) + "' " +
                          (key.empty() ? std::string{"is empty"} : why));
  auto names = limited_queue(queue);
  if (!names)
    return std::move(names.error());
  auto n = db_.unblock_key(*names, key);
  if (!n)
    return n;
  effects_.wake.push_back("*");
  event e{event_kind::key_unblocked};
  e.queue = queue;
  e.message = "key '" + key + "' unblocked: " + std::to_string(*n) +
              " failed jobs no longer hold it";
  effects_.events.push_back(std::move(e));
  return n;
}

caf::expected<void>
control_plane::set_limit(const std::string& queue,
                         const concurrency_limit& limit) {
  if (auto err = check_limit_change(queue, limit))
    return err;
  if (auto names = limited_queue(queue); !names)
    return std::move(names.error());
  auto r = db_.set_limit(queue, limit);
  if (!r)
    return r;
  // A raised limit admits jobs now.
  effects_.wake.push_back("*");
  event e{event_kind::queue_limit_changed};
  e.queue = queue;
  e.message = std::string{to_string(limit.kind)} + " limit" +
              (limit.key.empty() ? "" : " of key '" + limit.key + "'") +
              (limit.max_running > 0
                   ? " set to " + std::to_string(limit.max_running)
                   : " removed");
  effects_.events.push_back(std::move(e));
  return r;
}

caf::expected<void> control_plane::set_rate_limit(const rate_limit& limit) {
  if (auto err = check_rate_limit(limit))
    return err;
  auto known = db_.rate_state(limit.name, 0);
  if (!known)
    return std::move(known.error());
  if (!*known)
    return make_error(errc::invalid_argument,
                      "no rate limit named '" + printable(limit.name) +
                          "' (a queue declares one with "
                          "queue_spec::with_rate_limit)");
  auto r = db_.set_rate_limit(limit);
  if (!r)
    return r;
  // A raised rate admits jobs now.
  effects_.wake.push_back("*");
  event e{event_kind::rate_limit_changed};
  e.message = "rate limit '" + limit.name + "' set to " +
              std::to_string(limit.allowed) + " per " +
              std::to_string(limit.period.count()) + " ms, burst " +
              std::to_string(limit.bucket());
  effects_.events.push_back(std::move(e));
  return r;
}

caf::expected<bool>
control_plane::put_schedule(const schedule_definition& d) {
  if (auto err = d.validate())
    return err;
  stored_schedule row;
  row.name = d.name;
  row.definition = d.to_json().dump();
  auto added = db_.put_schedule(row);
  if (!added)
    return added;
  event e{event_kind::schedule_changed};
  e.queue = d.name;
  e.message = std::string{*added ? "added" : "changed"} + " schedule '" +
              printable(d.name) + "': " + row.definition;
  effects_.events.push_back(std::move(e));
  effects_.wake.push_back(schedules_changed);
  return added;
}

caf::expected<void> control_plane::remove_schedule(const std::string& name) {
  auto gone = db_.remove_schedule(name);
  if (!gone)
    return std::move(gone.error());
  if (!gone->removed)
    return make_error(errc::invalid_argument,
                      "no schedule '" + printable(name) + "'");
  event e{event_kind::schedule_removed};
  e.queue = name;
  e.message = "removed schedule '" + printable(name) + "'";
  if (gone->cancelled_job)
    e.message += "; its waiting occurrence (job " +
                 std::to_string(*gone->cancelled_job) + ") was cancelled";
  effects_.events.push_back(std::move(e));
  effects_.wake.push_back(schedules_changed);
  return caf::unit;
}

caf::expected<job> control_plane::trigger_schedule(const std::string& name) {
  auto rows = db_.list_schedules();
  if (!rows)
    return std::move(rows.error());
  auto row = std::find_if(rows->begin(), rows->end(),
                          [&](auto& r) { return r.name == name; });
  if (row == rows->end())
    return make_error(errc::invalid_argument,
                      "no schedule '" + printable(name) + "'");
  auto def = schedule_definition::parse(row->definition);
  if (!def)
    return std::move(def.error());
  scheduled_params p;
  p.request = def->request();
  p.schedule = name;
  p.trigger = true;
  p.allow_running = def->overlap == overlap_policy::allow;
  auto j = db_.enqueue_scheduled(p);
  if (!j)
    return std::move(j.error());
  if (!*j)
    return make_error(errc::invalid_state,
                      "schedule '" + printable(name) +
                          "' changed meanwhile; try again");
  event e{event_kind::job_enqueued};
  e.job = **j;
  e.queue = queue_of(def->job);
  e.message = "triggered schedule '" + printable(name) + "'";
  effects_.events.push_back(std::move(e));
  effects_.wake.push_back(def->job);
  return std::move(**j);
}

caf::expected<std::vector<schedule_info>> control_plane::schedules() {
  auto rows = db_.list_schedules();
  if (!rows)
    return std::move(rows.error());
  auto pauses = db_.pauses();
  if (!pauses)
    return std::move(pauses.error());
  std::vector<schedule_info> result;
  for (auto& row : *rows) {
    schedule_info x;
    x.declared = row.declared;
    x.seen_at = row.seen_at;
    x.updated_at = row.updated_at;
    if (auto def = schedule_definition::parse(row.definition))
      x.definition = std::move(*def);
    else {
      x.definition.name = row.name;
      x.problem = message_of(def.error());
    }
    for (auto& p : *pauses)
      if (p.kind == pause_kind::schedule && p.name == row.name)
        x.paused = true;
    auto last = db_.last_scheduled_run(row.name);
    if (!last)
      return std::move(last.error());
    if (*last) {
      x.last_at = (*last)->scheduled_at;
      x.last_job = (*last)->job_id;
      x.last_state = (*last)->running   ? "running"
                     : (*last)->pending ? "waiting"
                                        : "finished";
    }
    result.push_back(std::move(x));
  }
  return result;
}

} // namespace bg_jobs::detail
