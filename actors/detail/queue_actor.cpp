#include "bg_jobs/actors/detail/queue_actor.hpp"

#include <algorithm>
#include <atomic>
#include <deque>
#include <random>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/executor_pool.hpp"
#include "bg_jobs/actors/detail/job_rules.hpp"
#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/detail/store_worker.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

using poll_atom = caf::atom_constant<caf::atom("poll")>;
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;
using timeout_atom = caf::atom_constant<caf::atom("jobtimeout")>;
using settle_atom = caf::atom_constant<caf::atom("settle")>;
/// The outcomes kept for the next claim have waited long enough.
using flush_due_atom = caf::atom_constant<caf::atom("flushdue")>;

/// The work a queue keeps in hand beyond its free executors.
constexpr double ahead_horizon_us = 10000;

/// The longest an outcome waits for the next claim to carry it.
constexpr std::chrono::milliseconds flush_delay{20};

/// A claim that takes longer means a hung store call: the queue restarts.
constexpr std::chrono::seconds claim_timeout{60};

/// How long a stopping queue waits for its last writes.
constexpr std::chrono::seconds finish_timeout{30};

/// Why a job held ahead goes back unstarted.
constexpr const char* held_too_long =
    "held ahead past half the lease (was the process paused?); not started";

/// Distinguishes incarnations of a queue within this process.
std::atomic<uint64_t> next_incarnation{1};

struct queue_state {
  node_context ctx;
  queue_spec spec{""};
  std::string owner;
  /// Its workers, retry policies and timeouts, shared with its executors.
  std::shared_ptr<const job_rules> rules;
  executor_pool pool;
  /// Outcomes decided since the last message to the store worker.
  outcome_batch unsent;
  std::minstd_rand rng{std::random_device{}()};
  /// Jobs reserved ahead of free executors, in claim order.
  std::deque<held_job> ahead;
  /// A moving average of the handlers' run time in microseconds; negative
  /// until the first job ends.
  double run_us = -1;
  /// The last reservation got all it asked for: more jobs may be waiting.
  bool backlog = false;
  /// A flush message is on its way for outcomes kept for the next claim.
  bool flush_pending = false;
  /// Makes every store call of this queue, on its one connection, while
  /// the queue keeps its executors busy.
  caf::actor store;
  /// A claim is on its way (with the outcomes decided before it left);
  /// outcomes decided since wait for its answer.
  bool claiming = false;
  /// Something asked for a poll while a claim was on its way.
  bool poll_again = false;
  /// The queue is to finish once the claim on its way returns.
  bool finish_after_claim = false;
  bool stopping = false;
  /// The last writes are on their way: the queue quits once they are done.
  bool finishing = false;
  /// A settle message is on its way: results that arrive before it are
  /// persisted together, in one transaction, followed by one reservation.
  bool settling = false;
  /// Polling waits for the registry to know us as the owner.
  bool registered = false;
  /// When the store worker was last asked for cancels of our running jobs
  /// (a cancel on another node reaches us that way).
  std::chrono::steady_clock::time_point cancels_checked;

  static inline const char* name = "bg_jobs.queue";

  void emit(event_kind k, std::string message = {}) const {
    event e{k};
    e.queue = spec.name();
    e.message = std::move(message);
    ctx.emit(std::move(e));
  }

  void announce(caf::event_based_actor* self) {
    if (auto router = ctx.dir->get(actor_directory::router))
      self->send(router, route_atom::value, spec.name(),
                 caf::actor_cast<caf::actor>(self));
    pool.register_all(self);
    if (auto reg = ctx.dir->get(actor_directory::registry))
      self->send(reg, register_atom::value, spec.name() + "/store", owner,
                 store);
  }


  /// Has the outcomes decided so far written now, unless a claim is on its
  /// way (its answer settles them).
  void flush_outcomes(caf::event_based_actor* self) {
    if (!claiming && !unsent.empty())
      self->send(store, write_outcomes_atom::value, std::exchange(unsent, {}));
  }


  /// How many jobs to hold ahead: about 10 ms of work at the handlers'
  /// recent pace, within the queue's prefetch.
  size_t ahead_target() const {
    if (spec.prefetch() == 0 || run_us < 0)
      return 0;
    auto n = ahead_horizon_us / std::max(run_us, 1.0) *
             static_cast<double>(pool.size());
    return static_cast<size_t>(std::min(n, double(spec.prefetch())));
  }

  /// Hands jobs held ahead to idle executors and, while jobs are quick,
  /// a few to each busy one behind its job, so that an executor goes on to
  /// its next job without waiting for the queue.
  void feed(caf::event_based_actor* self) {
    auto depth = hand_depth();
    while (!stopping && !ahead.empty() &&
           (pool.idle() > 0 || (depth > 1 && pool.room_behind(depth)))) {
      auto h = std::move(ahead.front());
      ahead.pop_front();
      dispatch(self, std::move(h), depth);
    }
  }

  /// How many jobs an executor may hold: one, unless jobs take less than
  /// 100 us and no timeout applies (a timeout runs from the hand-over).
  size_t hand_depth() const {
    return !rules->timeouts() && run_us >= 0 && run_us < 100 ? 8 : 1;
  }

  /// A job ended in an executor (ran, or went back unstarted): the next
  /// one goes on at once; results that arrive before the settle message
  /// are persisted together.
  void ended(caf::event_based_actor* self) {
    feed(self);
    if (!settling) {
      settling = true;
      self->send(self, settle_atom::value);
    }
  }

  void poll(caf::event_based_actor* self) {
    if (stopping || !registered)
      return;
    feed(self);
    if (claiming) {
      poll_again = true;
      return;
    }
    auto room = pool.idle() + ahead_target();
    if (room <= ahead.size()) {
      flush_outcomes(self);
      return;
    }
    // Outcomes waiting to be persisted go first (retries become claimable
    // again), in the same transaction where the store makes that cheaper.
    auto call = std::make_shared<claim_call>();
    call->outcomes = std::exchange(unsent, {});
    call->held = pool.held();
    for (auto& h : ahead)
      call->held.push_back(h.j.id);
    call->params = {rules->job_names(), static_cast<int>(room - ahead.size()), owner,
                    spec.name()};
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
    if (c.error) {
      backlog = false;
    } else {
      auto& jobs = c.reserved;
      backlog = static_cast<int>(jobs.size()) == c.params.limit;
      // Half the lease after the claim left, well before another node
      // could rescue these jobs (their reservation is younger than that).
      auto start_by = c.sent + ctx.plan->maintenance.lease / 2;
      for (auto& j : jobs)
        ahead.push_back(held_job{std::move(j), start_by});
    }
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
  /// persists the outcomes when no claim is due soon, and otherwise keeps
  /// them (at most `flush_delay`) for the claim to carry.
  void settle(caf::event_based_actor* self) {
    if (claiming)
      return; // its answer settles
    if (stopping) {
      flush_outcomes(self);
      return;
    }
    feed(self);
    auto target = ahead_target();
    if (backlog && ahead.size() <= target / 2) {
      poll(self);
      return;
    }
    if (ahead.empty() || unsent.size() >= std::max<size_t>(1, target / 2)) {
      flush_outcomes(self);
      return;
    }
    if (!flush_pending) {
      flush_pending = true;
      self->delayed_send(self, flush_delay, flush_due_atom::value);
    }
  }

  /// Looks for jobs again when a retry or snooze decided here comes due:
  /// the poll interval is only the fallback for what no wake-up reports.
  void poll_when_due(caf::event_based_actor* self, const completion& c,
                     const std::string& job_name) {
    if (c.what != completion::kind::retry && c.what != completion::kind::snooze)
      return;
    auto wait = std::max(std::chrono::milliseconds{0},
                         std::chrono::duration_cast<std::chrono::milliseconds>(
                             c.available_at - ctx.now()));
    if (wait < std::chrono::hours{1})
      self->delayed_send(self, wait + std::chrono::milliseconds{1},
                         wake_atom::value, job_name);
  }

  /// Flags the handler of a running job that was asked to cancel; one
  /// that did not start ends cancelled without running.
  void cancel(caf::event_based_actor* self, int64_t job_id,
              const std::string& reason) {
    std::optional<job> unstarted;
    auto held =
        std::find_if(ahead.begin(), ahead.end(),
                     [&](const held_job& h) { return h.j.id == job_id; });
    if (held != ahead.end()) {
      unstarted = std::move(held->j);
      ahead.erase(held);
    } else {
      unstarted = pool.take_unstarted(self, job_id);
    }
    if (unstarted) {
      unsent.push_back(rules->decide(*unstarted, outcome::cancel(reason),
                                     ctx.now(), rng, {}));
      flush_outcomes(self);
      return;
    }
    pool.request_cancel(job_id, reason);
  }

  /// Has the store worker look, at most once a second while jobs run, for
  /// cancels of them asked for on another node.
  void check_cancels(caf::event_based_actor* self) {
    auto now = std::chrono::steady_clock::now();
    if ((pool.busy() == 0 && ahead.empty()) ||
        now - cancels_checked < std::chrono::seconds{1})
      return;
    cancels_checked = now;
    self->send(store, check_cancels_atom::value);
  }

  void dispatch(caf::event_based_actor* self, held_job h, size_t depth) {
    auto& j = h.j;
    if (std::chrono::steady_clock::now() > h.start_by) {
      release(std::move(j), held_too_long, false);
      return;
    }
    if (auto& policy = rules->policy(j); policy.exhausted(j)) {
      unsent.push_back(pending_outcome::of(policy.on_exhausted(j, owner),
                                           std::move(j), spec.name()));
      return;
    }
    if (ctx.bus->active()) {
      event e{event_kind::job_reserved};
      e.queue = spec.name();
      e.job = j;
      ctx.emit(std::move(e));
    }
    auto limit = rules->timeout_of(j.name);
    auto id = j.id;
    auto i = pool.idle() > 0
                 ? pool.run(std::move(h), self->address())
                 : *pool.run_behind(std::move(h), self->address(), depth);
    if (limit)
      self->delayed_send(self, *limit, timeout_atom::value, i, id);
  }

  /// Abandons the attempt running in slot `i`: it counts as failed, and a
  /// fresh executor takes the slot at once.
  void time_out(caf::event_based_actor* self, size_t i) {
    auto j = pool.replace(self, i);
    auto limit =
        rules->timeout_of(j.name).value_or(std::chrono::milliseconds{0});
    auto o = outcome::failure("timed out after " +
                              std::to_string(limit.count()) + " ms");
    unsent.push_back(rules->decide(
        j, o, ctx.now(), rng,
        std::chrono::duration_cast<std::chrono::microseconds>(limit)));
  }

  /// Gives a job back to the table at once.
  void release(job j, const std::string& why, bool count_attempt) {
    unsent.push_back(
        rules->release(std::move(j), why, count_attempt, ctx.now()));
  }

  void finish(caf::event_based_actor* self) {
    if (claiming) {
      finish_after_claim = true;
      return;
    }
    if (std::exchange(finishing, true))
      return;
    for (auto& j : pool.take_running())
      release(std::move(j), "shutdown: grace period over", false);
    for (auto& h : ahead)
      release(std::move(h.j), "shutdown: reserved ahead, not started", false);
    ahead.clear();
    pool.stop_all(self);
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
    if (stopping && !finishing && pool.busy() == 0)
      finish(self);
  }
};

caf::behavior queue_actor(caf::stateful_actor<queue_state>* self,
                          node_context ctx, size_t index) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.spec = st.ctx.plan->queues[index];
  st.owner = st.ctx.node + "/" + st.spec.name() + "/" +
             std::to_string(next_incarnation++);
  st.rules = std::make_shared<const job_rules>(st.spec, st.owner);
  st.pool = executor_pool{st.ctx, st.rules};
  st.pool.start(self, static_cast<size_t>(st.spec.max_concurrent_jobs()));
  self->set_exit_handler([self](caf::exit_msg& em) {
    auto& st = self->state;
    auto i = st.pool.slot_of(em.source);
    if (!i) {
      self->quit(em.reason);
      return;
    }
    auto held = st.pool.on_exit(self, *i, !st.stopping);
    for (size_t k = 0; k < held.size(); ++k)
      // The first may have run: its attempt counts.
      st.release(std::move(held[k]),
                 "executor died: " + self->system().render(em.reason), k == 0);
    if (!held.empty())
      st.flush_outcomes(self);
    if (st.stopping)
      st.stop_if_idle(self);
    else
      st.poll(self);
  });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& x)
                                -> caf::result<caf::message> {
    self->state.emit(event_kind::queue_error, "unexpected message ignored: " +
                                                  caf::to_string(x.content()));
    return caf::none;
  });
  st.store = spawn_store_worker(self, st.ctx, st.spec.name(), st.owner);
  st.announce(self);
  // The registry must know this queue as the owner of its reservations
  // before it reserves: if it dies, the registry releases them.
  auto start_polling = [self] {
    self->state.registered = true;
    self->send(self, poll_atom::value);
  };
  if (auto reg = st.ctx.dir->get(actor_directory::registry))
    self->request(reg, std::chrono::seconds{10}, register_atom::value,
                  st.spec.name(), st.owner, caf::actor_cast<caf::actor>(self))
        .then([start_polling]() { start_polling(); },
              [start_polling](caf::error&) { start_polling(); });
  else
    start_polling();
  st.emit(event_kind::queue_polling_started);
  return {
      [=](poll_atom) {
        self->state.poll(self);
        self->state.check_cancels(self);
        if (!self->state.stopping)
          self->delayed_send(self, self->state.spec.poll_interval(),
                             poll_atom::value);
      },
      [=](wake_atom, const std::string& job_name) {
        // "*" is a hint that some process wrote to the store: a busy queue
        // polls after its next batch anyway, so only an idle one looks now.
        if (job_name == "*" && self->state.pool.busy() > 0)
          return;
        self->state.poll(self);
      },
      [=](result_atom, size_t i, int64_t job_id, pending_outcome& done,
          int64_t duration_us, const caf::actor_addr& from) {
        auto& st = self->state;
        // Only from the executor that still holds the slot for the job.
        if (!st.pool.finish(self, i, job_id, from))
          return;
        st.poll_when_due(self, done.change, done.report.job->name);
        st.unsent.push_back(std::move(done));
        auto us = static_cast<double>(std::max<int64_t>(duration_us, 0));
        st.run_us = st.run_us < 0 ? us : 0.8 * st.run_us + 0.2 * us;
        st.ended(self);
      },
      [=](stale_atom, size_t i, int64_t job_id, const caf::actor_addr& from) {
        auto& st = self->state;
        auto j = st.pool.finish(self, i, job_id, from);
        if (!j)
          return;
        st.release(std::move(*j), held_too_long, false);
        st.ended(self);
      },
      [=](settle_atom) {
        auto& st = self->state;
        st.settling = false;
        st.settle(self);
        st.stop_if_idle(self);
      },
      [=](flush_due_atom) {
        auto& st = self->state;
        st.flush_pending = false;
        st.flush_outcomes(self);
      },
      [=](cancel_atom, int64_t job_id, const std::string& reason) {
        self->state.cancel(self, job_id, reason);
      },
      [=](scale_atom, int n) -> caf::result<void> {
        auto& st = self->state;
        if (n < 1 || n > 1000)
          return make_error(errc::invalid_argument,
                            "max_concurrent_jobs must be 1 to 1000, got " +
                                std::to_string(n));
        auto before = st.pool.size();
        st.pool.resize(self, static_cast<size_t>(n));
        st.emit(event_kind::queue_scaled, "max_concurrent_jobs " +
                                              std::to_string(before) + " -> " +
                                              std::to_string(n));
        st.poll(self);
        return caf::unit;
      },
      [=](ready_atom) { return caf::unit; },
      [=](reregister_atom) {
        auto& st = self->state;
        st.announce(self);
        if (auto reg = st.ctx.dir->get(actor_directory::registry))
          self->send(reg, register_atom::value, st.spec.name(), st.owner,
                     caf::actor_cast<caf::actor>(self));
      },
      [=](shutdown_atom, int64_t grace_ms) {
        auto& st = self->state;
        if (st.stopping)
          return;
        st.stopping = true;
        for (auto& j : st.pool.take_all_unstarted(self))
          st.release(std::move(j), "shutdown: not started", false);
        if (st.pool.busy() == 0)
          st.finish(self);
        else
          self->delayed_send(self, std::chrono::milliseconds{grace_ms},
                             deadline_atom::value);
      },
      [=](deadline_atom) { self->state.finish(self); },
      [=](timeout_atom, size_t i, int64_t job_id) {
        auto& st = self->state;
        if (!st.pool.runs(i, job_id))
          return;
        st.time_out(self, i);
        st.flush_outcomes(self);
        if (st.stopping)
          st.stop_if_idle(self);
        else
          st.poll(self);
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
