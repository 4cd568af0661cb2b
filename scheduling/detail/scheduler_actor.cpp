#include "bg_jobs/scheduling/detail/scheduler_actor.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/detail/enqueuer.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

using tick_atom = caf::atom_constant<caf::atom("schedtick")>;

using std::chrono::milliseconds;

/// One scheduled job as the scheduler keeps it.
struct scheduled_entry {
  scheduled_job_spec spec;
  schedule plan;
  /// How often to look at the store for this job.
  milliseconds check{1000};
  /// The occurrence its queue was last woken for.
  std::optional<timestamp> woken_for;
  /// When its next round is due.
  std::chrono::steady_clock::time_point due;

  /// The occurrence to enqueue after `last`, if one is due to be enqueued:
  /// none while `last` has not finished (waiting or running), so that two
  /// occurrences of one job never run at once in a queue of several
  /// executors.
  std::optional<timestamp>
  next_occurrence(const std::optional<scheduled_run>& last,
                  timestamp now) const {
    if (last && last->pending)
      return std::nullopt;
    if (!plan.is_interval()) {
      if (!last)
        return plan.next_after(now);
      auto next = plan.next_after(last->scheduled_at);
      if (!next || *next > now || *next + spec.late_after() >= now)
        return next; // on time, or late by less than the tolerance
      // Missed while the previous ran or no node was up.
      if (spec.missed_runs() == missed_runs::skip)
        return plan.next_after(now);
      auto latest = next;
      for (auto t = plan.next_after(*next); t && *t <= now;
           t = plan.next_after(*t))
        latest = t;
      return latest;
    }
    auto every = plan.interval();
    if (!last) {
      // Aligned to multiples of the interval, so that nodes starting in the
      // same window pick the same first occurrence.
      auto n = (to_unix_ms(now) / every.count() + 1) * every.count();
      return from_unix_ms(n);
    }
    auto end = last->finished_at.value_or(now);
    return std::max(end + every, last->scheduled_at + milliseconds{1});
  }
};

struct scheduler_state {
  std::vector<scheduled_entry> entries;
  node_context ctx;

  /// The node's shared connection; used only while `run` holds its lock.
  store_connection& store() { return ctx.shared->door.store(); }

  static inline const char* name = "bg_jobs.scheduler";

  /// Applies the missed-runs policy to a cron occurrence still waiting well
  /// past its time; returns whether it changed the schedule.
  bool handle_missed(db_adapter& db, const scheduled_entry& s,
                     const scheduled_run& last, timestamp now) {
    if (s.plan.is_interval() || !last.pending ||
        last.scheduled_at + s.spec.late_after() >= now)
      return false;
    std::optional<timestamp> latest;
    if (s.spec.missed_runs() == missed_runs::run_latest_once) {
      // The latest occurrence that fell due; none later: it runs as is.
      for (auto t = s.plan.next_after(last.scheduled_at); t && *t <= now;
           t = s.plan.next_after(*t))
        latest = t;
      if (!latest)
        return false;
    }
    if (auto gone = db.delete_job(last.job_id); !gone) {
      // Running by now, or another node got there first.
      if (code_of(gone.error()) != errc::invalid_state &&
          code_of(gone.error()) != errc::job_not_found)
        store().failed(gone.error(), "dropping a missed occurrence");
      return false;
    }
    // The occurrence is gone from the store (not kept as cancelled).
    event e{event_kind::job_deleted};
    e.queue = s.spec.queue();
    job gone_job;
    gone_job.id = last.job_id;
    gone_job.name = s.spec.job_name();
    e.job = std::move(gone_job);
    e.message = "missed its time " + to_iso8601(last.scheduled_at) +
                (latest ? "; the latest missed run, " + to_iso8601(*latest) +
                              ", runs instead"
                        : "; skipped");
    ctx.emit(std::move(e));
    if (!latest)
      return false;
    scheduled_params p{s.spec.request(), *latest, last.scheduled_at};
    if (auto j = db.enqueue_scheduled(p); !j)
      store().failed(j.error(), "enqueueing the latest missed occurrence");
    return true;
  }

  /// Runs one round of `s`; returns when to run its next.
  milliseconds run_once(caf::event_based_actor* self, db_adapter& db,
                        const std::vector<pause_record>& pauses,
                        scheduled_entry& s) {
    auto& name = s.spec.job_name();
    // While paused nothing is enqueued; the pause skipped what waited.
    for (auto& p : pauses)
      if (p.kind == pause_kind::schedule && p.name == name)
        return s.check;
    auto last = db.last_scheduled_run(name);
    if (!last) {
      store().failed(last.error(), "reading the schedule");
      return store().backoff();
    }
    auto now = ctx.now();
    if (*last && handle_missed(db, s, **last, now))
      return milliseconds{1}; // the schedule changed: read it again
    std::optional<timestamp> upcoming;
    if (*last && (*last)->pending)
      upcoming = (*last)->scheduled_at;
    if (auto occ = s.next_occurrence(*last, now)) {
      std::optional<timestamp> previous;
      if (*last)
        previous = (*last)->scheduled_at;
      scheduled_params p{s.spec.request(), *occ, previous};
      auto j = db.enqueue_scheduled(p);
      if (!j) {
        store().failed(j.error(), "enqueueing the next occurrence");
        return store().backoff();
      }
      if (!*j)
        return milliseconds{1}; // another node scheduled it: look again
      if (ctx.bus->active()) {
        event e{event_kind::job_enqueued};
        e.queue = s.spec.queue();
        e.job = **j;
        e.message = "scheduled " + s.plan.to_string();
        ctx.emit(std::move(e));
      }
      upcoming = *occ;
    }
    if (upcoming && *upcoming <= now && s.woken_for != upcoming) {
      s.woken_for = upcoming;
      if (auto router = ctx.dir->get(actor_directory::router))
        self->send(router, wake_atom::value, name);
    }
    if (upcoming && *upcoming > now)
      return std::clamp(
          std::chrono::duration_cast<milliseconds>(*upcoming - now),
          milliseconds{1}, s.check);
    return s.check;
  }

  /// Runs the rounds that are due; returns when the next is.
  milliseconds run(caf::event_based_actor* self) {
    using clock = std::chrono::steady_clock;
    std::lock_guard<std::mutex> guard{ctx.shared->mtx};
    auto db = store().get();
    if (!db)
      return std::max(store().backoff(), milliseconds{1});
    auto pauses = db->pauses();
    if (!pauses) {
      store().failed(pauses.error(), "reading pauses");
      return store().backoff();
    }
    auto now = clock::now();
    auto next = now + std::chrono::hours{1};
    for (auto& s : entries) {
      if (s.due <= now)
        s.due = now + run_once(self, *db, *pauses, s);
      next = std::min(next, s.due);
    }
    return std::max(std::chrono::duration_cast<milliseconds>(next - now),
                    milliseconds{1});
  }
};

caf::behavior scheduler_actor(caf::stateful_actor<scheduler_state>* self,
                              node_context ctx) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  for (auto& spec : st.ctx.plan->scheduled) {
    auto plan = spec.build_schedule();
    if (!plan) {
      self->quit(std::move(plan.error()));
      return {};
    }
    auto check = spec.poll_interval();
    if (plan->is_interval())
      check = std::min(check, plan->interval());
    st.entries.push_back(scheduled_entry{spec, std::move(*plan), check, {},
                                         std::chrono::steady_clock::now()});
  }
  auto announce = [self] {
    auto& st = self->state;
    auto reg = st.ctx.dir->get(actor_directory::registry);
    if (!reg)
      return;
    auto me = caf::actor_cast<caf::actor>(self);
    self->send(reg, register_atom::value, std::string{"scheduler"},
               std::string{}, me);
    for (auto& s : st.entries)
      self->send(reg, register_atom::value, s.spec.job_name() + "/scheduler",
                 std::string{}, me);
  };
  announce();
  // The first round before anything else (the supervisor waits for it).
  self->delayed_send(self, self->state.run(self), tick_atom::value);
  return {
      [=](reregister_atom) { announce(); },
      [=](tick_atom) {
        self->delayed_send(self, self->state.run(self), tick_atom::value);
      },
      [=](ready_atom) { return caf::unit; },
  };
}

} // namespace

caf::actor spawn_scheduler(caf::event_based_actor* parent, node_context ctx) {
  return parent->spawn<caf::linked + caf::detached>(scheduler_actor,
                                                    std::move(ctx));
}

} // namespace bg_jobs::detail
