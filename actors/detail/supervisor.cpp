#include "bg_jobs/actors/detail/supervisor.hpp"

#include <deque>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

using tier_deadline_atom = caf::atom_constant<caf::atom("tierdead")>;

struct supervisor_state {
  supervisor_config cfg;
  std::vector<caf::actor> running;
  size_t started = 0;
  /// Children whose ready answer start-up still waits for.
  size_t awaiting = 0;
  std::deque<std::chrono::steady_clock::time_point> restarts;
  bool ready = false;
  std::vector<caf::response_promise> ready_waiters;
  bool stopping = false;
  int tier = 0;
  std::vector<caf::response_promise> stop_waiters;
  caf::error stop_reason;

  static inline const char* name = "bg_jobs.supervisor";
  using self_ptr = caf::stateful_actor<supervisor_state>*;

  void emit(event_kind k, std::string message = {}) {
    event e{k};
    e.message = std::move(message);
    if (cfg.emit)
      cfg.emit(std::move(e));
  }

  std::optional<size_t> find(const caf::actor_addr& addr) const {
    for (size_t i = 0; i < running.size(); ++i)
      if (running[i] && running[i].address() == addr)
        return i;
    return std::nullopt;
  }

  /// Starts the children from `started` on, pausing after each barrier
  /// until it is ready; the tree is ready once every child that must answer
  /// did.
  void start_next(self_ptr self) {
    while (!stopping && started < cfg.children.size()) {
      auto i = started++;
      auto& spec = cfg.children[i];
      running[i] = spec.start(self);
      if (!spec.await_ready && !spec.barrier)
        continue;
      ++awaiting;
      bool barrier = spec.barrier;
      self->request(running[i], spec.ready_timeout, ready_atom::value)
          .then(
              [self, barrier]() {
                auto& st = self->state;
                --st.awaiting;
                if (barrier)
                  st.start_next(self);
                else
                  st.check_ready();
              },
              [self, name = spec.name](caf::error& err) {
                self->state.begin_shutdown(
                    self,
                    make_error(errc::timeout, "'" + name + "' did not start: " +
                                                  self->system().render(err)));
              });
      if (barrier)
        return;
    }
    check_ready();
  }

  void check_ready() {
    if (stopping || ready || awaiting > 0 || started < cfg.children.size())
      return;
    ready = true;
    for (auto& rp : ready_waiters)
      rp.deliver(caf::unit);
    ready_waiters.clear();
  }

  void on_child_exit(self_ptr self, size_t i, const caf::error& reason) {
    running[i] = nullptr;
    if (stopping) {
      stop_tier_if_done(self);
      return;
    }
    if (!reason)
      return;
    auto& spec = cfg.children[i];
    auto now = std::chrono::steady_clock::now();
    while (!restarts.empty() && now - restarts.front() > cfg.restart_period)
      restarts.pop_front();
    if (restarts.size() >= static_cast<size_t>(cfg.max_restarts)) {
      auto msg = "restart intensity exceeded: '" + spec.name + "' died (" +
                 self->system().render(reason) + ") after " +
                 std::to_string(cfg.max_restarts) + " restart(s) within " +
                 std::to_string(cfg.restart_period.count()) + " ms";
      emit(event_kind::supervisor_gave_up, msg);
      begin_shutdown(self, make_error(errc::restart_limit_exceeded, msg));
      return;
    }
    restarts.push_back(now);
    running[i] = spec.start(self);
    emit(event_kind::supervisor_restart,
         "restarted '" + spec.name + "' after it died (" +
             self->system().render(reason) + ")");
    if (spec.others_reregister)
      for (size_t k = 0; k < running.size(); ++k)
        if (k != i && running[k])
          self->send(running[k], reregister_atom::value);
  }

  /// Stops every child, tier by tier; start-up waiters learn `reason`.
  void begin_shutdown(self_ptr self, caf::error reason) {
    if (stopping)
      return;
    for (auto& rp : ready_waiters)
      rp.deliver(reason ? reason : make_error(errc::shutting_down));
    ready_waiters.clear();
    stopping = true;
    stop_reason = std::move(reason);
    emit(event_kind::shutdown_started);
    tier = 0;
    for (auto& c : cfg.children)
      tier = std::max(tier, c.tier);
    stop_tier(self);
  }

  /// Asks every child of the current tier to stop.
  void stop_tier(self_ptr self) {
    if (tier == 0)
      emit(event_kind::shutdown_complete);
    for (size_t i = 0; i < running.size(); ++i) {
      if (!running[i] || cfg.children[i].tier != tier)
        continue;
      if (cfg.children[i].stop)
        cfg.children[i].stop(self, running[i]);
      else // anonymous: an exit from us would undo the link we wait on
        caf::anon_send_exit(running[i], caf::exit_reason::user_shutdown);
    }
    self->delayed_send(self, cfg.stop_timeout, tier_deadline_atom::value, tier);
    stop_tier_if_done(self);
  }

  void stop_tier_if_done(self_ptr self) {
    for (size_t i = 0; i < running.size(); ++i)
      if (running[i] && cfg.children[i].tier >= tier)
        return;
    if (tier-- > 0) {
      stop_tier(self);
      return;
    }
    for (auto& rp : stop_waiters)
      rp.deliver(caf::unit);
    stop_waiters.clear();
    self->quit(stop_reason);
  }
};

caf::behavior supervisor_actor(caf::stateful_actor<supervisor_state>* self,
                               supervisor_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.running.resize(st.cfg.children.size());
  if (st.cfg.on_exit)
    self->attach_functor([f = st.cfg.on_exit] { f(); });
  self->set_exit_handler([self](caf::exit_msg& em) {
    auto& st = self->state;
    if (auto i = st.find(em.source)) {
      st.on_child_exit(self, *i, em.reason);
      return;
    }
    // An exit request aimed at the supervisor: stop gracefully.
    st.begin_shutdown(self, em.reason);
  });
  st.start_next(self);
  return {
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
      [=](tier_deadline_atom, int tier) {
        auto& st = self->state;
        if (!st.stopping || tier != st.tier)
          return;
        for (size_t i = 0; i < st.running.size(); ++i)
          if (st.running[i] && st.cfg.children[i].tier >= tier)
            caf::anon_send_exit(st.running[i], caf::exit_reason::kill);
      },
  };
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_config cfg) {
  return sys.spawn(supervisor_actor, std::move(cfg));
}

} // namespace bg_jobs::detail
