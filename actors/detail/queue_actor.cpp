#include "bg_jobs/actors/detail/queue_actor.hpp"

#include <algorithm>
#include <atomic>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/dispatcher.hpp"
#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

using poll_atom = caf::atom_constant<caf::atom("poll")>;
using rate_due_atom = caf::atom_constant<caf::atom("ratedue")>;
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;
using settle_atom = caf::atom_constant<caf::atom("settle")>;
/// The outcomes kept for the next claim have waited long enough.
using flush_due_atom = caf::atom_constant<caf::atom("flushdue")>;

/// The longest an outcome waits for the next claim to carry it.
constexpr std::chrono::milliseconds flush_delay{20};

/// A claim that takes longer means a hung store call: the queue restarts.
constexpr std::chrono::seconds claim_timeout{60};

/// How long a stopping queue waits for its last writes.
constexpr std::chrono::seconds finish_timeout{30};

/// Distinguishes incarnations of a queue within this process.
std::atomic<uint64_t> next_incarnation{1};

/// A queue keeps its executors busy: it asks its store worker for jobs
/// (sending the outcomes decided since with the request), hands them on
/// through its dispatcher, and collects the executors' completions.
struct queue_state {
  node_context ctx;
  queue_spec spec{""};
  /// Its workers, retry policies, timeouts and owner name, shared with its
  /// executors.
  std::shared_ptr<const job_rules> rules;
  dispatcher hand;
  /// Outcomes decided since the last message to the store worker.
  outcome_batch unsent;
  /// Makes every store call of this queue, on its one connection.
  caf::actor store;
  /// The last claim got all it asked for: more jobs may be waiting.
  bool backlog = false;
  /// A flush message is on its way for outcomes kept for the next claim.
  bool flush_pending = false;
  /// A claim is on its way (with the outcomes decided before it left);
  /// outcomes decided since wait for its answer.
  bool claiming = false;
  /// Something asked for a poll while a claim was on its way.
  bool poll_again = false;
  /// When the rate limit's timer is due to have the queue look again.
  std::optional<std::chrono::steady_clock::time_point> rate_look_at;
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
  /// When the store worker last looked for cancels of our running jobs
  /// (a cancel on another node reaches us that way).
  std::chrono::steady_clock::time_point cancels_checked;

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
               store);
    if (as_owner)
      self->send(reg, register_atom::value, spec.name(), owner(),
                 caf::actor_cast<caf::actor>(self));
  }

  /// Has the outcomes decided so far written now, unless a claim is on its
  /// way (its answer settles them).
  void flush_outcomes(caf::event_based_actor* self) {
    if (!claiming && !unsent.empty())
      self->send(store, write_outcomes_atom::value, std::exchange(unsent, {}));
  }

  void feed(caf::event_based_actor* self) {
    if (!stopping)
      hand.feed(self, unsent);
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
    if (claiming) {
      poll_again = true;
      return;
    }
    auto wanted = hand.wanted();
    if (wanted == 0) {
      flush_outcomes(self);
      return;
    }
    // Outcomes waiting to be written go first (retries become claimable
    // again), in the same transaction where the store makes that cheaper.
    auto call = std::make_shared<claim_call>();
    call->outcomes = std::exchange(unsent, {});
    call->held = hand.held();
    call->params = {rules->job_names(), static_cast<int>(wanted), owner(),
                    spec.name()};
    call->params.limited = spec.limited();
    if (spec.rate_limit())
      call->params.rate_limit = spec.rate_limit()->name;
    claiming = true;
    self->request(store, claim_timeout, claim_atom::value, call)
        .then([this, self](claim_call_ptr& c) { claimed(self, *c); },
              [this, self](caf::error& err) {
                // A hung store call (or a dead worker): the registry
                // releases what this queue and its worker hold.
                emit(event_kind::queue_error,
                     "claim failed: " + self->system().render(err));
                self->quit(err);
              });
  }

  /// The store worker's answer.
  void claimed(caf::event_based_actor* self, claim_call& c) {
    claiming = false;
    // A limited queue also claims again after every result (which frees a
    // slot of its keys), since a short claim may have passed over jobs whose
    // keys were full.
    backlog = !c.error && static_cast<int>(c.reserved.size()) == c.params.limit;
    // Half the lease after the claim left, well before another node could
    // rescue these jobs (their reservation is younger than that).
    if (!c.error)
      hand.hold(std::move(c.reserved),
                c.sent + ctx.plan->maintenance.lease / 2);
    if (c.rate_wait)
      look_when_rate_allows(self, std::chrono::milliseconds{*c.rate_wait});
    if (finish_after_claim) {
      finish(self);
      return;
    }
    feed(self);
    if (std::exchange(poll_again, false))
      poll(self);
    else
      settle(self);
    stop_if_idle(self);
  }

  /// After results arrived: claims more when few jobs are left in hand,
  /// writes the outcomes when no claim is due soon, and otherwise keeps
  /// them (at most `flush_delay`) for the claim to carry.
  void settle(caf::event_based_actor* self) {
    if (claiming)
      return; // its answer settles
    feed(self);
    auto target = hand.ahead_target();
    if (!stopping && backlog && hand.ahead() <= target / 2)
      return poll(self);
    if (stopping || hand.ahead() == 0 ||
        unsent.size() >= std::max<size_t>(1, target / 2))
      return flush_outcomes(self);
    if (!std::exchange(flush_pending, true))
      self->delayed_send(self, flush_delay, flush_due_atom::value);
  }

  /// Looks for jobs again when a retry or snooze decided here comes due:
  /// the poll interval is only the fallback for what no wake-up reports.
  void poll_when_due(caf::event_based_actor* self, const pending_outcome& o) {
    auto& c = o.change;
    if (c.what != completion::kind::retry && c.what != completion::kind::snooze)
      return;
    auto wait = std::max(std::chrono::milliseconds{0},
                         std::chrono::duration_cast<std::chrono::milliseconds>(
                             c.available_at - ctx.now()));
    if (wait < std::chrono::hours{1})
      self->delayed_send(self, wait + std::chrono::milliseconds{1},
                         wake_atom::value, o.report.job->name);
  }

  /// Looks for jobs again when the rate limit lets the first one it held
  /// back go (one timer at a time: the earliest asked for).
  void look_when_rate_allows(caf::event_based_actor* self,
                             std::chrono::milliseconds wait) {
    auto at = std::chrono::steady_clock::now() + wait;
    if (rate_look_at && *rate_look_at <= at &&
        *rate_look_at > std::chrono::steady_clock::now())
      return;
    rate_look_at = at;
    self->delayed_send(self, wait + std::chrono::milliseconds{1},
                       rate_due_atom::value);
  }

  /// Has the store worker look, at most once a second while jobs run, for
  /// cancels of them asked for on another node.
  void check_cancels(caf::event_based_actor* self) {
    auto now = std::chrono::steady_clock::now();
    if (hand.empty() || now - cancels_checked < std::chrono::seconds{1})
      return;
    cancels_checked = now;
    self->send(store, check_cancels_atom::value);
  }

  /// Gives a job back to the table at once.
  void release(job j, const std::string& why, bool count_attempt) {
    unsent.push_back(hand.release(std::move(j), why, count_attempt));
  }

  /// After an executor's slot changed outside a result (a timeout, a
  /// death): the outcomes go now, and the queue goes on or stops.
  void resume_after_slot_change(caf::event_based_actor* self) {
    flush_outcomes(self);
    if (stopping)
      stop_if_idle(self);
    else
      poll(self);
  }

  void finish(caf::event_based_actor* self) {
    if (claiming) {
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
    self->request(store, finish_timeout, finish_atom::value,
                  std::exchange(unsent, {}))
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
  st.rules = std::make_shared<const job_rules>(st.spec, std::move(owner));
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
  st.store = spawn_store_worker(self, st.ctx, st.spec.name(), st.owner());
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
        st.check_cancels(self);
        if (!st.stopping)
          self->delayed_send(self, st.spec.poll_interval(), poll_atom::value);
      },
      [=](wake_atom, const std::string& job_name) {
        // "*" is a hint that some process wrote to the store: a busy queue
        // polls after its next batch anyway, so only an idle one looks now.
        if (job_name == "*" && self->state.hand.pool().busy() > 0)
          return;
        self->state.poll(self);
      },
      [=](result_atom, size_t i, int64_t job_id, pending_outcome& done,
          int64_t duration_us, const caf::actor_addr& from) {
        auto& st = self->state;
        // Only from the executor that still holds the slot for the job.
        if (!st.hand.pool().finish(self, i, job_id, from))
          return;
        st.poll_when_due(self, done);
        st.unsent.push_back(std::move(done));
        if (st.spec.limited())
          st.backlog = true; // a slot of its keys is free again
        st.hand.ran(duration_us);
        st.ended(self);
      },
      [=](stale_atom, size_t i, int64_t job_id, const caf::actor_addr& from) {
        auto& st = self->state;
        if (auto j = st.hand.pool().finish(self, i, job_id, from)) {
          st.release(std::move(*j), held_too_long, false);
          st.ended(self);
        }
      },
      [=](settle_atom) {
        auto& st = self->state;
        st.settling = false;
        st.settle(self);
        st.stop_if_idle(self);
      },
      [=](rate_due_atom) {
        auto& st = self->state;
        if (st.rate_look_at &&
            *st.rate_look_at <= std::chrono::steady_clock::now())
          st.rate_look_at.reset();
        st.backlog = true;
        st.poll(self);
      },
      [=](flush_due_atom) {
        self->state.flush_pending = false;
        self->state.flush_outcomes(self);
      },
      [=](cancel_atom, int64_t job_id, const std::string& reason) {
        auto& st = self->state;
        if (st.hand.cancel(self, job_id, reason, st.unsent))
          st.flush_outcomes(self);
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
        st.hand.time_out(self, i, st.unsent);
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
