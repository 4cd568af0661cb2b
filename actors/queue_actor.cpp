#include "bg_jobs/actors/queue_actor.hpp"

#include <random>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/executor_actor.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/actors/store_connection.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/registry/registry_actor.hpp"

namespace bg_jobs {

namespace {

using poll_atom = caf::atom_constant<caf::atom("poll")>;
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;
using timeout_atom = caf::atom_constant<caf::atom("jobtimeout")>;
using settle_atom = caf::atom_constant<caf::atom("settle")>;

struct slot {
  caf::actor executor;
  executor_handoff handoff;
  std::optional<job> running;
};

/// An outcome waiting to be persisted, and the event that reports it.
struct pending_outcome {
  completion change;
  event report;
};

struct queue_state {
  queue_spec spec{""};
  runtime_context ctx;
  std::string owner;
  caf::actor_addr supervisor;
  store_connection store;
  std::shared_ptr<const std::map<std::string, worker>> workers;
  std::vector<std::string> job_names;
  std::vector<slot> slots;
  std::vector<size_t> idle;
  std::vector<pending_outcome> pending;
  /// The last reservation filled every idle slot: more jobs may be waiting.
  bool backlog = false;
  bool stopping = false;
  /// A settle message is on its way: results that arrive before it are
  /// persisted together, in one transaction, followed by one reservation.
  bool settling = false;
  caf::response_promise stopped;
  std::minstd_rand rng{std::random_device{}()};

  static inline const char* name = "bg_jobs.queue";

  void emit(event e) const {
    e.queue = spec.name();
    ctx.bus->emit(std::move(e));
  }

  void emit_error(event_kind k, std::string message) const {
    event e{k};
    e.message = std::move(message);
    emit(std::move(e));
  }

  size_t busy() const { return slots.size() - idle.size(); }

  void register_executor(caf::event_based_actor* self, size_t i) {
    if (auto sup = caf::actor_cast<caf::actor>(supervisor))
      self->send(sup, register_atom::value,
                 spec.name() + "/executor/" + std::to_string(i),
                 std::string{}, slots[i].executor);
  }

  void start_executor(caf::event_based_actor* self, size_t i) {
    executor_args args{spec.name(), i, workers, ctx.bus};
    auto e = spawn_executor(self, std::move(args));
    slots[i].executor = std::move(e.actor);
    slots[i].handoff = std::move(e.handoff);
    slots[i].running.reset();
    register_executor(self, i);
  }

  void poll(caf::event_based_actor* self) {
    if (stopping || idle.empty())
      return;
    auto db = store.get();
    if (!db)
      return;
    // Outcomes waiting to be persisted go first (retries become claimable
    // again), in the same transaction where the store makes that cheaper.
    auto want = static_cast<int>(idle.size());
    auto changes = pending_changes();
    auto done = db->complete_and_reserve(changes, {job_names, want, owner});
    if (!done) {
      backlog = false;
      store.failed(done.error(), "recording outcomes and reserving jobs");
      return;
    }
    report(changes, done->first);
    auto& jobs = done->second;
    backlog = static_cast<int>(jobs.size()) == want;
    for (auto& j : jobs) {
      // Attempts beyond the limit come from crashes (rescued or released
      // jobs): fail them instead of running them again.
      if (j.attempts > spec.max_retries() + 1) {
        give_up(std::move(j));
        continue;
      }
      auto i = idle.back();
      idle.pop_back();
      if (ctx.bus->active()) {
        event e{event_kind::job_reserved};
        e.job = j;
        emit(std::move(e));
      }
      if (auto t = timeout_of(j.name))
        self->delayed_send(self, *t, timeout_atom::value, i, j.id);
      slots[i].running = j;
      slots[i].handoff.run(std::move(j), self->address());
    }
  }

  std::optional<std::chrono::milliseconds>
  timeout_of(const std::string& job_name) const {
    if (auto i = workers->find(job_name);
        i != workers->end() && i->second.timeout())
      return i->second.timeout();
    return spec.job_timeout();
  }

  void give_up(job j) {
    pending_outcome p;
    p.change.what = completion::kind::failed;
    p.change.job_id = j.id;
    p.change.reserved_by = owner;
    p.change.error = "gave up after " + std::to_string(j.attempts - 1)
                     + " attempts"
                     + (j.last_error ? ": " + *j.last_error : std::string{});
    p.report.kind = event_kind::job_failed;
    p.report.message = p.change.error;
    p.report.job = std::move(j);
    pending.push_back(std::move(p));
  }

  /// Abandons the attempt running in slot `i`: it counts as failed, and a
  /// fresh executor takes the slot at once.
  void time_out(caf::event_based_actor* self, size_t i) {
    auto j = std::move(*slots[i].running);
    slots[i].running.reset();
    auto limit = timeout_of(j.name).value_or(std::chrono::milliseconds{0});
    auto old = slots[i].executor;
    self->unlink_from(old);
    self->send_exit(old, caf::exit_reason::kill);
    record(std::move(j),
           outcome::failure("timed out after " + std::to_string(limit.count())
                            + " ms"),
           std::chrono::duration_cast<std::chrono::microseconds>(limit)
             .count());
    start_executor(self, i);
    idle.push_back(i);
  }

  std::vector<completion> pending_changes() const {
    std::vector<completion> changes;
    changes.reserve(pending.size());
    for (auto& p : pending)
      changes.push_back(p.change);
    return changes;
  }

  /// Emits the event of each persisted outcome and forgets them all.
  void report(const std::vector<completion>& changes,
              const std::vector<bool>& applied) {
    for (size_t i = 0; i < applied.size(); ++i) {
      if (applied[i]) {
        emit(std::move(pending[i].report));
      } else {
        emit_error(event_kind::queue_error,
                   "job " + std::to_string(changes[i].job_id)
                     + " is no longer reserved by " + owner
                     + "; its outcome was discarded");
      }
    }
    pending.erase(pending.begin(),
                  pending.begin() + static_cast<ptrdiff_t>(applied.size()));
  }

  void flush() {
    if (pending.empty())
      return;
    auto db = store.get();
    if (!db)
      return;
    auto changes = pending_changes();
    auto applied = db->complete_jobs(changes);
    if (!applied) {
      store.failed(applied.error(), "recording job outcomes");
      return;
    }
    report(changes, *applied);
  }

  void record(job j, const outcome& o, int64_t duration_us) {
    pending_outcome p;
    auto& c = p.change;
    auto& e = p.report;
    c.job_id = j.id;
    c.reserved_by = owner;
    e.duration = std::chrono::microseconds{duration_us};
    auto now = utc_now();
    switch (o.what()) {
      case outcome::kind::success:
        c.what = completion::kind::succeeded;
        e.kind = event_kind::job_succeeded;
        break;
      case outcome::kind::failure:
        e.message = o.message();
        c.error = o.message();
        if (j.attempts <= spec.max_retries()) {
          c.what = completion::kind::retry;
          c.available_at = now + spec.retry_backoff().delay(j.attempts, rng);
          e.kind = event_kind::job_retry;
        } else {
          c.what = completion::kind::failed;
          e.kind = event_kind::job_failed;
        }
        break;
      case outcome::kind::snooze:
        c.what = completion::kind::snooze;
        c.available_at = now + o.delay();
        e.kind = event_kind::job_snoozed;
        break;
      case outcome::kind::cancel:
        c.what = completion::kind::failed;
        c.error = "cancelled: " + o.message();
        e.message = o.message();
        e.kind = event_kind::job_cancelled;
        break;
    }
    e.job = std::move(j);
    pending.push_back(std::move(p));
  }

  /// Gives a job back to the table at once. A crash counts the attempt
  /// (past `max_retries` the job fails); a shutdown does not.
  void release(job j, std::string why, bool count_attempt) {
    pending_outcome p;
    p.change.job_id = j.id;
    p.change.reserved_by = owner;
    p.change.available_at = utc_now();
    p.change.error = why;
    p.report.kind = event_kind::job_released;
    if (!count_attempt) {
      p.change.what = completion::kind::snooze;
    } else if (j.attempts <= spec.max_retries()) {
      p.change.what = completion::kind::retry;
    } else {
      p.change.what = completion::kind::failed;
      p.report.kind = event_kind::job_failed;
    }
    p.report.message = std::move(why);
    p.report.job = std::move(j);
    pending.push_back(std::move(p));
  }

  void finish(caf::event_based_actor* self) {
    for (auto& s : slots)
      if (s.running) {
        release(std::move(*s.running), "shutdown: grace period over", false);
        s.running.reset();
      }
    flush();
    emit(event{event_kind::queue_polling_stopped});
    // Executors ignore the normal exit of their queue: stop them explicitly.
    for (auto& s : slots)
      self->send_exit(s.executor, caf::exit_reason::user_shutdown);
    stopped.deliver(caf::unit);
    self->quit();
  }
};

caf::behavior queue_actor(caf::stateful_actor<queue_state>* self,
                          queue_spec spec, runtime_context ctx,
                          std::string owner, caf::actor_addr supervisor) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.ctx = std::move(ctx);
  st.owner = std::move(owner);
  st.supervisor = std::move(supervisor);
  auto workers = std::make_shared<std::map<std::string, worker>>();
  for (auto& w : st.spec.workers())
    if (workers->emplace(w.job_name(), w).second)
      st.job_names.push_back(w.job_name());
  st.workers = std::move(workers);
  auto n = static_cast<size_t>(st.spec.max_concurrent_jobs());
  st.slots.resize(n);
  for (size_t i = 0; i < n; ++i) {
    st.start_executor(self, i);
    st.idle.push_back(n - 1 - i);
  }
  self->set_exit_handler([self](caf::exit_msg& em) {
    auto& st = self->state;
    for (size_t i = 0; i < st.slots.size(); ++i) {
      if (st.slots[i].executor.address() != em.source)
        continue;
      if (auto& j = st.slots[i].running) {
        st.release(std::move(*j),
                   "executor died: " + self->system().render(em.reason),
                   true);
        j.reset();
        st.flush();
      } else {
        st.idle.erase(std::remove(st.idle.begin(), st.idle.end(), i),
                      st.idle.end());
      }
      if (st.stopping) {
        if (st.busy() == 0)
          st.finish(self);
        return;
      }
      st.start_executor(self, i);
      st.idle.push_back(i);
      st.poll(self);
      return;
    }
    self->quit(em.reason);
  });
  self->set_default_handler([self](caf::scheduled_actor*,
                                   caf::message_view& x) -> caf::result<caf::message> {
    self->state.emit_error(event_kind::queue_error,
                           "unexpected message ignored: "
                             + caf::to_string(x.content()));
    return caf::none;
  });
  st.store = store_connection{st.ctx, "queue", st.spec.name()};
  st.store.get();
  st.emit(event{event_kind::queue_polling_started});
  self->send(self, poll_atom::value);
  return {
    [=](poll_atom) {
      self->state.poll(self);
      if (!self->state.stopping)
        self->delayed_send(self, self->state.spec.poll_interval(),
                           poll_atom::value);
    },
    [=](wake_atom, const std::string& job_name) {
      // "*" is a hint that some process wrote to the store: a busy queue
      // polls after its next batch anyway, so only an idle one looks now.
      if (job_name == "*" && self->state.busy() > 0)
        return;
      self->state.poll(self);
    },
    [=](result_atom, size_t i, int64_t job_id, outcome& o,
        int64_t duration_us, const caf::actor_addr& from) {
      auto& st = self->state;
      if (i >= st.slots.size() || !st.slots[i].running
          || st.slots[i].running->id != job_id
          || st.slots[i].executor.address() != from)
        return;
      st.record(std::move(*st.slots[i].running), o, duration_us);
      st.slots[i].running.reset();
      st.idle.push_back(i);
      if (!st.settling) {
        st.settling = true;
        self->send(self, settle_atom::value);
      }
    },
    [=](settle_atom) {
      auto& st = self->state;
      st.settling = false;
      // With a backlog, one transaction persists the outcomes and claims
      // the next jobs; otherwise only the outcomes are written.
      if (!st.stopping && st.backlog)
        st.poll(self);
      else
        st.flush();
      if (st.stopping && st.busy() == 0)
        st.finish(self);
    },
    [=](ready_atom) { return caf::unit; },
    [=](reregister_atom) {
      for (size_t i = 0; i < self->state.slots.size(); ++i)
        self->state.register_executor(self, i);
    },
    [=](shutdown_atom, int64_t grace_ms) -> caf::result<caf::unit_t> {
      auto& st = self->state;
      if (st.stopping)
        return caf::unit;
      st.stopping = true;
      st.stopped = self->make_response_promise<caf::unit_t>();
      if (st.busy() == 0)
        st.finish(self);
      else
        self->delayed_send(self, std::chrono::milliseconds{grace_ms},
                           deadline_atom::value);
      return st.stopped;
    },
    [=](deadline_atom) { self->state.finish(self); },
    [=](timeout_atom, size_t i, int64_t job_id) {
      auto& st = self->state;
      if (i >= st.slots.size() || !st.slots[i].running
          || st.slots[i].running->id != job_id)
        return;
      st.time_out(self, i);
      st.flush();
      if (st.stopping) {
        if (st.busy() == 0)
          st.finish(self);
      } else {
        st.poll(self);
      }
    },
  };
}

} // namespace

caf::actor spawn_queue(caf::event_based_actor* parent, queue_spec spec,
                       runtime_context ctx, std::string owner) {
  return parent->spawn<caf::linked + caf::detached>(
    queue_actor, std::move(spec), std::move(ctx), std::move(owner),
    parent->address());
}

} // namespace bg_jobs
