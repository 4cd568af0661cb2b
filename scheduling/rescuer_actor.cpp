#include "bg_jobs/scheduling/rescuer_actor.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/store_connection.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

caf::error maintenance_config::validate() const {
  auto fail = [](const std::string& msg) {
    return make_error(errc::invalid_config, msg);
  };
  if (lease.count() <= 0)
    return fail("the node lease must be positive");
  if (retention.succeeded_max_age.count() < 0
      || retention.failed_max_age.count() < 0)
    return fail("retention ages may not be negative");
  if (retention.max_succeeded < 0 || retention.max_failed < 0)
    return fail("retention counts may not be negative");
  if (retention.batch <= 0)
    return fail("the pruning batch must be positive");
  if (prune_every.count() <= 0)
    return fail("the pruning interval must be positive");
  return caf::none;
}

maintenance_report run_maintenance_once(db_adapter& db, const std::string& node,
                                        const maintenance_config& cfg,
                                        bool prune) {
  maintenance_report report;
  if (auto hb = db.heartbeat(node); hb)
    report.heartbeat = true;
  else
    report.errors.push_back(std::move(hb.error()));
  if (auto rescued = db.rescue_jobs(cfg.lease); rescued)
    report.rescued = std::move(*rescued);
  else
    report.errors.push_back(std::move(rescued.error()));
  if (prune) {
    if (auto n = db.prune_jobs(cfg.retention); n)
      report.pruned = *n;
    else
      report.errors.push_back(std::move(n.error()));
  }
  return report;
}

namespace {

using upkeep_atom = caf::atom_constant<caf::atom("upkeep")>;

struct rescuer_state {
  runtime_context ctx;
  maintenance_config cfg;
  store_connection store;
  std::chrono::steady_clock::time_point next_prune;

  static inline const char* name = "bg_jobs.rescuer";

  void run() {
    auto db = store.get();
    if (!db)
      return;
    auto now = std::chrono::steady_clock::now();
    bool prune = now >= next_prune;
    if (prune)
      next_prune = now + cfg.prune_every;
    auto report = run_maintenance_once(*db, ctx.node, cfg, prune);
    for (auto& j : report.rescued) {
      event e{event_kind::job_rescued};
      e.message = j.last_error.value_or("rescued");
      e.job = std::move(j);
      ctx.bus->emit(std::move(e));
    }
    for (auto& err : report.errors)
      store.failed(err, "upkeep");
  }
};

caf::behavior rescuer_actor(caf::stateful_actor<rescuer_state>* self,
                            runtime_context ctx, maintenance_config cfg) {
  self->state.ctx = std::move(ctx);
  self->state.store = store_connection{self->state.ctx, "rescuer", {}};
  self->state.cfg = cfg;
  self->state.next_prune = std::chrono::steady_clock::now() + cfg.prune_every;
  self->send(self, upkeep_atom::value);
  return {
    [=](upkeep_atom) {
      self->state.run();
      self->delayed_send(self, self->state.cfg.interval(),
                         upkeep_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_rescuer(caf::event_based_actor* parent, runtime_context ctx,
                         maintenance_config cfg) {
  return parent->spawn<caf::linked + caf::detached>(rescuer_actor,
                                                    std::move(ctx), cfg);
}

} // namespace bg_jobs
