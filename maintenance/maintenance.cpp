#include "bg_jobs/maintenance/maintenance.hpp"

#include <algorithm>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

namespace {

caf::error fail(const std::string& msg) {
  return make_error(errc::invalid_config, msg);
}

} // namespace

caf::error maintenance_config::validate() const {
  if (auto err = rescue_service::config{lease, interval()}.validate())
    return err;
  if (auto err = prune_service::config{retention, prune_every}.validate())
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

maintenance_report rescue_service::run_once(db_adapter& db, timestamp) {
  maintenance_report report;
  if (auto rescued = db.rescue_jobs(cfg_.lease); rescued)
    report.rescued = std::move(*rescued);
  else
    report.errors.push_back(std::move(rescued.error()));
  return report;
}

maintenance_report prune_service::run_once(db_adapter& db, timestamp) {
  maintenance_report report;
  // Batch after batch while they come back full, within the budget; a
  // round that ends on its budget is followed by the next a second later,
  // so that history arriving faster than a batch a minute is pruned as it
  // comes, and the node's other upkeep waits little.
  auto until = std::chrono::steady_clock::now() + cfg_.budget;
  behind_ = false;
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
      behind_ = true;
      break;
    }
  }
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
  if (!r->vacuumed)
    return report;
  last_ = now;
  bar_ = r->dead_rows_after < cfg_.dead_rows / 2
             ? cfg_.dead_rows
             : r->dead_rows_after + std::max(cfg_.dead_rows, r->dead_rows_after);
  return report;
}

std::vector<std::shared_ptr<maintenance_service>>
maintenance_services(const std::string& node, const maintenance_config& cfg) {
  std::vector<std::shared_ptr<maintenance_service>> xs;
  xs.push_back(std::make_shared<heartbeat_service>(
      heartbeat_service::config{node, cfg.interval()}));
  xs.push_back(std::make_shared<rescue_service>(
      rescue_service::config{cfg.lease, cfg.interval()}));
  xs.push_back(std::make_shared<prune_service>(
      prune_service::config{cfg.retention, cfg.prune_every}));
  if (cfg.vacuum_dead_rows > 0)
    xs.push_back(std::make_shared<vacuum_service>(
        vacuum_service::config{cfg.vacuum_dead_rows, cfg.vacuum_every}));
  return xs;
}

} // namespace bg_jobs
