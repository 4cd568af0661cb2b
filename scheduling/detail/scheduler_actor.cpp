#include "bg_jobs/scheduling/detail/scheduler_actor.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/detail/store_connection.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

using tick_atom = caf::atom_constant<caf::atom("schedtick")>;

using std::chrono::milliseconds;

struct scheduler_state {
  scheduled_job_spec spec{worker{"", [](const job&) {}}, std::string{}};
  std::optional<schedule> plan;
  node_context ctx;
  store_connection store;
  milliseconds check{1000};
  /// The occurrence the queue was last woken for.
  std::optional<timestamp> woken_for;

  static inline const char* name = "bg_jobs.scheduler";

  /// The occurrence to enqueue after `last`, if one is due to be enqueued.
  std::optional<timestamp>
  next_occurrence(const std::optional<scheduled_run>& last,
                  timestamp now) const {
    if (!plan->is_interval()) {
      if (last && last->scheduled_at > now)
        return std::nullopt; // the next run is already enqueued
      auto from = last ? std::max(last->scheduled_at, now) : now;
      return plan->next_after(from);
    }
    auto every = plan->interval();
    if (!last) {
      // Aligned to multiples of the interval, so that nodes starting in the
      // same window pick the same first occurrence.
      auto n = (to_unix_ms(now) / every.count() + 1) * every.count();
      return from_unix_ms(n);
    }
    if (last->pending)
      return std::nullopt;
    auto end = last->finished_at.value_or(now);
    return std::max(end + every, last->scheduled_at + milliseconds{1});
  }

  /// Applies the missed-runs policy to a cron occurrence still waiting well
  /// past its time; returns whether it changed the schedule.
  bool handle_missed(db_adapter& db, const scheduled_run& last, timestamp now) {
    if (plan->is_interval() || !last.pending ||
        last.scheduled_at + spec.late_after() >= now)
      return false;
    std::optional<timestamp> latest;
    if (spec.missed_runs() == missed_runs::run_latest_once) {
      // The latest occurrence that fell due; none later: it runs as is.
      for (auto t = plan->next_after(last.scheduled_at); t && *t <= now;
           t = plan->next_after(*t))
        latest = t;
      if (!latest)
        return false;
    }
    if (auto gone = db.delete_job(last.job_id); !gone) {
      // Running by now, or another node got there first.
      if (code_of(gone.error()) != errc::invalid_state &&
          code_of(gone.error()) != errc::job_not_found)
        store.failed(gone.error(), "dropping a missed occurrence");
      return false;
    }
    // The occurrence is gone from the store (not kept as cancelled).
    event e{event_kind::job_deleted};
    e.queue = spec.job_name();
    job gone_job;
    gone_job.id = last.job_id;
    gone_job.name = spec.job_name();
    e.job = std::move(gone_job);
    e.message = "missed its time " + to_iso8601(last.scheduled_at) +
                (latest ? "; the latest missed run, " + to_iso8601(*latest) +
                              ", runs instead"
                        : "; skipped");
    ctx.emit(std::move(e));
    if (!latest)
      return false;
    scheduled_params p{spec.request(), *latest, last.scheduled_at};
    if (auto j = db.enqueue_scheduled(p); !j)
      store.failed(j.error(), "enqueueing the latest missed occurrence");
    return true;
  }

  /// Runs one round; returns when to run the next.
  milliseconds run_once(caf::event_based_actor* self) {
    auto db = store.get();
    if (!db)
      return std::max(store.backoff(), milliseconds{1});
    auto last = db->last_scheduled_run(spec.job_name());
    if (!last) {
      store.failed(last.error(), "reading the schedule");
      return store.backoff();
    }
    auto now = ctx.now();
    // While paused nothing is enqueued; the pause skipped what waited.
    auto pauses = db->pauses();
    if (!pauses) {
      store.failed(pauses.error(), "reading pauses");
      return store.backoff();
    }
    for (auto& p : *pauses)
      if (p.kind == pause_kind::schedule && p.name == spec.job_name())
        return check;
    if (*last && handle_missed(*db, **last, now))
      return milliseconds{1}; // the schedule changed: read it again
    std::optional<timestamp> upcoming;
    if (*last && (*last)->pending)
      upcoming = (*last)->scheduled_at;
    if (auto occ = next_occurrence(*last, now)) {
      std::optional<timestamp> previous;
      if (*last)
        previous = (*last)->scheduled_at;
      scheduled_params p{spec.request(), *occ, previous};
      auto j = db->enqueue_scheduled(p);
      if (!j) {
        store.failed(j.error(), "enqueueing the next occurrence");
        return store.backoff();
      }
      if (*j) {
        if (ctx.bus->active()) {
          event e{event_kind::job_enqueued};
          e.queue = spec.job_name();
          e.job = **j;
          e.message = "scheduled " + plan->to_string();
          ctx.emit(std::move(e));
        }
        upcoming = *occ;
      } else {
        return milliseconds{1}; // another node scheduled it: look again
      }
    }
    if (upcoming && *upcoming <= now && woken_for != upcoming) {
      woken_for = upcoming;
      if (auto router = ctx.dir->get(actor_directory::router))
        self->send(router, wake_atom::value, spec.job_name());
    }
    if (upcoming && *upcoming > now)
      return std::clamp(
          std::chrono::duration_cast<milliseconds>(*upcoming - now),
          milliseconds{1}, check);
    return check;
  }
};

caf::behavior scheduler_actor(caf::stateful_actor<scheduler_state>* self,
                              node_context ctx, size_t index) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.spec = st.ctx.plan->scheduled[index];
  st.store = store_connection{st.ctx, "scheduler", st.spec.job_name()};
  auto plan = st.spec.build_schedule();
  if (!plan) {
    self->quit(std::move(plan.error()));
    return {};
  }
  st.plan = std::move(*plan);
  st.check = st.spec.poll_interval();
  if (st.plan->is_interval())
    st.check = std::min(st.check, st.plan->interval());
  auto announce = [self] {
    auto& st = self->state;
    if (auto reg = st.ctx.dir->get(actor_directory::registry))
      self->send(reg, register_atom::value, st.spec.job_name() + "/scheduler",
                 std::string{}, caf::actor_cast<caf::actor>(self));
  };
  announce();
  // The first round before anything else (the supervisor waits for it).
  self->delayed_send(self, self->state.run_once(self), tick_atom::value);
  return {
      [=](reregister_atom) { announce(); },
      [=](tick_atom) {
        auto delay = self->state.run_once(self);
        self->delayed_send(self, delay, tick_atom::value);
      },
      [=](ready_atom) { return caf::unit; },
  };
}

} // namespace

caf::actor spawn_scheduler(caf::event_based_actor* parent, node_context ctx,
                           size_t index) {
  return parent->spawn<caf::linked + caf::detached>(scheduler_actor,
                                                    std::move(ctx), index);
}

} // namespace bg_jobs::detail
