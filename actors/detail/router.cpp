#include "bg_jobs/actors/detail/router.hpp"

#include <map>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

struct router_state {
  node_context ctx;
  std::map<std::string, caf::actor> queues;

  static inline const char* name = "bg_jobs.router";
};

caf::behavior router_actor(caf::stateful_actor<router_state>* self,
                           node_context ctx) {
  self->state.ctx = std::move(ctx);
  return {
      [=](route_atom, const std::string& queue, const caf::actor& a) {
        self->state.queues[queue] = a;
      },
      [=](wake_atom a, const std::string& job_name) {
        auto& st = self->state;
        if (job_name == "*") {
          for (auto& kvp : st.queues)
            self->send(kvp.second, a, job_name);
          // (It may stand for announcements that were not told apart.)
          if (auto m = st.ctx.dir->get(actor_directory::maintenance))
            self->send(m, a, job_name);
          return;
        }
        if (job_name == workflows_changed) {
          if (auto m = st.ctx.dir->get(actor_directory::maintenance))
            self->send(m, a, job_name);
          return;
        }
        if (job_name == schedules_changed) {
          if (auto s = st.ctx.dir->get(actor_directory::scheduler))
            self->send(s, a, job_name);
          return;
        }
        auto& plan = st.ctx.plan->queue_of_job;
        auto i = plan.find(job_name);
        if (i == plan.end())
          return;
        if (auto q = st.queues.find(i->second); q != st.queues.end())
          self->send(q->second, a, job_name);
      },
      [=](cancel_atom a, int64_t job_id, const std::string& reason,
          const std::string& job_name) {
        auto& st = self->state;
        auto& plan = st.ctx.plan->queue_of_job;
        if (auto i = plan.find(job_name); i != plan.end())
          if (auto q = st.queues.find(i->second); q != st.queues.end())
            self->send(q->second, a, job_id, reason);
      },
      [=](scale_atom a, const std::string& queue,
          int n) -> caf::result<caf::message> {
        auto& st = self->state;
        auto q = st.queues.find(queue);
        if (q == st.queues.end())
          return make_error(errc::unknown_queue,
                            "no queue '" + printable(queue) + "' runs here");
        return self->delegate(q->second, a, n);
      },
      [=](ready_atom) { return caf::unit; },
      [=](reregister_atom) {},
  };
}

} // namespace

caf::actor spawn_router(caf::event_based_actor* parent, node_context ctx) {
  return parent->spawn<caf::linked>(router_actor, std::move(ctx));
}

} // namespace bg_jobs::detail
