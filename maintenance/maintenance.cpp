#include "bg_jobs/maintenance/maintenance.hpp"

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
  return prune_service::config{retention, prune_every}.validate();
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
  if (auto n = db.prune_jobs(cfg_.retention); n)
    report.pruned = *n;
  else
    report.errors.push_back(std::move(n.error()));
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
  return xs;
}

} // namespace bg_jobs
