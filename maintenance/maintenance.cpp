#include "bg_jobs/maintenance/maintenance.hpp"

#include <algorithm>

#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/core/workflow.hpp"

namespace bg_jobs {

namespace {

caf::error fail(const std::string& msg) {
  return make_error(errc::invalid_config, msg);
}

} // namespace

caf::error maintenance_config::validate() const {
  if (auto err = rescue_service::config{lease, interval()}.validate())
    return err;
  if (auto err = leader_service::config{"n", lease}.validate())
    return err;
  if (auto err = prune_service::config{retention, prune_every}.validate())
    return err;
  if (auto err = workflow_watch_service::config{workflow_watch_every}.validate())
    return err;
  if (auto err = schedule_sweep_service::config{schedule_stale_after}.validate())
    return err;
  return vacuum_service::config{vacuum_dead_rows, vacuum_every}.validate();
}

caf::error vacuum_service::config::validate() const {
  if (dead_rows < 0)
    return fail("the dead rows before a vacuum may not be negative");
  if (every.count() <= 0)
    return fail("the vacuum interval must be positive");
  return caf::none;
}

caf::error heartbeat_service::config::validate() const {
  if (node.empty())
    return fail("the heartbeat needs a node name");
  if (every.count() <= 0)
    return fail("the heartbeat interval must be positive");
  return caf::none;
}

caf::error rescue_service::config::validate() const {
  if (lease.count() <= 0)
    return fail("the node lease must be positive");
  if (every.count() <= 0)
    return fail("the rescue interval must be positive");
  return caf::none;
}

caf::error prune_service::config::validate() const {
  if (retention.succeeded_max_age.count() < 0 ||
      retention.failed_max_age.count() < 0)
    return fail("retention ages may not be negative");
  if (retention.max_succeeded < 0 || retention.max_failed < 0)
    return fail("retention counts may not be negative");
  if (retention.batch <= 0)
    return fail("the pruning batch must be positive");
  if (every.count() <= 0)
    return fail("the pruning interval must be positive");
  if (budget.count() < 0)
    return fail("the pruning budget may not be negative");
  return caf::none;
}

maintenance_report heartbeat_service::run_once(db_adapter& db, timestamp) {
  maintenance_report report;
  if (auto hb = db.heartbeat(cfg_.node); hb)
    report.heartbeat = true;
  else
    report.errors.push_back(std::move(hb.error()));
  return report;
}

caf::error leader_service::config::validate() const {
  if (node.empty())
    return fail("the upkeep's lease needs a node name");
  if (lease.count() < 3)
    return fail("the node lease must be at least 3 ms");
  return caf::none;
}

maintenance_report leader_service::run_once(db_adapter& db, timestamp) {
  maintenance_report report;
  // Held for two thirds of the lease and renewed every third: one missed
  // renewal keeps it, a dead holder loses it within the lease.
  auto ttl = cfg_.lease * 2 / 3;
  if (auto held = db.hold_lease(lease_name, cfg_.node, ttl); held) {
    report.leader = *held;
    if (*held)
      report.held_for = ttl;
  } else
    report.errors.push_back(std::move(held.error()));
  return report;
}

maintenance_report rescue_service::run_once(db_adapter& db, timestamp) {
  maintenance_report report;
  if (auto rescued = db.rescue_jobs(cfg_.lease); rescued)
    report.rescued = std::move(*rescued);
  else
    report.errors.push_back(std::move(rescued.error()));
  // Jobs whose expiry passed unstarted (no claim takes them): recorded as
  // cancelled, a batch per round.
  if (auto expired = db.discard_expired(1000); expired) {
    for (auto& j : *expired) {
      event e{event_kind::job_cancelled};
      e.message = "expired before it started";
      e.job = std::move(j);
      report.events.push_back(std::move(e));
    }
  } else {
    report.errors.push_back(std::move(expired.error()));
  }
  return report;
}

maintenance_report prune_service::run_once(db_adapter& db, timestamp) {
  maintenance_report report;
  // Batch after batch while they come back full, within the budget, so
  // that the node's other upkeep waits little.
  auto until = std::chrono::steady_clock::now() + cfg_.budget;
  auto behind = false;
  for (;;) {
    auto n = db.prune_jobs(cfg_.retention);
    if (!n) {
      report.errors.push_back(std::move(n.error()));
      break;
    }
    report.pruned += *n;
    if (cfg_.retention.dry_run || *n < cfg_.retention.batch)
      break;
    if (std::chrono::steady_clock::now() >= until) {
      behind = true;
      break;
    }
  }
  if (cfg_.retention.dry_run || !report.errors.empty())
    next_ = cfg_.every;
  else if (report.pruned >= cfg_.retention.batch)
    next_ = behind ? behind_every : busy_every;
  else if (report.pruned > 0)
    next_ = cfg_.every;
  else
    next_ = std::max(next_ * 2, busy_every);
  next_ = std::min(next_, cfg_.every);
  return report;
}

maintenance_report vacuum_service::run_once(db_adapter& db, timestamp) {
  maintenance_report report;
  // The raised bar holds for ten intervals: then the snapshot that kept the
  // rows may be gone, and a vacuum is tried at the usual count again.
  auto now = std::chrono::steady_clock::now();
  auto bar = now - last_ >= 10 * cfg_.every ? cfg_.dead_rows : bar_;
  auto r = db.vacuum_jobs(bar);
  if (!r) {
    report.errors.push_back(std::move(r.error()));
    return report;
  }
  report.vacuumed = r->vacuumed;
  if (r->vacuumed) {
    last_ = now;
    bar_ = r->dead_rows_after < cfg_.dead_rows / 2
               ? cfg_.dead_rows
               : r->dead_rows_after +
                     std::max(cfg_.dead_rows, r->dead_rows_after);
  }
  next_ = r->vacuumed ? pace(r->dead_rows, r->dead_rows_after, bar_, now)
                      : pace(r->dead_rows, r->dead_rows, bar, now);
  return report;
}

std::chrono::milliseconds vacuum_service::pace(int64_t dead, int64_t left_dead,
                                               int64_t bar,
                                               clock::time_point now) {
  auto next = 10 * cfg_.every;
  // The first look has no rate yet: the second comes after one interval
  // if it found a quarter of the bar dead already (a node that starts
  // under load), after five otherwise. One that finds fewer rows than the
  // last (a vacuum ran elsewhere) counts those it finds as new.
  if (seen_dead_ < 0) {
    next = left_dead >= bar / 4 ? cfg_.every : 5 * cfg_.every;
  } else {
    auto grown = dead >= seen_dead_ ? dead - seen_dead_ : dead;
    auto elapsed = std::max(std::chrono::duration<double>(now - seen_at_),
                            std::chrono::duration<double>(1e-6));
    auto rate = static_cast<double>(grown) / elapsed.count();
    auto left = static_cast<double>(std::max<int64_t>(bar - left_dead, 0));
    auto half_way = std::chrono::duration<double>(left / rate / 2);
    if (rate > 0 && half_way < next)
      next = std::chrono::duration_cast<std::chrono::milliseconds>(half_way);
  }
  seen_dead_ = left_dead;
  seen_at_ = now;
  return std::max(next, cfg_.every);
}

caf::error actions_service::config::validate() const {
  if (every.count() <= 0)
    return make_error(errc::invalid_argument,
                      "the actions interval must be positive");
  return caf::none;
}

maintenance_report actions_service::run_once(db_adapter& db, timestamp) {
  maintenance_report report;
  constexpr int batch = 100;
  auto taken = db.take_actions(batch);
  if (!taken) {
    report.errors.push_back(std::move(taken.error()));
    return report;
  }
  for (auto& a : *taken) {
    auto kind = event_kind_named(a.kind);
    if (!kind)
      continue; // written by a newer version: not ours to report
    event e{*kind};
    e.queue = std::move(a.queue);
    e.message = std::move(a.message);
    if (a.job_id != 0) {
      job j;
      j.id = a.job_id;
      j.name = std::move(a.job_name);
      e.job = std::move(j);
    }
    report.events.push_back(std::move(e));
  }
  using std::chrono::milliseconds;
  next_ = taken->empty() ? std::min(next_ * 2, std::max(cfg_.every,
                                                        milliseconds{1000}))
                         : milliseconds{taken->size() == batch ? 1 : 1000};
  return report;
}

caf::error workflow_watch_service::config::validate() const {
  if (every.count() <= 0)
    return fail("the workflow watch's interval must be positive");
  return caf::none;
}

maintenance_report workflow_watch_service::run_once(db_adapter& db,
                                                    timestamp now) {
  maintenance_report report;
  constexpr int limit = 1000;
  auto seen = db.watch_workflows(limit);
  if (!seen) {
    report.errors.push_back(std::move(seen.error()));
    return report;
  }
  for (auto& w : seen->finished) {
    auto at = w.finished_at.value_or(now);
    event e{event_kind::workflow_finished};
    e.workflow_id = w.id;
    e.state = to_string(w.state);
    e.duration = std::chrono::duration_cast<std::chrono::microseconds>(
        std::max(at - w.created_at, timestamp::duration{0}));
    e.message = "workflow " + std::to_string(w.id) + " '" + printable(w.name) +
                "' " + to_string(w.state) + ": " +
                std::to_string(w.succeeded) + " succeeded, " +
                std::to_string(w.failed) + " failed, " +
                std::to_string(w.cancelled) + " cancelled";
    report.events.push_back(std::move(e));
  }
  std::set<int64_t> stuck;
  for (auto& w : seen->stuck) {
    stuck.insert(w.id);
    if (stuck_.count(w.id) > 0)
      continue;
    event e{event_kind::workflow_stuck};
    e.workflow_id = w.id;
    e.message = "workflow " + std::to_string(w.id) + " '" + printable(w.name) +
                "': " + std::to_string(w.held) +
                " tasks held by a parent that did not succeed";
    report.events.push_back(std::move(e));
  }
  stuck_ = std::move(stuck);
  // A full page: the rest at once.
  next_ = seen->finished.size() == limit ? std::chrono::milliseconds{1}
                                         : cfg_.every;
  return report;
}

caf::error schedule_sweep_service::config::validate() const {
  if (stale_after.count() <= 0)
    return fail("the time after which an undeclared schedule stops must be "
                "positive");
  return caf::none;
}

maintenance_report schedule_sweep_service::run_once(db_adapter& db,
                                                    timestamp now) {
  maintenance_report report;
  auto rows = db.list_schedules();
  if (!rows) {
    report.errors.push_back(std::move(rows.error()));
    return report;
  }
  auto cutoff = now - cfg_.stale_after;
  auto steady_now = std::chrono::steady_clock::now();
  std::map<std::string, std::chrono::steady_clock::time_point> still;
  for (auto& row : *rows) {
    if (!row.declared || row.seen_at >= cutoff || cfg_.own.count(row.name))
      continue;
    auto first = stale_since_.find(row.name);
    auto since = first == stale_since_.end() ? steady_now : first->second;
    if (steady_now - since < cfg_.stale_after / 2) {
      still.emplace(row.name, since);
      continue;
    }
    auto gone = db.remove_schedule(row.name, cutoff);
    if (!gone) {
      report.errors.push_back(std::move(gone.error()));
      continue;
    }
    if (!gone->removed)
      continue;
    event e{event_kind::schedule_removed};
    e.queue = row.name;
    e.message = "schedule '" + printable(row.name) +
                "' stopped: no node has declared it since " +
                to_iso8601(row.seen_at);
    if (gone->cancelled_job)
      e.message += "; its waiting occurrence (job " +
                   std::to_string(*gone->cancelled_job) + ") was cancelled";
    report.events.push_back(std::move(e));
  }
  stale_since_ = std::move(still);
  return report;
}

std::vector<std::shared_ptr<maintenance_service>>
maintenance_services(const std::string& node, const maintenance_config& cfg,
                     std::set<std::string> declared_schedules, bool announced) {
  std::vector<std::shared_ptr<maintenance_service>> xs;
  xs.push_back(std::make_shared<heartbeat_service>(
      heartbeat_service::config{node, cfg.interval()}));
  xs.push_back(std::make_shared<leader_service>(
      leader_service::config{node, cfg.lease}));
  xs.push_back(std::make_shared<rescue_service>(
      rescue_service::config{cfg.lease, cfg.interval()}));
  xs.push_back(std::make_shared<prune_service>(
      prune_service::config{cfg.retention, cfg.prune_every}));
  xs.push_back(
      std::make_shared<actions_service>(actions_service::config{cfg.interval()}));
  auto watch_every = cfg.workflow_watch_every;
  if (!announced)
    watch_every = std::min(watch_every, std::chrono::milliseconds{1000});
  xs.push_back(std::make_shared<workflow_watch_service>(
      workflow_watch_service::config{watch_every}));
  xs.push_back(std::make_shared<schedule_sweep_service>(
      schedule_sweep_service::config{cfg.schedule_stale_after,
                                     std::move(declared_schedules)}));
  if (cfg.vacuum_dead_rows > 0)
    xs.push_back(std::make_shared<vacuum_service>(
        vacuum_service::config{cfg.vacuum_dead_rows, cfg.vacuum_every}));
  return xs;
}

} // namespace bg_jobs
