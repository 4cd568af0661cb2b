#include "bg_jobs/actors/detail/queue_actor.hpp"

#include <algorithm>
#include <atomic>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/claim_pacer.hpp"
#include "bg_jobs/actors/detail/dispatcher.hpp"
#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

using poll_atom = caf::atom_constant<caf::atom("poll")>;
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;
using settle_atom = caf::atom_constant<caf::atom("settle")>;

/// How long a stopping queue waits for its last writes.
constexpr std::chrono::seconds finish_timeout{30};

/// Distinguishes incarnations of a queue within this process.
std::atomic<uint64_t> next_incarnation{1};

/// A queue keeps its executors busy: it asks its store worker for jobs
/// (sending the outcomes decided since with the request; `claim_pacer`
/// decides when), hands them on through its dispatcher, and collects the
/// executors' completions.
struct queue_state {
  node_context ctx;
  queue_spec spec{""};
  /// Its workers, retry policies, timeouts and owner name, shared with its
  /// executors.
  std::shared_ptr<const job_rules> rules;
  dispatcher hand;
  /// Its claims and writes, through its store worker.
  claim_pacer pace;
  /// The queue is to finish once the claim on its way returns.
  bool finish_after_claim = false;
  bool stopping = false;
  /// The last writes are on their way: the queue quits once they are done.
  bool finishing = false;
  /// A settle message is on its way: results that arrive before it are
  /// written together, followed by one claim.
  bool settling = false;
  /// Polling waits for the registry to know us as the owner.
  bool registered = false;
  /// A `check_cancels_atom` timer is on its way.
  bool cancel_check_armed = false;

  static inline const char* name = "bg_jobs.queue";

  const std::string& owner() const { return rules->owner(); }

  void emit(event_kind k, std::string message = {}) const {
    event e{k};
    e.queue = spec.name();
    e.message = std::move(message);
    ctx.emit(std::move(e));
  }

  /// Makes itself known to the router and the registry (again, after
  /// either restarted).
  void announce(caf::event_based_actor* self, bool as_owner) {
    if (auto router = ctx.dir->get(actor_directory::router))
      self->send(router, route_atom::value, spec.name(),
                 caf::actor_cast<caf::actor>(self));
    hand.pool().register_all(self);
    auto reg = ctx.dir->get(actor_directory::registry);
    if (!reg)
      return;
    self->send(reg, register_atom::value, spec.name() + "/store", owner(),
               pace.store());
    if (as_owner)
      self->send(reg, register_atom::value, spec.name(), owner(),
                 caf::actor_cast<caf::actor>(self));
  }

  void feed(caf::event_based_actor* self) {
    if (!stopping)
      hand.feed(self, pace.unsent);
  }

  /// A job ended in an executor (ran, or went back unstarted): the next
  /// one goes on at once; results that arrive before the settle message
  /// are written together.
  void ended(caf::event_based_actor* self) {
    feed(self);
    if (!std::exchange(settling, true))
      self->send(self, settle_atom::value);
  }

  void poll(caf::event_based_actor* self) {
    if (stopping || !registered)
      return;
    feed(self);
    pace.claim(self, hand, [this, self](claim_call& c) { claimed(self, c); });
  }

  /// While the queue holds jobs, its store worker looks once a second for
  /// cancels of them asked for on another node.
  void arm_cancel_check(caf::event_based_actor* self) {
    if (cancel_check_armed || stopping || hand.empty())
      return;
    cancel_check_armed = true;
    self->delayed_send(self, std::chrono::seconds{1},
                       check_cancels_atom::value);
  }

  /// The store worker's answer.
  void claimed(caf::event_based_actor* self, claim_call& c) {
    bool again = pace.take_answer(self, hand, c);
    arm_cancel_check(self);
    if (finish_after_claim) {
      finish(self);
      return;
    }
    feed(self);
    if (again)
      poll(self);
    else
      settle(self);
    stop_if_idle(self);
  }

  /// After results arrived: claims more, writes the outcomes or keeps them
  /// for the next claim, as the pacer says.
  void settle(caf::event_based_actor* self) {
    if (pace.claiming())
      return; // its answer settles
    feed(self);
    if (pace.settle(self, hand, stopping))
      poll(self);
  }

  /// Gives a job back to the table at once.
  void release(job j, const std::string& why, bool count_attempt) {
    pace.unsent.push_back(hand.release(std::move(j), why, count_attempt));
  }

  /// After an executor's slot changed outside a result (a timeout, a
  /// death): the outcomes go now, and the queue goes on or stops.
  void resume_after_slot_change(caf::event_based_actor* self) {
    pace.flush(self);
    if (stopping)
      stop_if_idle(self);
    else
      poll(self);
  }

  void finish(caf::event_based_actor* self) {
    if (pace.claiming()) {
      finish_after_claim = true;
      return;
    }
    if (std::exchange(finishing, true))
      return;
    for (auto& j : hand.pool().take_running())
      release(std::move(j), "shutdown: grace period over", false);
    for (auto& j : hand.take_ahead())
      release(std::move(j), "shutdown: reserved ahead, not started", false);
    hand.pool().stop_all(self);
    // The outcomes, then whatever the store still holds for us (a lost
    // reply, an outcome it refused) goes back to the table before we go.
    auto done = [this, self] {
      emit(event_kind::queue_polling_stopped);
      self->quit();
    };
    self->request(pace.store(), finish_timeout, finish_atom::value,
                  std::exchange(pace.unsent, {}))
        .then([done] { done(); }, [done](caf::error&) { done(); });
  }

  void stop_if_idle(caf::event_based_actor* self) {
    if (stopping && !finishing && hand.pool().busy() == 0)
      finish(self);
  }
};

caf::behavior queue_actor(caf::stateful_actor<queue_state>* self,
                          node_context ctx, size_t index) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.spec = st.ctx.plan->queues[index];
  auto owner = st.ctx.node + "/" + st.spec.name() + "/" +
               std::to_string(next_incarnation++);
  st.rules = std::make_shared<const job_rules>(st.spec, std::move(owner),
                                               st.ctx.plan->keys);
  st.hand = dispatcher{st.ctx, st.rules,
                       static_cast<size_t>(st.spec.prefetch())};
  st.hand.pool().start(self,
                       static_cast<size_t>(st.spec.max_concurrent_jobs()));
  self->set_exit_handler([self](caf::exit_msg& em) {
    auto& st = self->state;
    auto i = st.hand.pool().slot_of(em.source);
    if (!i)
      return self->quit(em.reason);
    auto held = st.hand.pool().on_exit(self, *i, !st.stopping);
    for (size_t k = 0; k < held.size(); ++k)
      // The first may have run: its attempt counts.
      st.release(std::move(held[k]),
                 "executor died: " + self->system().render(em.reason), k == 0);
    st.resume_after_slot_change(self);
  });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& x)
                                -> caf::result<caf::message> {
    self->state.emit(event_kind::queue_error, "unexpected message ignored: " +
                                                  caf::to_string(x.content()));
    return caf::none;
  });
  st.pace = claim_pacer{st.ctx, st.spec, st.rules,
                        spawn_store_worker(self, st.ctx, st.spec.name(),
                                           st.owner())};
  st.announce(self, false);
  // The registry must know this queue as the owner of its reservations
  // before it reserves: if it dies, the registry releases them.
  auto start_polling = [self] {
    self->state.registered = true;
    self->send(self, poll_atom::value);
  };
  if (auto reg = st.ctx.dir->get(actor_directory::registry))
    self->request(reg, std::chrono::seconds{10}, register_atom::value,
                  st.spec.name(), st.owner(), caf::actor_cast<caf::actor>(self))
        .then([start_polling]() { start_polling(); },
              [start_polling](caf::error&) { start_polling(); });
  else
    start_polling();
  st.emit(event_kind::queue_polling_started);
  return {
      [=](poll_atom) {
        auto& st = self->state;
        st.poll(self);
        if (!st.stopping)
          self->delayed_send(self, st.pace.poll_every(), poll_atom::value);
      },
      [=](next_due_atom, int64_t ms) {
        self->state.pace.look_when_available(self,
                                             std::chrono::milliseconds{ms});
      },
      [=](check_cancels_atom) {
        auto& st = self->state;
        st.cancel_check_armed = false;
        st.pace.check_cancels(self, st.hand);
        st.arm_cancel_check(self);
      },
      [=](wake_atom, const std::string& job_name) {
        // "*" is a hint that some process wrote to the store: a busy queue
        // polls after its next batch anyway, so only an idle one looks now.
        if (job_name == "*" && self->state.hand.pool().busy() > 0)
          return;
        self->state.poll(self);
      },
      [=](reports_atom) {
        auto& st = self->state;
        bool ended = false;
        for (auto& r : st.hand.pool().take_reports()) {
          // Only from the executor that still holds the slot for the job.
          auto j = st.hand.pool().finish(self, r.slot, r.job_id, r.from);
          if (!j)
            continue;
          ended = true;
          if (r.stale) {
            st.release(std::move(*j), held_too_long, false);
            continue;
          }
          st.pace.look_when_due(self, r.done);
          st.pace.unsent.push_back(std::move(r.done));
          if (st.spec.limited())
            st.pace.more_may_wait(); // a slot of its keys is free again
          st.hand.ran(r.duration_us);
        }
        if (ended)
          st.ended(self);
      },
      [=](settle_atom) {
        auto& st = self->state;
        st.settling = false;
        st.settle(self);
        st.stop_if_idle(self);
      },
      [=](rate_due_atom) {
        self->state.pace.rate_due();
        self->state.poll(self);
      },
      [=](flush_due_atom) { self->state.pace.flush_due(self); },
      [=](cancel_atom, int64_t job_id, const std::string& reason) {
        auto& st = self->state;
        if (st.hand.cancel(self, job_id, reason, st.pace.unsent))
          st.pace.flush(self);
      },
      [=](scale_atom, int n) -> caf::result<void> {
        auto& st = self->state;
        if (n < 1 || n > 1000)
          return make_error(errc::invalid_argument,
                            "max_concurrent_jobs must be 1 to 1000, got " +
                                std::to_string(n));
        auto before = st.hand.pool().size();
        st.hand.pool().resize(self, static_cast<size_t>(n));
        st.emit(event_kind::queue_scaled, "max_concurrent_jobs " +
                                              std::to_string(before) + " -> " +
                                              std::to_string(n));
        st.poll(self);
        return caf::unit;
      },
      [=](ready_atom) { return caf::unit; },
      [=](reregister_atom) { self->state.announce(self, true); },
      [=](shutdown_atom, int64_t grace_ms) {
        auto& st = self->state;
        if (std::exchange(st.stopping, true))
          return;
        for (auto& j : st.hand.pool().take_all_unstarted(self))
          st.release(std::move(j), "shutdown: not started", false);
        if (st.hand.pool().busy() == 0)
          st.finish(self);
        else
          self->delayed_send(self, std::chrono::milliseconds{grace_ms},
                             deadline_atom::value);
      },
      [=](deadline_atom) { self->state.finish(self); },
      [=](job_timeout_atom, size_t i, int64_t job_id) {
        auto& st = self->state;
        if (!st.hand.pool().runs(i, job_id))
          return;
        st.hand.time_out(self, i, st.pace.unsent);
        st.resume_after_slot_change(self);
      },
  };
}

} // namespace

caf::actor spawn_queue(caf::event_based_actor* parent, node_context ctx,
                       size_t index) {
  return parent->spawn<caf::linked + caf::detached>(queue_actor, std::move(ctx),
                                                    index);
}

} // namespace bg_jobs::detail
