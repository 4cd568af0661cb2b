#include "bg_jobs/registry/registry_actor.hpp"

#include <map>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/actors/store_connection.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

namespace {

struct entry {
  std::string name;
  std::string owner;
};

struct registry_state {
  runtime_context ctx;
  store_connection store;
  std::map<caf::actor_addr, entry> by_addr;
  std::map<std::string, caf::actor> by_name;

  static inline const char* name = "bg_jobs.registry";

  void report_released(const std::vector<job>& jobs, const std::string& why) {
    for (auto& j : jobs) {
      event e{event_kind::job_released};
      e.job = j;
      e.message = why;
      ctx.bus->emit(std::move(e));
    }
  }

  void release_leftovers() {
    auto db = store.get();
    if (!db)
      return;
    auto jobs = db->release_jobs_of_node(ctx.node);
    if (!jobs) {
      store.failed(jobs.error(),
                   "releasing reservations left by an earlier run of node '"
                     + ctx.node + "'");
      return;
    }
    report_released(*jobs, "left reserved by an earlier run of node '"
                             + ctx.node + "'");
  }

  void on_down(const caf::down_msg& dm, caf::actor_system& sys) {
    auto i = by_addr.find(dm.source);
    if (i == by_addr.end())
      return;
    auto ent = std::move(i->second);
    by_addr.erase(i);
    if (auto j = by_name.find(ent.name);
        j != by_name.end() && j->second.address() == dm.source)
      by_name.erase(j);
    size_t released = 0;
    if (!ent.owner.empty()) {
      if (auto db = store.get()) {
        auto jobs = db->release_jobs_reserved_by(ent.owner);
        if (jobs) {
          released = jobs->size();
          report_released(*jobs, "its holder '" + ent.name + "' died");
        } else {
          store.failed(jobs.error(), "releasing the jobs of '" + ent.name + "'");
        }
      }
    }
    if (!dm.reason || dm.reason == caf::exit_reason::user_shutdown)
      return;
    event e{event_kind::actor_down};
    e.message = "'" + ent.name + "' died (" + sys.render(dm.reason) + "); "
                + std::to_string(released) + " reserved job(s) released";
    ctx.bus->emit(std::move(e));
  }
};

caf::behavior registry_actor(caf::stateful_actor<registry_state>* self,
                             runtime_context ctx, bool release_leftovers) {
  self->state.ctx = std::move(ctx);
  self->state.store = store_connection{self->state.ctx, "registry", {}};
  if (release_leftovers)
    self->state.release_leftovers();
  self->set_down_handler([self](caf::down_msg& dm) {
    self->state.on_down(dm, self->system());
  });
  return {
    [=](register_atom, const std::string& name, const std::string& owner,
        const caf::actor& a) {
      self->monitor(a);
      self->state.by_addr[a.address()] = entry{name, owner};
      self->state.by_name[name] = a;
      return caf::unit;
    },
    [=](lookup_atom, const std::string& name) {
      auto i = self->state.by_name.find(name);
      return i != self->state.by_name.end() ? i->second : caf::actor{};
    },
    [=](names_atom) {
      std::vector<std::string> names;
      for (auto& kvp : self->state.by_name)
        names.push_back(kvp.first);
      return names;
    },
    [=](ready_atom) { return caf::unit; },
  };
}

} // namespace

caf::actor spawn_registry(caf::event_based_actor* parent, runtime_context ctx,
                          bool release_leftovers) {
  return parent->spawn<caf::linked + caf::detached>(
    registry_actor, std::move(ctx), release_leftovers);
}

} // namespace bg_jobs
