#include "bg_jobs/actors/builder.hpp"

#include <cerrno>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include <signal.h>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include "bg_jobs/actors/detail/enqueuer.hpp"
#include "bg_jobs/actors/detail/node_plan.hpp"
#include "bg_jobs/actors/detail/node_tree.hpp"
#include "bg_jobs/actors/detail/spare_connections.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/http/detail/http_access.hpp"

namespace bg_jobs {

namespace {

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0')
    return "localhost";
  return buf;
}

/// The node instances alive in this process (a holder with this pid is
/// alive only if it is one of them).
struct live_instances {
  std::mutex mtx;
  std::set<std::string> ids;

  static live_instances& get() {
    static live_instances x;
    return x;
  }

  void add(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx};
    ids.insert(id);
  }

  void remove(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx};
    ids.erase(id);
  }

  bool has(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx};
    return ids.count(id) > 0;
  }
};

std::string random_instance() {
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> dist;
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016llx",
                static_cast<unsigned long long>(dist(rd)));
  return buf;
}

/// Whether the holder of a name with a fresh heartbeat still runs: on
/// another host it is taken to; on this one its pid (or, in this process,
/// its instance) must still be alive.
bool holder_alive(const node_holder& h, const std::string& host) {
  if (h.who.host != host)
    return true;
  if (h.who.pid == static_cast<int64_t>(getpid()))
    return live_instances::get().has(h.who.instance);
  if (h.who.pid <= 0)
    return true;
  return ::kill(static_cast<pid_t>(h.who.pid), 0) == 0 || errno == EPERM;
}

std::string describe_holder(const node_holder& h) {
  return "node name '" + h.who.node + "' is held by a live process (pid " +
         std::to_string(h.who.pid) + " on host '" + h.who.host + "', since " +
         to_iso8601(h.who.started_at) + ", last heartbeat " +
         to_iso8601(h.heartbeat_at) +
         "); give this node another name (with_node_name) or stop that "
         "process";
}

/// The actor published for remote nodes: it forwards each message a remote
/// node may send to the bg_jobs actor of the moment, and quits with the
/// tree.
caf::behavior remote_gate(caf::event_based_actor* self, caf::actor root,
                          std::shared_ptr<detail::actor_directory> dir) {
  self->monitor(root);
  self->set_down_handler([self](caf::down_msg&) { self->quit(); });
  auto forward = [self, dir](auto&&... xs) -> caf::result<caf::message> {
    if (auto front = dir->get(detail::actor_directory::front_door))
      return self->delegate(front, std::forward<decltype(xs)>(xs)...);
    return make_error(errc::shutting_down, "bg_jobs is not running");
  };
  return {
      [=](enqueue_atom a, const job_request& r) { return forward(a, r); },
      [=](enqueue_atom a, const std::vector<job_request>& rs) {
        return forward(a, rs);
      },
      [=](lookup_atom a, const std::string& name) { return forward(a, name); },
      [=](names_atom a) { return forward(a); },
      [=](cancel_atom a, int64_t id, const std::string& reason) {
        return forward(a, id, reason);
      },
      [=](retry_atom a, int64_t id) { return forward(a, id); },
      [=](retry_atom a, const std::string& name) { return forward(a, name); },
      [=](delete_atom a, int64_t id) { return forward(a, id); },
      [=](pause_atom a, pause_kind k, const std::string& name) {
        return forward(a, k, name);
      },
      [=](resume_atom a, pause_kind k, const std::string& name) {
        return forward(a, k, name);
      },
      [=](scale_atom a, const std::string& queue, int n) {
        return forward(a, queue, n);
      },
      [=](limit_atom a, const std::string& queue, const std::string& kind,
          const std::string& key,
          int n) { return forward(a, queue, kind, key, n); },
      [=](unblock_atom a, const std::string& queue, const std::string& key) {
        return forward(a, queue, key);
      },
      [=](rate_atom a, const std::string& name, int64_t allowed,
          int64_t period_ms,
          int64_t burst) { return forward(a, name, allowed, period_ms, burst); },
      [=](consume_atom a, const std::string& name, const std::string& key,
          int64_t cost) { return forward(a, name, key, cost); },
      [=](get_atom a, int64_t id) { return forward(a, id); },
      [=](schedule_atom a, const std::string& definition) {
        return forward(a, definition);
      },
      [=](unschedule_atom a, const std::string& name) {
        return forward(a, name);
      },
      [=](trigger_atom a, const std::string& name) { return forward(a, name); },
      [=](schedules_atom a) { return forward(a); },
      [=](list_atom a, const job_query& q) { return forward(a, q); },
      [=](stats_atom a) { return forward(a); },
      [=](pauses_atom a) { return forward(a); },
  };
}

} // namespace

void detail::forget_node_instance(const std::string& id) {
  live_instances::get().remove(id);
}

builder::builder(adapter_factory connect)
    : connect_(std::move(connect)), node_(host_name()) {}

builder& builder::with_queue(queue_spec q) {
  queues_.push_back(std::move(q));
  return *this;
}

builder& builder::with_scheduled_job(scheduled_job_spec s) {
  scheduled_.push_back(std::move(s));
  return *this;
}

builder& builder::with_event_listener(event_listener l) {
  listeners_.push_back(std::move(l));
  return *this;
}

builder& builder::with_supervisor_max_frequency(int n) {
  max_frequency_ = n;
  return *this;
}

builder&
builder::with_supervisor_frequency_period(std::chrono::milliseconds d) {
  frequency_period_ = d;
  return *this;
}

builder& builder::with_node_name(std::string name) {
  node_ = std::move(name);
  node_given_ = true;
  return *this;
}

builder& builder::with_shutdown_grace_period(std::chrono::milliseconds d) {
  grace_ = d;
  return *this;
}

builder& builder::with_progress_interval(std::chrono::milliseconds d) {
  progress_interval_ = d;
  return *this;
}

builder& builder::with_migrations(bool on) {
  migrate_ = on;
  return *this;
}

builder& builder::with_node_lease(std::chrono::milliseconds d) {
  maintenance_.lease = d;
  return *this;
}

builder& builder::with_schedule_stale_after(std::chrono::milliseconds d) {
  maintenance_.schedule_stale_after = d;
  return *this;
}

builder& builder::with_workflow_watch(std::chrono::milliseconds every) {
  maintenance_.workflow_watch_every = every;
  return *this;
}

builder& builder::with_retention(prune_params retention,
                                 std::chrono::milliseconds prune_every) {
  maintenance_.retention = retention;
  maintenance_.prune_every = prune_every;
  return *this;
}

builder& builder::with_jobs_vacuum(int64_t dead_rows,
                                   std::chrono::milliseconds every) {
  maintenance_.vacuum_dead_rows = dead_rows;
  maintenance_.vacuum_every = every;
  return *this;
}

builder& builder::with_enqueued_job_names(std::vector<std::string> names) {
  for (auto& n : names)
    enqueued_names_.push_back(std::move(n));
  return *this;
}

builder& builder::with_any_job_name(bool on) {
  any_name_ = on;
  return *this;
}

builder& builder::with_clock(std::shared_ptr<bg_jobs::clock> clk) {
  clock_ = std::move(clk);
  return *this;
}

builder& builder::with_remote(uint16_t port, std::string host) {
  publish_ = [port, host](const caf::actor& gate) -> caf::expected<uint16_t> {
    auto& sys = gate->home_system();
    if (!sys.has_middleman())
      return make_error(errc::invalid_config,
                        "with_remote needs CAF's middleman: "
                        "cfg.load<caf::io::middleman>() before creating "
                        "the actor system");
    auto published = sys.middleman().publish(gate, port, host.c_str(), true);
    if (!published)
      return make_error(errc::invalid_config,
                        "cannot publish bg_jobs on " + host + ":" +
                            std::to_string(port) + ": " +
                            sys.render(published.error()));
    return *published;
  };
  plain_publish_ = true;
  return *this;
}

builder& builder::with_remote_publisher(remote_publisher publish) {
  publish_ = std::move(publish);
  plain_publish_ = false;
  return *this;
}

builder& builder::with_http(http_options options) {
  http_ = std::move(options);
  return *this;
}

builder& builder::with_poll_only(bool on) {
  poll_only_ = on;
  return *this;
}

builder& builder::with_encryption(keyring keys) {
  keys_ = std::make_shared<const keyring>(std::move(keys));
  return *this;
}

builder& builder::with_trace_source(trace_source source) {
  trace_source_ = std::move(source);
  return *this;
}

caf::error builder::validate() const {
  auto fail = [](std::string msg) {
    return make_error(errc::invalid_config, std::move(msg));
  };
  if (!connect_)
    return fail("no store: pass an adapter factory to the builder");
  if (node_.empty() || node_.find('/') != std::string::npos)
    return fail("the node name must be non-empty and free of '/', got '" +
                node_ + "'");
  if (max_frequency_ < 0)
    return fail("supervisor max frequency may not be negative, got " +
                std::to_string(max_frequency_));
  if (frequency_period_.count() <= 0)
    return fail("supervisor frequency period must be positive, got " +
                std::to_string(frequency_period_.count()) + " ms");
  if (grace_.count() < 0)
    return fail("shutdown grace period may not be negative");
  if (progress_interval_.count() < 0 ||
      progress_interval_ > std::chrono::hours{1})
    return fail("the progress interval is from 0 to 1 hour, got " +
                std::to_string(progress_interval_.count()) + " ms");
  if (!clock_)
    return fail("the clock is empty");
  for (auto& n : enqueued_names_)
    if (auto why = name_problem(n); !why.empty())
      return fail("enqueued job name '" + printable(n) + "' " + why);
  if (auto err = maintenance_.validate())
    return err;
  for (size_t i = 0; i < listeners_.size(); ++i)
    if (!listeners_[i])
      return fail("event listener " + std::to_string(i) + " is empty");
  for (auto& s : scheduled_)
    if (auto err = s.validate())
      return err;
  std::set<std::string> names;
  for (auto& q : queues_)
    if (!names.insert(q.name()).second)
      return fail("two queues are named '" + q.name() + "'");
  names.clear();
  for (auto& s : scheduled_)
    if (!names.insert(s.job_name()).second)
      return fail("two scheduled jobs are named '" + s.job_name() + "'");
  auto queues = detail::node_queues(queues_, scheduled_);
  if (!queues)
    return std::move(queues.error());
  std::map<std::string, std::string> queue_of_job;
  for (auto& q : *queues) {
    if (auto err = q.validate())
      return err;
    for (auto& w : q.workers())
      if (auto [i, fresh] = queue_of_job.emplace(w.job_name(), q.name());
          !fresh && i->second != q.name())
        return fail("job '" + w.job_name() + "' has workers on two queues, '" +
                    i->second + "' and '" + q.name() + "'");
  }
  return caf::none;
}

caf::expected<instance> builder::build(caf::actor_system& sys) const {
  if (auto err = validate())
    return err;
  // Validated above.
  auto queues = *detail::node_queues(queues_, scheduled_);
  bool listen = false;
  node_identity me;
  auto time = clock_;
  auto spares = std::make_shared<detail::spare_connections>();
  {
    auto db = connect_();
    if (!db)
      return std::move(db.error());
    // Without a clock of its own the node reads the store's.
    if (clock_ == clock::system())
      if (auto c = (*db)->store_clock())
        time = std::move(c);
    listen = (*db)->caps().supports_listen_notify && !poll_only_;
    // The queues' connections are opened side by side, beside the
    // registration below: at once when the schema is current, otherwise
    // once the migrations ran (a connection may prepare its statements as
    // it opens). The shared connection is this one, once the node is
    // registered; the others (the listener's, the maintenance's) are not
    // on the way to the first claim and open as their actors start.
    bool opening = false;
    if (auto v = (*db)->schema_version();
        v && *v == db_adapter::schema_version_current) {
      spares->open("queue", connect_, queues.size());
      opening = true;
    }
    if (migrate_) {
      if (auto up = (*db)->migrate_up(); !up)
        return std::move(up.error());
      event e{event_kind::migrate_up};
      e.at = time->now();
      for (auto& l : listeners_)
        try {
          l(e);
        } catch (...) {
          // A throwing listener never stops the runtime.
        }
    }
    if (auto ok = (*db)->check_schema(); !ok)
      return std::move(ok.error());
    if (!opening)
      spares->open("queue", connect_, queues.size());
    me.instance = random_instance();
    me.host = host_name();
    me.pid = static_cast<int64_t>(getpid());
    me.started_at = time->now();
    live_instances::get().add(me.instance);
    auto alive = [&](const node_holder& h) { return holder_alive(h, me.host); };
    caf::error refused;
    for (int slot = 1; slot <= (node_given_ ? 1 : 64); ++slot) {
      me.node = slot == 1 ? node_ : node_ + "-" + std::to_string(slot);
      auto held = (*db)->claim_node(me, maintenance_.lease, alive);
      if (!held) {
        live_instances::get().remove(me.instance);
        return std::move(held.error());
      }
      if (!*held) {
        refused = caf::none;
        break;
      }
      refused = make_error(errc::invalid_config, describe_holder(**held));
    }
    if (refused) {
      live_instances::get().remove(me.instance);
      return refused;
    }
    // Tools without this configuration (the command line, the dashboard)
    // learn the queues from the store.
    std::vector<queue_announcement> served;
    for (auto& q : queues) {
      queue_announcement a{q.name(), {}, q.max_concurrent_jobs()};
      for (auto& w : q.workers())
        a.job_names.push_back(w.job_name());
      served.push_back(std::move(a));
    }
    if (auto r = (*db)->announce_queues(me.node, served); !r) {
      live_instances::get().remove(me.instance);
      return std::move(r.error());
    }
    // Limits are the store's, for every node's claims: the last node to
    // start with a queue's limits sets them.
    for (auto& q : queues) {
      if (q.limited())
        if (auto r = (*db)->set_limits(q.name(), q.stored_limits()); !r) {
          live_instances::get().remove(me.instance);
          return std::move(r.error());
        }
      if (q.rate_limit())
        if (auto r = (*db)->set_rate_limit(*q.rate_limit()); !r) {
          live_instances::get().remove(me.instance);
          return std::move(r.error());
        }
    }
    spares->add("node", std::move(*db));
  }
  detail::node_context ctx;
  // The HTTP server's metrics count this node's events.
  std::shared_ptr<bg_jobs::metrics> node_metrics;
  builder config = *this;
  if (http_) {
    node_metrics = std::make_shared<bg_jobs::metrics>();
    config.listeners_.push_back(node_metrics->listener());
    for (auto& q : queues)
      node_metrics->set_executors(q.name(), q.max_concurrent_jobs());
  }
  ctx.plan = std::make_shared<const detail::node_plan>(
      detail::node_plan::make(config, listen));
  ctx.connect = connect_;
  ctx.spares = spares;
  ctx.node = me.node;
  ctx.instance = me.instance;
  ctx.clock = time;
  ctx.bus = std::make_shared<detail::event_bus>(ctx.plan->any_listener, time);
  ctx.dir = std::make_shared<detail::actor_directory>();
  auto dir = ctx.dir;
  auto direct = std::make_shared<detail::direct_enqueue>();
  // Its own context does not hold it (no cycle).
  direct->door = detail::enqueuer{ctx, "node"};
  ctx.shared = direct;
  // The dashboard's actions take effect on this node.
  auto dashboard_actions = detail::in_node(ctx);
  auto root = detail::spawn_node(sys, std::move(ctx));
  // The name is free again once this tree is gone, however it ends.
  root->attach_functor(
      [id = me.instance] { live_instances::get().remove(id); });
  auto timeout = std::chrono::milliseconds{30000};
  for (auto& q : queues)
    timeout += q.init_timeout();
  caf::error failure;
  {
    caf::scoped_actor self{sys};
    self->request(root, timeout, ready_atom::value)
        .receive([]() {}, [&](caf::error& err) { failure = std::move(err); });
    if (failure) {
      self->monitor(root);
      self->send_exit(root, caf::exit_reason::user_shutdown);
      self->receive([](caf::down_msg&) {},
                    caf::after(std::chrono::seconds{30}) >> [] {});
    }
  }
  // Started (or not): whatever start-up did not take is closed.
  spares->close();
  caf::actor gate;
  uint16_t port = 0;
  if (!failure && publish_) {
    gate = sys.spawn(remote_gate, root, dir);
    auto published = publish_(gate);
    if (published) {
      port = *published;
    } else {
      failure = std::move(published.error());
      caf::anon_send_exit(gate, caf::exit_reason::user_shutdown);
      gate = nullptr;
    }
  }
  std::shared_ptr<http_server> http;
  if (!failure && http_) {
    auto started = detail::http_access::start(connect_, *http_, node_metrics,
                                              dashboard_actions);
    if (started)
      http = std::move(*started);
    else
      failure = std::move(started.error());
  }
  if (failure && (publish_ || http_)) {
    if (gate) {
      caf::anon_send_exit(gate, caf::exit_reason::user_shutdown);
      gate = nullptr;
    }
    if (failure) {
      caf::scoped_actor self{sys};
      self->monitor(root);
      self->send_exit(root, caf::exit_reason::user_shutdown);
      self->receive([](caf::down_msg&) {},
                    caf::after(std::chrono::seconds{30}) >> [] {});
    }
  }
  if (failure) {
    live_instances::get().remove(me.instance);
    return failure;
  }
  return instance{sys,
                  std::move(root),
                  std::move(dir),
                  me.node,
                  me.instance,
                  std::move(gate),
                  port,
                  plain_publish_,
                  std::move(http),
                  std::move(direct),
                  trace_source_};
}

} // namespace bg_jobs
