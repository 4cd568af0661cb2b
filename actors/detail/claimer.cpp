#include "bg_jobs/actors/detail/claimer.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/detail/store_connection.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

struct claimer_state {
  store_connection store;

  static inline const char* name = "bg_jobs.claimer";

  void run(claim_call& call) {
    auto db = store.get();
    if (!db) {
      call.error = make_error(errc::database_unavailable,
                              "reserving jobs: the store is unreachable");
      return;
    }
    try {
      auto r = db->complete_and_reserve(call.outcomes, call.params);
      if (!r) {
        call.error = std::move(r.error());
        store.failed(call.error, "recording outcomes and reserving jobs");
        return;
      }
      if (r->reserve_error)
        store.failed(r->reserve_error, "reserving jobs");
      call.done = std::move(*r);
    } catch (const std::exception& ex) {
      call.error = make_error(errc::database_error,
                              std::string{"reserving jobs: "} + ex.what());
    }
  }
};

caf::behavior claimer_actor(caf::stateful_actor<claimer_state>* self,
                            node_context ctx, std::string queue_name) {
  self->state.store = store_connection{std::move(ctx), "claimer", queue_name};
  return {
      [=](claim_atom, claim_call_ptr& call) {
        self->state.run(*call);
        return call;
      },
  };
}

} // namespace

caf::actor spawn_claimer(caf::event_based_actor* queue, node_context ctx,
                         std::string queue_name) {
  return queue->spawn<caf::linked + caf::detached>(
      claimer_actor, std::move(ctx), std::move(queue_name));
}

} // namespace bg_jobs::detail
