#include "bg_jobs/actors/detail/front_door.hpp"

#include <set>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/detail/store_connection.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

struct front_door_state {
  node_context ctx;
  store_connection store;

  static inline const char* name = "bg_jobs.front_door";

  caf::error check_name(const job_request& r) {
    if (ctx.plan->accepts(r.name()))
      return caf::none;
    event e{event_kind::no_worker_for_job};
    e.message = "no worker for job '" + printable(r.name()) + "'";
    ctx.emit(std::move(e));
    return make_error(errc::no_worker_for_job,
                      "no worker is registered for job '" +
                          printable(r.name()) +
                          "' (declare names enqueued for other processes with "
                          "with_enqueued_job_names)");
  }

  /// The connection, or the error that says why there is none.
  caf::expected<db_adapter*> connection() {
    if (auto db = store.get())
      return db;
    return make_error(errc::database_unavailable,
                      "the store is unreachable; retrying in " +
                          std::to_string(store.backoff().count()) + " ms");
  }

  void wake(caf::event_based_actor* self, const std::string& job_name) {
    if (auto router = ctx.dir->get(actor_directory::router))
      self->send(router, wake_atom::value, job_name);
  }

  caf::result<job> enqueue(caf::event_based_actor* self, const job_request& r) {
    if (auto err = check_name(r))
      return err;
    auto db = connection();
    if (!db)
      return std::move(db.error());
    auto j = (*db)->enqueue_job(r);
    if (!j) {
      store.failed(j.error(), "enqueueing a job of '" + r.name() + "'");
      return std::move(j.error());
    }
    if (j->conflict)
      return std::move(*j); // a duplicate: nothing new to run
    wake(self, j->name);
    if (ctx.bus->active()) {
      event e{event_kind::job_enqueued};
      e.job = *j;
      ctx.emit(std::move(e));
    }
    return std::move(*j);
  }

  caf::result<std::vector<int64_t>>
  enqueue_many(caf::event_based_actor* self,
               const std::vector<job_request>& rs) {
    std::set<std::string> names;
    for (auto& r : rs) {
      if (auto err = check_name(r))
        return err;
      names.insert(r.name());
    }
    auto db = connection();
    if (!db)
      return std::move(db.error());
    auto ids = (*db)->enqueue_jobs(rs);
    if (!ids) {
      store.failed(ids.error(), "enqueueing jobs");
      return std::move(ids.error());
    }
    for (auto& n : names)
      wake(self, n);
    if (ctx.bus->active())
      for (size_t i = 0; i < rs.size(); ++i) {
        event e{event_kind::job_enqueued};
        job j;
        j.id = (*ids)[i];
        j.name = rs[i].name();
        j.payload = rs[i].payload();
        e.job = std::move(j);
        ctx.emit(std::move(e));
      }
    return std::move(*ids);
  }
};

/// Runs `f`, turning an exception into an error reply: the front door
/// never dies of a request.
template <class F>
auto guarded(F f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& ex) {
    return make_error(errc::invalid_argument,
                      std::string{"the request failed: "} + ex.what());
  } catch (...) {
    return make_error(errc::invalid_argument, "the request failed");
  }
}

caf::behavior front_door_actor(caf::stateful_actor<front_door_state>* self,
                               node_context ctx) {
  self->state.ctx = std::move(ctx);
  self->state.store = store_connection{self->state.ctx, "front door", {}};
  self->set_default_handler(
      [self](caf::scheduled_actor*,
             caf::message_view& x) -> caf::result<caf::message> {
        event e{event_kind::queue_error};
        e.message = "bg_jobs actor ignored an unexpected message: " +
                    caf::to_string(x.content());
        self->state.ctx.emit(std::move(e));
        return caf::sec::unexpected_message;
      });
  return {
      [=](enqueue_atom, const job_request& r) {
        return guarded([&] { return self->state.enqueue(self, r); });
      },
      [=](enqueue_atom, const std::vector<job_request>& rs) {
        return guarded([&] { return self->state.enqueue_many(self, rs); });
      },
      [=](lookup_atom a, const std::string& name) {
        return self->delegate(
            self->state.ctx.dir->get(actor_directory::registry), a, name);
      },
      [=](names_atom a) {
        return self->delegate(
            self->state.ctx.dir->get(actor_directory::registry), a);
      },
      [=](flush_atom a) {
        return self->delegate(self->state.ctx.dir->get(actor_directory::events),
                              a);
      },
      [=](ready_atom) { return caf::unit; },
      [=](reregister_atom) {},
  };
}

} // namespace

caf::actor spawn_front_door(caf::event_based_actor* parent, node_context ctx) {
  return parent->spawn<caf::linked + caf::detached>(front_door_actor,
                                                    std::move(ctx));
}

} // namespace bg_jobs::detail
