#include "bg_jobs/actors/detail/front_door.hpp"

#include <algorithm>
#include <map>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/enqueuer.hpp"
#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/detail/store_connection.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

struct front_door_state {
  node_context ctx;
  /// Stores jobs; its connection serves the control operations too.
  enqueuer door;

  static inline const char* name = "bg_jobs.front_door";

  caf::expected<std::shared_ptr<db_adapter>> connection() {
    return door.connection();
  }

  caf::result<job> enqueue(const job_request& r) {
    auto j = door.enqueue(r);
    if (!j)
      return std::move(j.error());
    return std::move(*j);
  }

  caf::result<std::vector<int64_t>>
  enqueue_many(const std::vector<job_request>& rs) {
    auto ids = door.enqueue_many(rs);
    if (!ids)
      return std::move(ids.error());
    return std::move(*ids);
  }

  /// Runs one control operation on the store; a failure of the store (not
  /// of the request) is reported as such.
  template <class T, class F>
  caf::expected<T> control(const std::string& what, F f) {
    auto db = connection();
    if (!db)
      return std::move(db.error());
    caf::expected<T> r = f(**db);
    if (!r) {
      switch (code_of(r.error())) {
      case errc::database_locked:
      case errc::database_error:
      case errc::connection_lost:
      case errc::database_unavailable:
      case errc::schema_missing:
        door.store().failed(r.error(), what);
        break;
      default:
        break;
      }
    }
    return r;
  }

  /// Runs one operator action through the control plane on this node's
  /// connection, then applies what it means here.
  template <class T, class F>
  caf::expected<T> act(const std::string& what, F f) {
    action_effects fx;
    auto r = control<T>(what, [&](db_adapter& db) {
      control_plane cp{
          db, [this](const std::string& n) { return door.queue_of(n); },
          [this](pause_kind k, const std::string& n) {
            return check_pausable(k, n);
          }};
      caf::expected<T> x = f(cp);
      fx = cp.take_effects();
      return x;
    });
    in_node(ctx)(std::move(fx));
    return r;
  }

  /// Concurrency per queue on this node, as configured or scaled.
  std::map<std::string, int> concurrency;

  /// The job names of `queue` on this node, or an `unknown_queue` error.
  caf::expected<std::vector<std::string>> names_of(const std::string& queue) {
    for (auto& q : ctx.plan->queues)
      if (q.name() == queue) {
        std::vector<std::string> names;
        for (auto& w : q.workers())
          names.push_back(w.job_name());
        return names;
      }
    return make_error(errc::unknown_queue,
                      "no queue '" + printable(queue) + "' is configured");
  }

  /// Whether a pause of `name` names something this node knows (an
  /// operator node that accepts any job name may pause anything).
  caf::error check_pausable(pause_kind k, const std::string& name) {
    if (ctx.plan->any_job_name)
      return caf::none;
    if (k == pause_kind::queue) {
      auto names = names_of(name);
      return names ? caf::none : std::move(names.error());
    }
    for (auto& s : ctx.plan->scheduled)
      if (s.job_name() == name)
        return caf::none;
    return make_error(errc::unknown_queue, "no scheduled job '" +
                                               printable(name) +
                                               "' is configured");
  }

  caf::expected<stats_report> stats() {
    auto names = control<std::vector<name_stats>>(
        "reading job counts",
        [](db_adapter& db) { return db.stats_by_name(); });
    if (!names)
      return std::move(names.error());
    auto pauses = control<std::vector<pause_record>>(
        "reading pauses", [](db_adapter& db) { return db.pauses(); });
    if (!pauses)
      return std::move(pauses.error());
    stats_report report;
    report.at = ctx.now();
    for (auto& q : ctx.plan->queues) {
      std::vector<std::string> job_names;
      for (auto& w : q.workers())
        job_names.push_back(w.job_name());
      auto qs = queue_stats_of(*names, *pauses, q.name(), std::move(job_names),
                               report.at);
      auto c = concurrency.find(q.name());
      qs.max_concurrent_jobs =
          c != concurrency.end() ? c->second : q.max_concurrent_jobs();
      qs.nodes = {ctx.node};
      qs.concurrency = qs.max_concurrent_jobs;
      if (q.limited()) {
        auto added = control<bool>("reading limits", [&](db_adapter& db) {
          if (auto err = add_limits(db, qs))
            return caf::expected<bool>{std::move(err)};
          return caf::expected<bool>{true};
        });
        if (!added)
          return std::move(added.error());
      }
      report.queues.push_back(std::move(qs));
    }
    report.names = std::move(*names);
    return report;
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
  self->state.door = enqueuer{self->state.ctx, "front door"};
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
        return guarded([&] { return self->state.enqueue(r); });
      },
      [=](enqueue_atom, const std::vector<job_request>& rs) {
        return guarded([&] { return self->state.enqueue_many(rs); });
      },
      [=](cancel_atom, int64_t id,
          const std::string& reason) -> caf::result<job_record> {
        return guarded([&]() -> caf::result<job_record> {
          auto r = self->state.act<job_record>(
              "cancelling a job",
              [&](control_plane& cp) { return cp.cancel(id, reason); });
          if (!r)
            return std::move(r.error());
          return std::move(*r);
        });
      },
      [=](retry_atom, int64_t id) -> caf::result<job_record> {
        return guarded([&]() -> caf::result<job_record> {
          auto r = self->state.act<job_record>(
              "retrying a job", [&](control_plane& cp) { return cp.retry(id); });
          if (!r)
            return std::move(r.error());
          return std::move(*r);
        });
      },
      [=](retry_atom, const std::string& name) -> caf::result<int64_t> {
        return guarded([&]() -> caf::result<int64_t> {
          auto n = self->state.act<int64_t>(
              "retrying failed jobs",
              [&](control_plane& cp) { return cp.retry_failed(name); });
          if (!n)
            return std::move(n.error());
          return *n;
        });
      },
      [=](delete_atom, int64_t id) -> caf::result<void> {
        return guarded([&]() -> caf::result<void> {
          auto r = self->state.act<void>(
              "deleting a job", [&](control_plane& cp) { return cp.remove(id); });
          if (!r)
            return std::move(r.error());
          return caf::unit;
        });
      },
      [=](pause_atom, pause_kind k,
          const std::string& name) -> caf::result<void> {
        return guarded([&]() -> caf::result<void> {
          auto r = self->state.act<void>("pausing", [&](control_plane& cp) {
            return cp.set_paused(k, name, true);
          });
          if (!r)
            return std::move(r.error());
          return caf::unit;
        });
      },
      [=](resume_atom, pause_kind k,
          const std::string& name) -> caf::result<void> {
        return guarded([&]() -> caf::result<void> {
          auto r = self->state.act<void>("resuming", [&](control_plane& cp) {
            return cp.set_paused(k, name, false);
          });
          if (!r)
            return std::move(r.error());
          return caf::unit;
        });
      },
      [=](scale_atom a, const std::string& queue,
          int n) -> caf::result<caf::message> {
        auto& st = self->state;
        if (auto names = st.names_of(queue); !names)
          return std::move(names.error());
        if (n < 1 || n > queue_spec::max_concurrency)
          return make_error(
              errc::invalid_argument,
              "max_concurrent_jobs must be 1 to " +
                  std::to_string(queue_spec::max_concurrency) + ", got " +
                  std::to_string(n));
        st.concurrency[queue] = n;
        return self->delegate(st.ctx.dir->get(actor_directory::router), a,
                              queue, n);
      },
      [=](limit_atom, const std::string& queue, const std::string& kind,
          const std::string& key, int n) -> caf::result<void> {
        return guarded([&]() -> caf::result<void> {
          auto k = parse_limit_kind(kind);
          if (!k)
            return make_error(errc::invalid_argument,
                              "a limit's kind is key, per_key or total");
          auto r = self->state.act<void>(
              "setting a limit", [&](control_plane& cp) {
                return cp.set_limit(queue, concurrency_limit{*k, key, n});
              });
          if (!r)
            return std::move(r.error());
          return caf::unit;
        });
      },
      [=](unblock_atom, const std::string& queue,
          const std::string& key) -> caf::result<int64_t> {
        return guarded([&]() -> caf::result<int64_t> {
          auto n = self->state.act<int64_t>(
              "unblocking a key",
              [&](control_plane& cp) { return cp.unblock_key(queue, key); });
          if (!n)
            return std::move(n.error());
          return *n;
        });
      },
      [=](rate_atom, const std::string& name, int64_t allowed,
          int64_t period_ms, int64_t burst) -> caf::result<void> {
        return guarded([&]() -> caf::result<void> {
          auto r = self->state.act<void>(
              "setting a rate limit", [&](control_plane& cp) {
                return cp.set_rate_limit(rate_limit{
                    name, allowed, std::chrono::milliseconds{period_ms},
                    burst});
              });
          if (!r)
            return std::move(r.error());
          return caf::unit;
        });
      },
      [=](consume_atom, const std::string& name, const std::string& key,
          int64_t cost) -> caf::result<int64_t> {
        return guarded([&]() -> caf::result<int64_t> {
          auto d = self->state.control<rate_decision>(
              "taking from a rate limit", [&](db_adapter& db) {
                return db.consume_rate(name, key, cost);
              });
          if (!d)
            return std::move(d.error());
          return d->admitted ? int64_t{0} : std::max<int64_t>(1, d->wait_ms);
        });
      },
      [=](get_atom, int64_t id) -> caf::result<job_record> {
        return guarded([&]() -> caf::result<job_record> {
          auto r = self->state.control<job_record>(
              "reading a job", [&](db_adapter& db) { return db.get_job(id); });
          if (!r)
            return std::move(r.error());
          return std::move(*r);
        });
      },
      [=](list_atom, job_query q) -> caf::result<job_page> {
        return guarded([&]() -> caf::result<job_page> {
          auto& st = self->state;
          if (!q.queue.empty()) {
            auto names = st.names_of(q.queue);
            if (!names)
              return std::move(names.error());
            if (q.names.empty())
              q.names = std::move(*names);
            else
              q.names.erase(std::remove_if(q.names.begin(), q.names.end(),
                                           [&](const std::string& n) {
                                             return std::find(names->begin(),
                                                              names->end(),
                                                              n) ==
                                                    names->end();
                                           }),
                            q.names.end());
            q.queue.clear();
            if (q.names.empty())
              return job_page{};
          }
          auto r = st.control<job_page>(
              "listing jobs", [&](db_adapter& db) { return db.list_jobs(q); });
          if (!r)
            return std::move(r.error());
          return std::move(*r);
        });
      },
      [=](stats_atom) -> caf::result<stats_report> {
        return guarded([&]() -> caf::result<stats_report> {
          auto r = self->state.stats();
          if (!r)
            return std::move(r.error());
          return std::move(*r);
        });
      },
      [=](workflow_atom, const workflow& w) -> caf::result<workflow_ids> {
        return guarded([&]() -> caf::result<workflow_ids> {
          auto ids = self->state.door.enqueue_workflow(w);
          if (!ids)
            return std::move(ids.error());
          return std::move(*ids);
        });
      },
      [=](workflow_atom, int64_t id) -> caf::result<workflow_info> {
        return guarded([&]() -> caf::result<workflow_info> {
          auto r = self->state.control<workflow_info>(
              "reading a workflow",
              [&](db_adapter& db) { return db.get_workflow(id); });
          if (!r)
            return std::move(r.error());
          return std::move(*r);
        });
      },
      [=](workflow_atom,
          const workflow_query& q) -> caf::result<std::vector<workflow_info>> {
        return guarded([&]() -> caf::result<std::vector<workflow_info>> {
          auto r = self->state.control<std::vector<workflow_info>>(
              "listing workflows",
              [&](db_adapter& db) { return db.list_workflows(q); });
          if (!r)
            return std::move(r.error());
          return std::move(*r);
        });
      },
      [=](cancel_atom, workflow_atom, int64_t id,
          const std::string& reason) -> caf::result<workflow_info> {
        return guarded([&]() -> caf::result<workflow_info> {
          auto r = self->state.act<workflow_info>(
              "cancelling a workflow", [&](control_plane& cp) {
                return cp.cancel_workflow(id, reason);
              });
          if (!r)
            return std::move(r.error());
          return std::move(*r);
        });
      },
      [=](retry_atom, workflow_atom, int64_t id) -> caf::result<workflow_info> {
        return guarded([&]() -> caf::result<workflow_info> {
          auto r = self->state.act<workflow_info>(
              "retrying a workflow",
              [&](control_plane& cp) { return cp.retry_workflow(id); });
          if (!r)
            return std::move(r.error());
          return std::move(*r);
        });
      },
      [=](schedule_atom,
          const std::string& definition) -> caf::result<bool> {
        return guarded([&]() -> caf::result<bool> {
          auto def = schedule_definition::parse(definition);
          if (!def)
            return std::move(def.error());
          auto r = self->state.act<bool>(
              "storing a schedule",
              [&](control_plane& cp) { return cp.put_schedule(*def); });
          if (!r)
            return std::move(r.error());
          return *r;
        });
      },
      [=](unschedule_atom, const std::string& name) -> caf::result<void> {
        return guarded([&]() -> caf::result<void> {
          auto r = self->state.act<void>(
              "removing a schedule",
              [&](control_plane& cp) { return cp.remove_schedule(name); });
          if (!r)
            return std::move(r.error());
          return caf::unit;
        });
      },
      [=](trigger_atom, const std::string& name) -> caf::result<job> {
        return guarded([&]() -> caf::result<job> {
          auto r = self->state.act<job>(
              "triggering a schedule",
              [&](control_plane& cp) { return cp.trigger_schedule(name); });
          if (!r)
            return std::move(r.error());
          return std::move(*r);
        });
      },
      [=](schedules_atom) -> caf::result<std::string> {
        return guarded([&]() -> caf::result<std::string> {
          auto r = self->state.act<std::vector<schedule_info>>(
              "reading schedules",
              [&](control_plane& cp) { return cp.schedules(); });
          if (!r)
            return std::move(r.error());
          auto out = nlohmann::json::array();
          for (auto& x : *r)
            out.push_back(x.to_json());
          return out.dump();
        });
      },
      [=](pauses_atom) -> caf::result<std::vector<pause_record>> {
        return guarded([&]() -> caf::result<std::vector<pause_record>> {
          auto r = self->state.control<std::vector<pause_record>>(
              "reading pauses", [](db_adapter& db) { return db.pauses(); });
          if (!r)
            return std::move(r.error());
          return std::move(*r);
        });
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
