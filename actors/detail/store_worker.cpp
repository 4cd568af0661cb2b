#include "bg_jobs/actors/detail/store_worker.hpp"

#include <utility>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/detail/store_connection.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

/// How long after a short claim that reserved some jobs its store worker
/// reads when the next waiting job comes due (after one that reserved
/// none, at once).
constexpr std::chrono::milliseconds next_due_delay{50};

struct store_worker_state {
  node_context ctx;
  std::string queue;
  std::string owner;
  store_connection store;
  outcome_buffer outcomes;
  /// A call's reply went missing: the store may hold reservations of ours
  /// that the queue does not know of. Released before the next claim.
  bool reconcile = false;
  /// The reservation of the last short claim, when it started, and the
  /// queue that made it: whose next waiting job `next_due` reads.
  reserve_params due_params;
  timestamp due_after;
  caf::actor_addr due_to;
  /// A delayed `next_due_atom` is on its way to this worker.
  bool due_asked = false;

  static inline const char* name = "bg_jobs.store_worker";

  void failed(const caf::error& err, const std::string& what) {
    if (store_connection::outcome_unknown(err))
      reconcile = true;
    store.failed(err, what);
  }

  void write(bool now = false) {
    if (auto err = outcomes.flush(store, now);
        err && store_connection::outcome_unknown(err))
      reconcile = true;
  }

  /// Releases every reservation of ours that neither the queue (`held`)
  /// nor a kept outcome holds.
  caf::error reconciled(db_adapter& db, std::vector<int64_t> held) {
    if (!reconcile)
      return caf::none;
    for (auto id : outcomes.job_ids())
      held.push_back(id);
    auto released = db.release_unheld(owner, held);
    if (!released) {
      failed(released.error(), "releasing reservations of an unknown reply");
      return std::move(released.error());
    }
    reconcile = false;
    for (auto& j : *released) {
      event e{event_kind::job_released};
      e.queue = queue;
      e.message = "reserved by a call whose reply was lost";
      e.job = std::move(j);
      ctx.emit(std::move(e));
    }
    return caf::none;
  }

  void claim(claim_call& call) {
    outcomes.append(std::move(call.outcomes));
    auto db = store.get();
    if (!db) {
      call.error = make_error(errc::database_unavailable,
                              "reserving jobs: the store is unreachable");
      return;
    }
    if (auto err = reconciled(*db, std::move(call.held))) {
      call.error = std::move(err);
      return;
    }
    auto r = db->complete_and_reserve(outcomes.changes(), call.params);
    if (!r) {
      call.error = std::move(r.error());
      failed(call.error, "recording outcomes and reserving jobs");
      return;
    }
    outcomes.report(r->applied);
    if (r->reserve_error) {
      call.error = std::move(r->reserve_error);
      failed(call.error, "reserving jobs");
      return;
    }
    call.reserved = std::move(r->reserved);
    // A short claim of a queue with a rate limit: when the rate lets the
    // first job it held back go, so that the queue looks again then.
    if (!call.params.rate_limit.empty() &&
        static_cast<int>(call.reserved.size()) < call.params.limit) {
      auto wait = db->rate_wait(call.params);
      if (wait)
        call.rate_wait = *wait;
      else
        failed(wait.error(), "reading when the rate limit lets jobs go");
    }
  }

  /// After a short claim: tells the queue when its next waiting job comes
  /// due, so that it looks again then rather than at its next poll.
  void next_due(caf::event_based_actor* self) {
    due_asked = false;
    auto db = store.get();
    if (!db)
      return;
    auto due = db->next_due(due_params, due_after);
    if (!due) {
      failed(due.error(), "reading when the next waiting job is due");
      return;
    }
    if (*due)
      if (auto q = caf::actor_cast<caf::actor>(due_to))
        self->send(q, next_due_atom::value, **due);
  }

  /// Sends the queue a cancel for each of the jobs it holds (`ids`) asked
  /// to cancel.
  void check_cancels(caf::event_based_actor* self,
                     const std::vector<int64_t>& ids) {
    auto db = store.get();
    if (!db)
      return;
    auto asked = db->cancels_asked(owner, ids);
    if (!asked) {
      failed(asked.error(), "reading cancels of running jobs");
      return;
    }
    for (auto& [id, reason] : *asked)
      self->send(caf::actor_cast<caf::actor>(self->current_sender()),
                 cancel_atom::value, id, reason);
  }

  /// Whatever an adapter throws is reported, never fatal, so that one bad
  /// row or call cannot crash-loop the queue.
  template <class F>
  void guarded(const char* what, F f) {
    try {
      f();
    } catch (const std::exception& ex) {
      report(std::string{what} + " failed: " + ex.what());
    } catch (...) {
      report(std::string{what} + " failed");
    }
  }

  void report(std::string message) const {
    event e{event_kind::queue_error};
    e.queue = queue;
    e.message = std::move(message);
    ctx.emit(std::move(e));
  }
};

caf::behavior store_worker(caf::stateful_actor<store_worker_state>* self,
                           node_context ctx, std::string queue,
                           std::string owner) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.queue = std::move(queue);
  st.owner = std::move(owner);
  st.store = store_connection{st.ctx, "queue", st.queue};
  st.outcomes = outcome_buffer{st.ctx, st.queue, st.owner};
  st.store.get();
  // Outcomes kept when the queue dies are written before this worker goes
  // (those whose jobs the registry released first are refused).
  self->set_exit_handler([self](caf::exit_msg& em) {
    self->state.guarded("writing outcomes", [&] { self->state.write(true); });
    self->quit(em.reason);
  });
  return {
      [=](claim_atom, claim_call_ptr& call) {
        auto& st = self->state;
        auto started = st.ctx.now();
        try {
          st.claim(*call);
        } catch (const std::exception& ex) {
          call->error = make_error(errc::database_error,
                                   std::string{"reserving jobs: "} +
                                       ex.what());
        }
        // A short claim: when the next waiting job comes due, read once
        // the answer left; after a claim that reserved some, a moment
        // later, so that the claims of a steady trickle of jobs share one
        // read, off their path.
        if (!call->error &&
            static_cast<int>(call->reserved.size()) < call->params.limit) {
          st.due_params = call->params;
          st.due_after = started;
          st.due_to = caf::actor_cast<caf::actor_addr>(self->current_sender());
          if (call->reserved.empty())
            self->send(self, next_due_atom::value);
          else if (!std::exchange(st.due_asked, true))
            self->delayed_send(self, next_due_delay, next_due_atom::value);
        }
        return call;
      },
      [=](write_outcomes_atom, outcome_batch& xs) {
        auto& st = self->state;
        st.outcomes.append(std::move(xs));
        st.guarded("recording job outcomes", [&] { st.write(); });
      },
      [=](next_due_atom) {
        self->state.guarded("reading when the next job is due",
                            [&] { self->state.next_due(self); });
      },
      [=](check_cancels_atom, const std::vector<int64_t>& ids) {
        self->state.guarded("reading cancels",
                            [&] { self->state.check_cancels(self, ids); });
      },
      [=](finish_atom, outcome_batch& xs) {
        auto& st = self->state;
        st.outcomes.append(std::move(xs));
        st.guarded("recording job outcomes", [&] { st.write(true); });
        // Whatever the store still holds for the owner (a lost reply, an
        // outcome it refused) goes back to the table.
        st.guarded("releasing reservations", [&] {
          st.store.run_now("releasing reservations at shutdown",
                           [&st](db_adapter& db) -> caf::error {
                             auto r = db.release_unheld(st.owner, {});
                             if (!r)
                               return std::move(r.error());
                             return caf::none;
                           });
        });
        return caf::unit;
      },
  };
}

} // namespace

caf::actor spawn_store_worker(caf::event_based_actor* queue, node_context ctx,
                              std::string queue_name, std::string owner) {
  return queue->spawn<caf::linked + caf::detached>(
      store_worker, std::move(ctx), std::move(queue_name), std::move(owner));
}

} // namespace bg_jobs::detail
