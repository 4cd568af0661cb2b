#include "bg_jobs/actors/supervisor_actor.hpp"

#include <atomic>
#include <deque>
#include <map>
#include <set>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/builder.hpp"
#include "bg_jobs/actors/enqueue_actor.hpp"
#include "bg_jobs/actors/event_actor.hpp"
#include "bg_jobs/actors/listener_actor.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/actors/queue_actor.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/registry/registry_actor.hpp"
#include "bg_jobs/scheduling/rescuer_actor.hpp"
#include "bg_jobs/scheduling/scheduler_actor.hpp"

namespace bg_jobs {

namespace {

enum class child_kind {
  events,
  registry,
  enqueue,
  listener,
  queue,
  scheduler,
  rescuer,
};

struct child {
  child_kind kind;
  std::string name;
  caf::actor actor;
  /// For queues: the reservation owner of this incarnation.
  std::string owner;
  /// For queues: the index of its spec.
  size_t spec = 0;
};

/// Distinguishes incarnations of a queue within this process.
std::atomic<uint64_t> next_incarnation{1};

struct supervisor_state {
  builder config{adapter_factory{}};
  /// The configured queues, then one per scheduled job.
  std::vector<queue_spec> queues;
  runtime_context ctx;
  std::set<std::string> job_names;
  std::map<std::string, std::vector<std::string>> queues_by_job;
  std::vector<child> children;
  std::deque<std::chrono::steady_clock::time_point> restarts;
  bool ready = false;
  std::vector<caf::response_promise> ready_waiters;
  bool stopping = false;
  size_t queues_stopping = 0;
  std::vector<caf::response_promise> stop_waiters;
  caf::error stop_reason;

  static inline const char* name = "bg_jobs.supervisor";

  using self_ptr = caf::stateful_actor<supervisor_state>*;

  child* find(child_kind k) {
    for (auto& c : children)
      if (c.kind == k)
        return &c;
    return nullptr;
  }

  child* find(const caf::actor_addr& addr) {
    for (auto& c : children)
      if (c.actor && c.actor.address() == addr)
        return &c;
    return nullptr;
  }

  caf::actor registry() {
    auto c = find(child_kind::registry);
    return c ? c->actor : caf::actor{};
  }

  listener_set listeners() const {
    listener_set ls;
    ls.global = config.event_listeners();
    for (auto& q : queues)
      if (!q.event_listeners().empty())
        ls.per_queue[q.name()] = q.event_listeners();
    return ls;
  }

  void emit(event e) { ctx.bus->emit(std::move(e)); }

  void register_queue(self_ptr self, const child& c) {
    if (auto reg = registry())
      self->send(reg, register_atom::value, c.name, c.owner, c.actor);
  }

  /// Starts (or restarts) child `c` from its spec.
  void start(self_ptr self, child& c) {
    switch (c.kind) {
      case child_kind::events:
        c.actor = spawn_event_actor(self, listeners());
        ctx.bus->retarget(c.actor);
        break;
      case child_kind::registry: {
        bool first = !c.actor;
        c.actor = spawn_registry(self, ctx, first);
        self->system().registry().put(registry_registry_key, c.actor);
        if (!first)
          for (auto& q : children)
            if (q.kind == child_kind::queue && q.actor) {
              register_queue(self, q);
              self->send(q.actor, reregister_atom::value);
            }
        break;
      }
      case child_kind::enqueue:
        c.actor = spawn_enqueue_actor(self, ctx, job_names);
        break;
      case child_kind::listener:
        c.actor = spawn_listener(self, ctx);
        break;
      case child_kind::rescuer:
        c.actor = spawn_rescuer(self, ctx, config.maintenance());
        break;
      case child_kind::queue:
        c.owner = ctx.node + "/" + c.name + "/"
                  + std::to_string(next_incarnation++);
        c.actor = spawn_queue(self, queues[c.spec], ctx, c.owner);
        register_queue(self, c);
        break;
      case child_kind::scheduler:
        c.actor = spawn_scheduler(self, config.scheduled_jobs()[c.spec], ctx);
        register_queue(self, c);
        break;
    }
  }

  /// Wakes the queues that run `job_name`; `"*"` wakes every queue.
  void wake(self_ptr self, const std::string& job_name) {
    if (job_name == "*") {
      for (auto& c : children)
        if (c.kind == child_kind::queue && c.actor)
          self->send(c.actor, wake_atom::value, job_name);
      return;
    }
    auto i = queues_by_job.find(job_name);
    if (i == queues_by_job.end())
      return;
    for (auto& c : children)
      if (c.kind == child_kind::queue && c.actor)
        for (auto& q : i->second)
          if (q == c.name)
            self->send(c.actor, wake_atom::value, job_name);
  }

  void on_child_exit(self_ptr self, child& c, const caf::error& reason) {
    if (stopping || !reason) {
      c.actor = nullptr;
      return;
    }
    auto now = std::chrono::steady_clock::now();
    while (!restarts.empty()
           && now - restarts.front() > config.supervisor_frequency_period())
      restarts.pop_front();
    auto max = static_cast<size_t>(config.supervisor_max_frequency());
    if (restarts.size() >= max) {
      auto msg = "restart intensity exceeded: '" + c.name + "' died ("
                 + self->system().render(reason) + ") after "
                 + std::to_string(max) + " restart(s) within "
                 + std::to_string(config.supervisor_frequency_period().count())
                 + " ms";
      event e{event_kind::supervisor_gave_up};
      e.message = msg;
      emit(std::move(e));
      c.actor = nullptr;
      stop_children(self);
      self->quit(make_error(errc::restart_limit_exceeded, msg));
      return;
    }
    restarts.push_back(now);
    start(self, c);
    event e{event_kind::supervisor_restart};
    e.queue = c.kind == child_kind::queue ? c.name : std::string{};
    e.message = "restarted '" + c.name + "' after it died ("
                + self->system().render(reason) + ")";
    emit(std::move(e));
  }

  /// Sends an exit to every child still alive; the event actor last, with a
  /// plain message so that it delivers what it already holds.
  void stop_children(self_ptr self) {
    for (auto it = children.rbegin(); it != children.rend(); ++it)
      if (it->actor && it->kind != child_kind::events)
        self->send_exit(it->actor, caf::exit_reason::user_shutdown);
    if (auto ev = find(child_kind::events); ev && ev->actor)
      self->send(ev->actor, shutdown_atom::value);
  }

  void begin_shutdown(self_ptr self, caf::error reason) {
    if (stopping)
      return;
    stopping = true;
    stop_reason = std::move(reason);
    emit(event{event_kind::shutdown_started});
    auto grace = config.shutdown_grace_period();
    for (auto& c : children) {
      if (c.kind != child_kind::queue || !c.actor)
        continue;
      ++queues_stopping;
      auto done = [self] {
        if (--self->state.queues_stopping == 0)
          self->state.finish_shutdown(self);
      };
      self
        ->request(c.actor, grace + std::chrono::seconds{5},
                  shutdown_atom::value, static_cast<int64_t>(grace.count()))
        .then([done]() { done(); },
              [done](caf::error&) { done(); });
    }
    if (queues_stopping == 0)
      finish_shutdown(self);
  }

  /// Stops the remaining children; the supervisor exits once the event
  /// actor has delivered every event, so that no listener runs after
  /// `shutdown` returned.
  void finish_shutdown(self_ptr self) {
    emit(event{event_kind::shutdown_complete});
    for (auto it = children.rbegin(); it != children.rend(); ++it)
      if (it->actor && it->kind != child_kind::events)
        self->send_exit(it->actor, caf::exit_reason::user_shutdown);
    auto done = [self] {
      auto& st = self->state;
      for (auto& rp : st.stop_waiters)
        rp.deliver(caf::unit);
      st.stop_waiters.clear();
      self->quit(st.stop_reason);
    };
    auto ev = find(child_kind::events);
    if (!ev || !ev->actor) {
      done();
      return;
    }
    self->request(ev->actor, std::chrono::seconds{30}, shutdown_atom::value)
      .then([done]() { done(); }, [done](caf::error&) { done(); });
  }
};

caf::behavior supervisor_actor(caf::stateful_actor<supervisor_state>* self,
                               builder config, bool listen) {
  auto& st = self->state;
  st.config = std::move(config);
  st.queues = st.config.queues();
  for (auto& sj : st.config.scheduled_jobs())
    st.queues.push_back(sj.to_queue_spec());
  st.ctx.connect = st.config.connect();
  st.ctx.node = st.config.node_name();
  st.ctx.listen = listen;
  bool any_listener = !st.config.event_listeners().empty();
  for (auto& q : st.queues) {
    any_listener = any_listener || !q.event_listeners().empty();
    for (auto& w : q.workers()) {
      st.job_names.insert(w.job_name());
      st.queues_by_job[w.job_name()].push_back(q.name());
    }
  }
  st.ctx.bus = std::make_shared<event_bus>(any_listener);
  auto& sys = self->system();
  sys.registry().put(system_registry_key, self);
  self->attach_functor([&sys, bus = st.ctx.bus] {
    sys.registry().erase(system_registry_key);
    sys.registry().erase(registry_registry_key);
    bus->retarget(caf::actor{});
  });
  st.children.reserve(5 + st.queues.size()
                      + st.config.scheduled_jobs().size());
  st.children.push_back({child_kind::events, "events", {}, {}, 0});
  st.children.push_back({child_kind::registry, "registry", {}, {}, 0});
  st.start(self, st.children[0]);
  st.start(self, st.children[1]);
  // Queues start only once the registry has released what this node left
  // reserved in an earlier run.
  self->request(st.registry(), std::chrono::seconds{30}, ready_atom::value)
    .then(
      [self]() {
        auto& st = self->state;
        st.children.push_back({child_kind::enqueue, "enqueue", {}, {}, 0});
        st.start(self, st.children.back());
        st.children.push_back({child_kind::rescuer, "rescuer", {}, {}, 0});
        st.start(self, st.children.back());
        bool listens = st.ctx.listen && !st.queues.empty();
        if (listens) {
          st.children.push_back({child_kind::listener, "listener", {}, {}, 0});
          st.start(self, st.children.back());
        }
        auto& qs = st.queues;
        auto pending = std::make_shared<size_t>(qs.size() + (listens ? 1 : 0));
        auto mark_ready = [self] {
          self->state.ready = true;
          for (auto& rp : self->state.ready_waiters)
            rp.deliver(caf::unit);
          self->state.ready_waiters.clear();
        };
        for (size_t i = 0; i < qs.size(); ++i) {
          st.children.push_back({child_kind::queue, qs[i].name(), {}, {}, i});
          st.start(self, st.children.back());
          self
            ->request(st.children.back().actor, qs[i].init_timeout(),
                      ready_atom::value)
            .then(
              [pending, mark_ready]() {
                if (--*pending == 0)
                  mark_ready();
              },
              [self, name = qs[i].name()](caf::error& err) {
                self->quit(make_error(errc::timeout,
                                      "queue '" + name + "' did not start: "
                                        + self->system().render(err)));
              });
        }
        auto& sjs = st.config.scheduled_jobs();
        for (size_t i = 0; i < sjs.size(); ++i) {
          st.children.push_back({child_kind::scheduler,
                                 sjs[i].job_name() + "/scheduler", {}, {}, i});
          st.start(self, st.children.back());
        }
        if (listens)
          self
            ->request(st.find(child_kind::listener)->actor,
                      std::chrono::seconds{30}, ready_atom::value)
            .then(
              [pending, mark_ready]() {
                if (--*pending == 0)
                  mark_ready();
              },
              [self](caf::error& err) {
                self->quit(make_error(errc::timeout,
                                      "the listener did not start: "
                                        + self->system().render(err)));
              });
        if (*pending == 0)
          mark_ready();
      },
      [self](caf::error& err) {
        self->quit(make_error(errc::timeout, "the registry did not start: "
                                               + self->system().render(err)));
      });
  self->set_exit_handler([self](caf::exit_msg& em) {
    auto& st = self->state;
    if (auto c = st.find(em.source)) {
      st.on_child_exit(self, *c, em.reason);
      return;
    }
    // An exit request aimed at the supervisor: stop gracefully.
    st.begin_shutdown(self, em.reason);
  });
  self->set_default_handler(
    [self](caf::scheduled_actor*,
           caf::message_view& x) -> caf::result<caf::message> {
      event e{event_kind::queue_error};
      e.message = "bg_jobs actor ignored an unexpected message: "
                  + caf::to_string(x.content());
      self->state.emit(std::move(e));
      return caf::sec::unexpected_message;
    });
  return {
    [=](enqueue_atom a, job_request& r) -> caf::result<job> {
      auto& st = self->state;
      auto enq = st.find(child_kind::enqueue);
      if (st.stopping || !enq || !enq->actor)
        return make_error(errc::shutting_down,
                          st.stopping ? "bg_jobs is shutting down"
                                      : "bg_jobs is still starting");
      auto rp = self->make_response_promise<job>();
      self->request(enq->actor, caf::infinite, a, std::move(r))
        .then(
          [self, rp](job& j) mutable {
            self->state.wake(self, j.name);
            rp.deliver(std::move(j));
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](enqueue_atom a,
        std::vector<job_request>& rs) -> caf::result<std::vector<int64_t>> {
      auto& st = self->state;
      auto enq = st.find(child_kind::enqueue);
      if (st.stopping || !enq || !enq->actor)
        return make_error(errc::shutting_down, "bg_jobs is not running");
      std::set<std::string> names;
      for (auto& r : rs)
        names.insert(r.name());
      auto rp = self->make_response_promise<std::vector<int64_t>>();
      self->request(enq->actor, caf::infinite, a, std::move(rs))
        .then(
          [self, rp, names](std::vector<int64_t>& ids) mutable {
            for (auto& n : names)
              self->state.wake(self, n);
            rp.deliver(std::move(ids));
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](lookup_atom a, const std::string& name) {
      return self->delegate(self->state.registry(), a, name);
    },
    [=](names_atom a) { return self->delegate(self->state.registry(), a); },
    [=](wake_atom, const std::string& job_name) {
      self->state.wake(self, job_name);
    },
    [=](register_atom a, const std::string& name, const std::string& owner,
        const caf::actor& x) {
      if (auto reg = self->state.registry())
        self->send(reg, a, name, owner, x);
    },
    [=](flush_atom a) {
      auto ev = self->state.find(child_kind::events);
      return self->delegate(ev ? ev->actor : caf::actor{}, a);
    },
    [=](ready_atom) -> caf::result<caf::unit_t> {
      auto& st = self->state;
      if (st.ready)
        return caf::unit;
      st.ready_waiters.push_back(self->make_response_promise<caf::unit_t>());
      return st.ready_waiters.back();
    },
    [=](shutdown_atom) -> caf::result<caf::unit_t> {
      auto& st = self->state;
      st.stop_waiters.push_back(self->make_response_promise<caf::unit_t>());
      auto rp = st.stop_waiters.back();
      st.begin_shutdown(self, caf::none);
      return rp;
    },
  };
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, const builder& config,
                            bool listen) {
  return sys.spawn(supervisor_actor, config, listen);
}

} // namespace bg_jobs
