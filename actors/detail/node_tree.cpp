#include "bg_jobs/actors/detail/node_tree.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "bg_jobs/actors/builder.hpp"
#include "bg_jobs/actors/detail/event_actor.hpp"
#include "bg_jobs/actors/detail/front_door.hpp"
#include "bg_jobs/actors/detail/listener_actor.hpp"
#include "bg_jobs/actors/detail/queue_actor.hpp"
#include "bg_jobs/actors/detail/router.hpp"
#include "bg_jobs/actors/detail/supervisor.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/maintenance/detail/periodic_actor.hpp"
#include "bg_jobs/registry/detail/registry_actor.hpp"
#include "bg_jobs/scheduling/detail/scheduler_actor.hpp"

namespace bg_jobs::detail {

caf::expected<std::vector<queue_spec>>
node_queues(const std::vector<queue_spec>& declared,
            const std::vector<scheduled_job_spec>& scheduled) {
  auto qs = declared;
  auto index_of = [&qs](const std::string& name) {
    for (size_t i = 0; i < qs.size(); ++i)
      if (qs[i].name() == name)
        return i;
    return qs.size();
  };
  auto shared = scheduled_job_spec::default_queue;
  bool declared_shared = index_of(shared) < qs.size();
  for (auto& sj : scheduled) {
    auto i = index_of(sj.queue());
    if (i == qs.size()) {
      if (sj.queue() != shared)
        return make_error(errc::invalid_config,
                          "scheduled job '" + sj.job_name() + "' names queue '" +
                              printable(sj.queue()) +
                              "', which this node does not declare");
      qs.push_back(
          queue_spec{shared}
              .with_max_concurrent_jobs(
                  scheduled_job_spec::default_queue_concurrency)
              .with_poll_interval(sj.poll_interval()));
    } else if (sj.queue() == shared && !declared_shared &&
               sj.poll_interval() < qs[i].poll_interval()) {
      qs[i].with_poll_interval(sj.poll_interval());
    }
    qs[i].with_worker(sj.to_worker());
  }
  return qs;
}

node_plan node_plan::make(const builder& config, bool listen) {
  node_plan p;
  // The builder validated the configuration.
  p.queues = *node_queues(config.queues(), config.scheduled_jobs());
  p.scheduled = config.scheduled_jobs();
  p.listeners.global = config.event_listeners();
  p.any_listener = !p.listeners.global.empty();
  for (auto& sj : p.scheduled) {
    if (sj.event_listeners().empty())
      continue;
    auto& ls = p.listeners.per_job[sj.job_name()];
    ls.insert(ls.end(), sj.event_listeners().begin(),
              sj.event_listeners().end());
    p.any_listener = true;
  }
  for (auto& q : p.queues) {
    if (!q.event_listeners().empty()) {
      p.listeners.per_queue[q.name()] = q.event_listeners();
      p.any_listener = true;
    }
    for (auto& w : q.workers()) {
      p.queue_of_job.emplace(w.job_name(), q.name());
      if (w.concurrency_key_of())
        p.key_of_job.emplace(w.job_name(), w.concurrency_key_of());
    }
  }
  p.listen = listen && !p.queues.empty();
  p.enqueued_for_others.insert(config.enqueued_job_names().begin(),
                               config.enqueued_job_names().end());
  p.any_job_name = config.any_job_name();
  p.keys = config.keys();
  p.maintenance = config.maintenance();
  p.grace = config.shutdown_grace_period();
  p.progress_interval = config.progress_interval();
  p.max_restarts = config.supervisor_max_frequency();
  p.restart_period = config.supervisor_frequency_period();
  return p;
}

namespace {

/// The names of the schedules `plan` declares.
std::set<std::string> declared_schedules(const node_plan& plan) {
  std::set<std::string> names;
  for (auto& s : plan.scheduled)
    names.insert(s.job_name());
  return names;
}


enum tier { events_tier, registry_tier, services_tier, queues_tier };

using sup_ptr = caf::event_based_actor*;

/// Names `a` in the actor system's registry, replacing an earlier
/// incarnation (`put` alone keeps the first).
void publish(sup_ptr sup, caf::atom_value key, const caf::actor& a) {
  auto& reg = sup->system().registry();
  reg.erase(key);
  reg.put(key, a);
}

} // namespace

caf::actor spawn_node(caf::actor_system& sys, node_context ctx) {
  auto& plan = *ctx.plan;
  supervisor_config cfg;
  cfg.max_restarts = plan.max_restarts;
  cfg.restart_period = plan.restart_period;
  cfg.stop_timeout = plan.grace + std::chrono::seconds{5};
  cfg.emit = [bus = ctx.bus](event e) { bus->emit(std::move(e)); };
  // The running listener's interrupt: whoever stops it signals this first.
  auto listening = std::make_shared<std::shared_ptr<wakeup_interrupt>>();
  cfg.on_exit = [&sys, ctx, listening] {
    if (*listening)
      (*listening)->signal();
    sys.registry().erase(system_registry_key);
    sys.registry().erase(registry_registry_key);
    ctx.bus->retarget(caf::actor{});
    ctx.dir->clear();
  };
  auto& cs = cfg.children;
  auto add = [&](std::string name, int t,
                 std::function<caf::actor(sup_ptr)> start) -> child_spec& {
    child_spec c;
    c.name = std::move(name);
    c.tier = t;
    c.start = std::move(start);
    cs.push_back(std::move(c));
    return cs.back();
  };
  add("events", events_tier, [ctx](sup_ptr sup) {
    auto a = spawn_event_actor(sup, ctx.plan->listeners);
    ctx.bus->retarget(a);
    ctx.dir->set(actor_directory::events, a);
    return a;
  }).stop = [](sup_ptr sup, const caf::actor& a) {
    // A plain message, so that it delivers every event sent before.
    sup->send(a, shutdown_atom::value);
  };
  auto first = std::make_shared<bool>(true);
  auto& reg = add("registry", registry_tier, [ctx, first](sup_ptr sup) {
    auto a = spawn_registry(sup, ctx, *first);
    *first = false;
    publish(sup, registry_registry_key, a);
    ctx.dir->set(actor_directory::registry, a);
    return a;
  });
  // Queues start only once the registry released what this node left
  // reserved in an earlier run.
  reg.barrier = true;
  reg.others_reregister = true;
  add("router", services_tier, [ctx](sup_ptr sup) {
    auto a = spawn_router(sup, ctx);
    ctx.dir->set(actor_directory::router, a);
    return a;
  }).others_reregister = true;
  add("front door", services_tier, [ctx](sup_ptr sup) {
    auto a = spawn_front_door(sup, ctx);
    ctx.dir->set(actor_directory::front_door, a);
    publish(sup, system_registry_key, a);
    return a;
  });
  add("maintenance", services_tier, [ctx](sup_ptr sup) {
    auto a = spawn_periodic(
        sup, ctx,
        maintenance_services(ctx.node, ctx.plan->maintenance,
                             declared_schedules(*ctx.plan), ctx.plan->listen));
    ctx.dir->set(actor_directory::maintenance, a);
    return a;
  });
  if (plan.listen) {
    auto& l = add("listener", services_tier, [ctx, listening](sup_ptr sup) {
      *listening = std::make_shared<wakeup_interrupt>();
      return spawn_listener(sup, ctx, *listening);
    });
    l.await_ready = true;
    l.stop = [listening](sup_ptr, const caf::actor& a) {
      if (*listening)
        (*listening)->signal();
      // Anonymous: an exit from the supervisor would undo the link it
      // waits on.
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    };
  }
  // The scheduler starts before the queues: it answers ready after its
  // first round, so that what it decides about missed runs is settled
  // before a queue could run them. Queues and the scheduler register
  // themselves before they answer ready, so that every name can be looked
  // up once the tree has started.
  // Every node that runs a queue has one: schedules added at run time run
  // on the nodes that run their job.
  if (!plan.scheduled.empty() || !plan.queues.empty())
    add("scheduler", queues_tier,
        [ctx](sup_ptr sup) { return spawn_scheduler(sup, ctx); })
        .barrier = true;
  for (size_t i = 0; i < plan.queues.size(); ++i) {
    auto& q = add(plan.queues[i].name(), queues_tier,
                  [ctx, i](sup_ptr sup) { return spawn_queue(sup, ctx, i); });
    q.await_ready = true;
    q.ready_timeout = plan.queues[i].init_timeout();
    q.stop = [grace = plan.grace](sup_ptr sup, const caf::actor& a) {
      sup->send(a, shutdown_atom::value, static_cast<int64_t>(grace.count()));
    };
  }
  return spawn_supervisor(sys, std::move(cfg));
}

} // namespace bg_jobs::detail
