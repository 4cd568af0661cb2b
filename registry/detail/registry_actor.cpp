#include "bg_jobs/registry/detail/registry_actor.hpp"

#include <atomic>
#include <map>
#include <memory>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/detail/enqueuer.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

struct entry {
  std::string name;
  std::string owner;
};

struct registry_state {
  node_context ctx;
  std::map<caf::actor_addr, entry> by_addr;
  std::map<std::string, caf::actor> by_name;

  static inline const char* name = "bg_jobs.registry";

  void report_released(const std::vector<job>& jobs, const std::string& why) {
    for (auto& j : jobs) {
      event e{event_kind::job_released};
      e.job = j;
      e.message = why;
      ctx.emit(std::move(e));
    }
  }

  /// Releases the jobs of `owner`, reconnecting once if the connection
  /// went stale; returns how many.
  size_t release(
      const std::string& owner, const std::string& what, const std::string& why,
      caf::expected<std::vector<job>> (db_adapter::*op)(const std::string&)) {
    size_t n = 0;
    std::lock_guard<std::mutex> guard{ctx.shared->mtx};
    ctx.shared->door.store().run_now(what, [&](db_adapter& db) -> caf::error {
      auto jobs = (db.*op)(owner);
      if (!jobs)
        return std::move(jobs.error());
      n = jobs->size();
      report_released(*jobs, why);
      return caf::none;
    });
    return n;
  }

  void release_leftovers() {
    release(ctx.node,
            "releasing reservations left by an earlier run of node '" +
                ctx.node + "'",
            "left reserved by an earlier run of node '" + ctx.node + "'",
            &db_adapter::release_jobs_of_node);
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
    if (!ent.owner.empty())
      released = release(ent.owner, "releasing the jobs of '" + ent.name + "'",
                         "its holder '" + ent.name + "' died",
                         &db_adapter::release_jobs_reserved_by);
    if (!dm.reason || dm.reason == caf::exit_reason::user_shutdown)
      return;
    event e{event_kind::actor_down};
    e.message = "'" + ent.name + "' died (" + sys.render(dm.reason) + "); " +
                std::to_string(released) + " reserved job(s) released";
    ctx.emit(std::move(e));
  }
};

caf::behavior registry_actor(caf::stateful_actor<registry_state>* self,
                             node_context ctx, bool release_leftovers) {
  self->state.ctx = std::move(ctx);
  if (release_leftovers)
    self->state.release_leftovers();
  // At a clean shutdown the node gives its name up for the next start:
  // before this actor quits, so that the supervisor, and `shutdown()`
  // after it, return only once a new start may take the name; and, should
  // the actor end otherwise without an error, as it ends.
  auto give_up = [connect = self->state.ctx.connect,
                  node = self->state.ctx.node,
                  instance = self->state.ctx.instance,
                  done = std::make_shared<std::atomic<bool>>(false)] {
    if (done->exchange(true))
      return;
    if (auto db = connect())
      (void)(*db)->release_node(node, instance);
  };
  self->set_exit_handler([self, give_up](caf::exit_msg& em) {
    if (!em.reason)
      return; // as CAF's default: a link that ended normally stops nothing
    if (em.reason == caf::exit_reason::user_shutdown)
      give_up();
    self->quit(em.reason);
  });
  self->attach_functor([give_up](const caf::error& reason) {
    if (!reason || reason == caf::exit_reason::user_shutdown)
      give_up();
  });
  self->set_down_handler(
      [self](caf::down_msg& dm) { self->state.on_down(dm, self->system()); });
  return {
      [=](register_atom, const std::string& name, const std::string& owner,
          const caf::actor& a) {
        auto& st = self->state;
        if (!a)
          return caf::unit;
        if (st.by_addr.count(a.address()) == 0)
          self->monitor(a);
        st.by_addr[a.address()] = entry{name, owner};
        st.by_name[name] = a;
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
      [=](reregister_atom) {},
  };
}

} // namespace

caf::actor spawn_registry(caf::event_based_actor* parent, node_context ctx,
                          bool release_leftovers) {
  return parent->spawn<caf::linked + caf::detached>(
      registry_actor, std::move(ctx), release_leftovers);
}

} // namespace bg_jobs::detail
