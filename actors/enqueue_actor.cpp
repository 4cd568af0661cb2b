#include "bg_jobs/actors/enqueue_actor.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

namespace {

struct enqueue_state {
  runtime_context ctx;
  std::set<std::string> job_names;
  std::unique_ptr<db_adapter> db;

  static inline const char* name = "bg_jobs.enqueue";

  caf::error connect() {
    if (db)
      return caf::none;
    auto conn = ctx.connect();
    if (!conn)
      return std::move(conn.error());
    db = std::move(*conn);
    return caf::none;
  }

  caf::error check_name(const job_request& r) {
    if (job_names.count(r.name()) > 0)
      return caf::none;
    event e{event_kind::no_worker_for_job};
    e.message = "no worker for job '" + r.name() + "'; payload "
                + r.payload().dump(-1, ' ', false,
                                   nlohmann::json::error_handler_t::replace);
    ctx.bus->emit(std::move(e));
    return make_error(errc::no_worker_for_job,
                      "no worker is registered for job '" + r.name() + "'");
  }

  void on_store_error(const caf::error& err, const std::string& name) {
    event e{event_kind::db_error};
    e.queue = name;
    e.message = "enqueue failed: " + describe(err);
    ctx.bus->emit(std::move(e));
    if (code_of(err) == errc::connection_lost
        || code_of(err) == errc::database_unavailable)
      db.reset();
  }

  caf::result<job> enqueue(const job_request& r) {
    if (auto err = check_name(r))
      return err;
    if (auto err = connect()) {
      on_store_error(err, r.name());
      return err;
    }
    auto j = db->enqueue_job(r);
    if (!j) {
      on_store_error(j.error(), r.name());
      return std::move(j.error());
    }
    if (ctx.bus->active()) {
      event e{event_kind::job_enqueued};
      e.job = *j;
      ctx.bus->emit(std::move(e));
    }
    return std::move(*j);
  }

  caf::result<std::vector<int64_t>>
  enqueue_many(const std::vector<job_request>& rs) {
    for (auto& r : rs)
      if (auto err = check_name(r))
        return err;
    if (auto err = connect()) {
      on_store_error(err, {});
      return err;
    }
    auto ids = db->enqueue_jobs(rs);
    if (!ids) {
      on_store_error(ids.error(), {});
      return std::move(ids.error());
    }
    if (ctx.bus->active())
      for (size_t i = 0; i < rs.size(); ++i) {
        event e{event_kind::job_enqueued};
        job j;
        j.id = (*ids)[i];
        j.name = rs[i].name();
        j.payload = rs[i].payload();
        e.job = std::move(j);
        ctx.bus->emit(std::move(e));
      }
    return std::move(*ids);
  }
};

caf::behavior enqueue_actor(caf::stateful_actor<enqueue_state>* self,
                            runtime_context ctx,
                            std::set<std::string> job_names) {
  self->state.ctx = std::move(ctx);
  self->state.job_names = std::move(job_names);
  return {
    [=](enqueue_atom, const job_request& r) {
      return self->state.enqueue(r);
    },
    [=](enqueue_atom, const std::vector<job_request>& rs) {
      return self->state.enqueue_many(rs);
    },
  };
}

} // namespace

caf::actor spawn_enqueue_actor(caf::event_based_actor* parent,
                               runtime_context ctx,
                               std::set<std::string> job_names) {
  return parent->spawn<caf::linked + caf::detached>(
    enqueue_actor, std::move(ctx), std::move(job_names));
}

} // namespace bg_jobs
