#include "bg_jobs/scheduling/detail/scheduler_actor.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/enqueuer.hpp"
#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/scheduling/detail/occurrences.hpp"

namespace bg_jobs::detail {

namespace {

using tick_atom = caf::atom_constant<caf::atom("schedtick")>;

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

/// How often the scheduler reads the schedules added at run time: once a
/// change is announced (the listener hears other processes'), and at least
/// this often (without a listener: once a second).
constexpr milliseconds sync_every_listening{10000};
constexpr milliseconds sync_every_polling{1000};
/// How often a schedule added at run time is looked at, at most.
constexpr milliseconds runtime_check{1000};

/// One schedule as the scheduler keeps it: declared in this node's code,
/// or added at run time (and read from the store).
struct scheduled_entry {
  /// The schedule's name: its occurrences and pause are kept under it.
  std::string name;
  job_request request{""};
  /// The queue that runs its job here, for events.
  std::string queue;
  schedule plan;
  occurrence_rules rules;
  /// How often to look at the store for this schedule.
  milliseconds check{1000};
  bool declared = true;
  /// The definition as stored (added at run time) or as declared.
  std::string definition;
  /// The occurrence its queue was last woken for.
  std::optional<timestamp> woken_for;
  /// When its next round is due.
  steady::time_point due;
};

struct scheduler_state {
  /// The declared schedules, then those added at run time.
  std::vector<scheduled_entry> entries;
  node_context ctx;
  steady::time_point next_sync;
  steady::time_point next_declare;
  /// The timer that counts: an announced change starts a new one.
  uint64_t tick = 0;

  milliseconds sync_every() const {
    return ctx.plan->listen ? sync_every_listening : sync_every_polling;
  }

  /// The node's shared connection; used only while `run` holds its lock.
  store_connection& store() { return ctx.shared->door.store(); }

  static inline const char* name = "bg_jobs.scheduler";

  /// Applies the missed-runs policy to a cron occurrence that has waited
  /// more than `late_after` past its time (or past when it was enqueued,
  /// if later): no executor took it. Returns whether it changed the
  /// schedule.
  bool handle_missed(db_adapter& db, const scheduled_entry& s,
                     const scheduled_run& last, timestamp now) {
    if (s.plan.is_interval() || !last.pending || last.running)
      return false;
    auto since = std::max(last.scheduled_at,
                          last.enqueued_at.value_or(last.scheduled_at));
    if (since + s.rules.late_after >= now)
      return false;
    if (s.rules.missed == missed_runs::catch_up) {
      if (last.catch_up_left > 0 || last.skip_until)
        return false; // a catch-up goes on
      if (last.scheduled_at + s.rules.catch_up_window >= now)
        return start_catch_up(db, s, last, now);
      // Older than the window: dropped; the catch-up starts inside it.
    }
    std::optional<timestamp> latest;
    if (s.rules.missed == missed_runs::run_latest_once) {
      // The latest time that fell due; none later: it runs as is.
      latest = latest_at_or_before(s.plan, now, last.scheduled_at);
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
    e.queue = s.queue;
    job gone_job;
    gone_job.id = last.job_id;
    gone_job.name = s.request.name();
    e.job = std::move(gone_job);
    e.message = "missed its time " + to_iso8601(last.scheduled_at) +
                (latest ? "; the latest missed run, " + to_iso8601(*latest) +
                              ", runs instead"
                        : "; skipped");
    ctx.emit(std::move(e));
    if (!latest)
      return false;
    scheduled_params p;
    p.request = s.request;
    p.schedule = s.name;
    p.occurrence = *latest;
    p.previous = last.scheduled_at;
    if (auto j = db.enqueue_scheduled(p); !j)
      store().failed(j.error(), "enqueueing the latest missed occurrence");
    return true;
  }

  /// Makes the late occurrence `last` the first run of a catch-up: at
  /// most `catch_up_max` runs from it, one after another, the times past
  /// the last of them passed over. Returns false (the schedule itself goes
  /// on as it was).
  bool start_catch_up(db_adapter& db, const scheduled_entry& s,
                      const scheduled_run& last, timestamp now) {
    auto t = last.scheduled_at;
    int count = 1;
    while (count < s.rules.catch_up_max) {
      auto n = s.plan.next_after(t);
      if (!n || *n > now)
        break;
      t = *n;
      ++count;
    }
    std::optional<timestamp> skip_until;
    if (auto n = s.plan.next_after(t); n && *n <= now)
      skip_until = latest_at_or_before(s.plan, now, t);
    if (count == 1 && !skip_until)
      return false; // only this one was missed: it runs
    auto marked =
        db.mark_scheduled_run(s.name, last.scheduled_at, count - 1, skip_until);
    if (!marked)
      store().failed(marked.error(), "recording a catch-up");
    return false;
  }

  /// Runs one round of `s`; returns when to run its next.
  milliseconds run_once(caf::event_based_actor* self, db_adapter& db,
                        const std::vector<pause_record>& pauses,
                        scheduled_entry& s) {
    // While paused nothing is enqueued; the pause skipped what waited.
    for (auto& p : pauses)
      if (p.kind == pause_kind::schedule && p.name == s.name)
        return s.check;
    auto last = db.last_scheduled_run(s.name);
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
    if (auto occ = next_occurrence_after(s.plan, s.rules, *last, now)) {
      scheduled_params p;
      p.request = s.request;
      p.schedule = s.name;
      p.occurrence = occ->at;
      if (*last)
        p.previous = (*last)->scheduled_at;
      p.catch_up_left = occ->catch_up_left;
      p.skip_until = occ->skip_until;
      p.require_stored = !s.declared;
      auto j = db.enqueue_scheduled(p);
      if (!j) {
        store().failed(j.error(), "enqueueing the next occurrence");
        return store().backoff();
      }
      if (!*j) {
        // Another node scheduled it (look again), or it was removed (read
        // the schedules first).
        if (!s.declared)
          next_sync = steady::now();
        return milliseconds{1};
      }
      if (ctx.bus->active()) {
        event e{event_kind::job_enqueued};
        e.queue = s.queue;
        e.job = **j;
        e.message = "scheduled " + s.plan.to_string();
        if (!s.declared)
          e.message += " (schedule '" + s.name + "')";
        if (occ->catch_up_left > 0 || occ->at + s.rules.late_after < now)
          e.message += "; late, by the missed-runs policy";
        ctx.emit(std::move(e));
      }
      upcoming = occ->at;
    }
    if (upcoming && *upcoming <= now && s.woken_for != upcoming) {
      s.woken_for = upcoming;
      if (auto router = ctx.dir->get(actor_directory::router))
        self->send(router, wake_atom::value, s.request.name());
    }
    if (upcoming && *upcoming > now)
      return std::clamp(
          std::chrono::duration_cast<milliseconds>(*upcoming - now),
          milliseconds{1}, s.check);
    return s.check;
  }

  /// Stores the declared schedules as seen now.
  void declare(db_adapter& db) {
    for (auto& s : entries) {
      if (!s.declared)
        continue;
      stored_schedule row;
      row.name = s.name;
      row.definition = s.definition;
      row.declared = true;
      if (auto r = db.put_schedule(row); !r) {
        store().failed(r.error(), "declaring schedule '" + s.name + "'");
        return;
      }
    }
  }

  /// Replaces the schedules added at run time by those stored now whose
  /// job this node runs (keeping the state of those unchanged).
  void sync(db_adapter& db) {
    auto rows = db.list_schedules();
    if (!rows) {
      store().failed(rows.error(), "reading schedules");
      return;
    }
    std::vector<scheduled_entry> next;
    std::set<std::string> declared_here;
    for (auto& s : entries)
      if (s.declared) {
        declared_here.insert(s.name);
        next.push_back(std::move(s));
      }
    auto now = steady::now();
    for (auto& row : *rows) {
      if (row.declared || declared_here.count(row.name) > 0)
        continue;
      auto old = std::find_if(entries.begin(), entries.end(), [&](auto& s) {
        return !s.declared && s.name == row.name &&
               s.definition == row.definition;
      });
      if (old != entries.end()) {
        next.push_back(std::move(*old));
        continue;
      }
      auto def = schedule_definition::parse(row.definition);
      if (!def || !ctx.plan->runs(def->job))
        continue;
      auto plan = def->build();
      if (!plan)
        continue;
      scheduled_entry e{def->name,
                        def->request(),
                        ctx.plan->queue_of_job.at(def->job),
                        std::move(*plan),
                        occurrence_rules::of(*def),
                        runtime_check,
                        false,
                        row.definition,
                        {},
                        now};
      if (e.plan.is_interval())
        e.check = std::min(e.check, e.plan.interval());
      next.push_back(std::move(e));
    }
    entries = std::move(next);
  }

  /// Runs the rounds that are due; returns when the next is.
  milliseconds run(caf::event_based_actor* self) {
    std::lock_guard<std::mutex> guard{ctx.shared->mtx};
    auto db = store().get();
    if (!db)
      return std::max(store().backoff(), milliseconds{1});
    auto now = steady::now();
    if (next_declare <= now) {
      declare(*db);
      next_declare =
          now + std::max(ctx.plan->maintenance.schedule_stale_after / 4,
                         milliseconds{10});
    }
    if (next_sync <= now) {
      sync(*db);
      next_sync = now + sync_every();
    }
    auto next = next_sync;
    if (entries.empty())
      return std::max(std::chrono::duration_cast<milliseconds>(next - now),
                      milliseconds{1});
    auto pauses = db->pauses();
    if (!pauses) {
      store().failed(pauses.error(), "reading pauses");
      return store().backoff();
    }
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
  auto now = steady::now();
  for (auto& spec : st.ctx.plan->scheduled) {
    auto plan = spec.build_schedule();
    if (!plan) {
      self->quit(std::move(plan.error()));
      return {};
    }
    auto check = spec.poll_interval();
    if (plan->is_interval())
      check = std::min(check, plan->interval());
    auto def = spec.definition();
    st.entries.push_back(scheduled_entry{def.name, spec.request(), spec.queue(),
                                         std::move(*plan),
                                         occurrence_rules::of(def), check, true,
                                         def.to_json().dump(), {}, now});
  }
  st.next_sync = now;
  st.next_declare = now;
  auto announce = [self] {
    auto& st = self->state;
    auto reg = st.ctx.dir->get(actor_directory::registry);
    if (!reg)
      return;
    auto me = caf::actor_cast<caf::actor>(self);
    self->send(reg, register_atom::value, std::string{"scheduler"},
               std::string{}, me);
    for (auto& s : st.entries)
      if (s.declared)
        self->send(reg, register_atom::value, s.name + "/scheduler",
                   std::string{}, me);
  };
  announce();
  st.ctx.dir->set(actor_directory::scheduler,
                  caf::actor_cast<caf::actor>(self));
  // The first round before anything else (the supervisor waits for it).
  self->delayed_send(self, self->state.run(self), tick_atom::value,
                     self->state.tick);
  return {
      [=](reregister_atom) { announce(); },
      [=](tick_atom, uint64_t n) {
        auto& st = self->state;
        if (n != st.tick)
          return; // a timer an announced change replaced
        self->delayed_send(self, st.run(self), tick_atom::value, n);
      },
      [=](wake_atom, const std::string&) {
        // The stored schedules changed: read them now.
        auto& st = self->state;
        st.next_sync = steady::now();
        ++st.tick;
        self->delayed_send(self, st.run(self), tick_atom::value, st.tick);
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
