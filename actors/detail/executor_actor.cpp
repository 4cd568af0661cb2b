#include "bg_jobs/actors/detail/executor_actor.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/enqueuer.hpp"
#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

/// The hand-over between a queue, an executor actor and its handler thread.
struct handler_slot {
  mutable std::mutex mtx;
  std::condition_variable cv;
  /// Handed over, not started yet, in order.
  std::deque<held_job> next;
  /// The job the handler runs.
  std::optional<job> running;
  /// Ended (run, or found past its start deadline), the result on its way
  /// to the queue.
  std::deque<job> sent;
  bool stop = false;
  std::atomic<bool> cancelled{false};
  /// The running job was cancelled; reset for each job.
  std::atomic<bool> cancel_requested{false};
  /// Why (guarded by `mtx`).
  std::string cancel_reason;
  /// Where results go: the queue's inbox, and the queue, which checks that
  /// `executor` still holds the slot (a replaced executor's late result is
  /// dropped).
  std::shared_ptr<report_inbox> inbox;
  caf::actor_addr queue;
  caf::actor_addr executor;
  size_t index = 0;
  std::shared_ptr<const job_rules> rules;
  std::string queue_name;
  std::shared_ptr<event_bus> bus;
  std::shared_ptr<bg_jobs::clock> clock;
  std::shared_ptr<direct_enqueue> shared;
  std::chrono::milliseconds progress_interval{1000};
  /// The progress reports of the attempt that runs (`progress_gate`).
  struct progress_state {
    std::mutex mtx;
    /// The job the handler runs, while it runs (the handler thread's own
    /// copy); null between jobs, so that a report through a context kept
    /// past its run goes nowhere.
    const job* current = nullptr;
    std::optional<std::chrono::steady_clock::time_point> last;
    std::optional<std::pair<double, std::string>> waiting;
  } progress;
};

void executor_handoff::run(held_job h, const caf::actor_addr& queue) const {
  std::lock_guard<std::mutex> guard{slot_->mtx};
  slot_->queue = queue;
  slot_->next.push_back(std::move(h));
  slot_->cv.notify_one();
}

size_t executor_handoff::size() const {
  std::lock_guard<std::mutex> guard{slot_->mtx};
  return slot_->next.size() + (slot_->running ? 1 : 0) + slot_->sent.size();
}

bool executor_handoff::runs(int64_t job_id) const {
  std::lock_guard<std::mutex> guard{slot_->mtx};
  return slot_->running && slot_->running->id == job_id;
}

bool executor_handoff::request_cancel(int64_t job_id,
                                      const std::string& reason) const {
  std::lock_guard<std::mutex> guard{slot_->mtx};
  if (!slot_->running || slot_->running->id != job_id)
    return false;
  if (!slot_->cancel_requested) {
    slot_->cancel_reason = reason;
    slot_->cancel_requested = true;
  }
  return true;
}

std::optional<job> executor_handoff::reported(int64_t job_id) const {
  std::lock_guard<std::mutex> guard{slot_->mtx};
  auto& xs = slot_->sent;
  auto i = std::find_if(xs.begin(), xs.end(),
                        [&](const job& j) { return j.id == job_id; });
  if (i == xs.end())
    return std::nullopt;
  auto j = std::move(*i);
  xs.erase(i);
  return j;
}

std::optional<job> executor_handoff::take_unstarted(int64_t job_id) const {
  std::lock_guard<std::mutex> guard{slot_->mtx};
  auto& xs = slot_->next;
  auto i = std::find_if(xs.begin(), xs.end(),
                        [&](const held_job& h) { return h.j.id == job_id; });
  if (i == xs.end())
    return std::nullopt;
  auto j = std::move(i->j);
  xs.erase(i);
  return j;
}

std::vector<job> executor_handoff::take_all_unstarted() const {
  std::lock_guard<std::mutex> guard{slot_->mtx};
  std::vector<job> taken;
  for (auto& h : slot_->next)
    taken.push_back(std::move(h.j));
  slot_->next.clear();
  return taken;
}

std::vector<job> executor_handoff::take_all() const {
  std::lock_guard<std::mutex> guard{slot_->mtx};
  std::vector<job> taken;
  if (slot_->running)
    taken.push_back(std::move(*slot_->running));
  slot_->running.reset();
  for (auto& j : slot_->sent)
    taken.push_back(std::move(j));
  slot_->sent.clear();
  for (auto& h : slot_->next)
    taken.push_back(std::move(h.j));
  slot_->next.clear();
  return taken;
}

void executor_handoff::ids(std::vector<int64_t>& out) const {
  std::lock_guard<std::mutex> guard{slot_->mtx};
  if (slot_->running)
    out.push_back(slot_->running->id);
  for (auto& j : slot_->sent)
    out.push_back(j.id);
  for (auto& h : slot_->next)
    out.push_back(h.j.id);
}

namespace {

/// A running attempt's progress reports on their way to the store and the
/// listeners: at most one per interval; a report inside the interval waits,
/// replaced by the next, until the interval ends with a later report or
/// the handler returns (`flush`). The handler may report from any thread;
/// the state is the slot's, reset for each job.
class progress_gate {
public:
  using state = handler_slot::progress_state;

  /// Starts the reports of `j`, which lives until `end`.
  static void begin(handler_slot& slot, const job& j) {
    std::lock_guard<std::mutex> guard{slot.progress.mtx};
    slot.progress.current = &j;
    slot.progress.last.reset();
    slot.progress.waiting.reset();
  }

  /// Delivers the report still waiting, if any; later reports go nowhere.
  static void end(handler_slot& slot) {
    std::lock_guard<std::mutex> guard{slot.progress.mtx};
    auto& st = slot.progress;
    if (st.current && st.waiting) {
      auto [fraction, text] = std::move(*st.waiting);
      st.waiting.reset();
      deliver(slot, std::chrono::steady_clock::now(), fraction,
              std::move(text));
    }
    st.current = nullptr;
  }

  /// Ends the reports of an abandoned attempt: the waiting one goes.
  static void drop(handler_slot& slot) {
    std::lock_guard<std::mutex> guard{slot.progress.mtx};
    slot.progress.current = nullptr;
    slot.progress.waiting.reset();
  }

  /// A report of attempt `attempt` of job `id`; one of a job that no longer
  /// runs here is dropped.
  static caf::error report(handler_slot& slot, int64_t id, int attempt,
                           double fraction, std::string text) {
    std::lock_guard<std::mutex> guard{slot.progress.mtx};
    auto& st = slot.progress;
    if (!st.current || st.current->id != id || st.current->attempts != attempt)
      return caf::none;
    auto now = std::chrono::steady_clock::now();
    if (st.last && now - *st.last < slot.progress_interval) {
      st.waiting = {fraction, std::move(text)};
      return caf::none;
    }
    st.waiting.reset();
    return deliver(slot, now, fraction, std::move(text));
  }

private:
  /// With `slot.progress.mtx` held and a current job.
  static caf::error deliver(handler_slot& slot,
                            std::chrono::steady_clock::time_point now,
                            double fraction, std::string text) {
    auto& st = slot.progress;
    const job& j = *st.current;
    bool held = true;
    if (slot.shared && j.reserved_by) {
      std::lock_guard<std::mutex> guard{slot.shared->mtx};
      auto db = slot.shared->door.connection();
      if (!db) {
        st.waiting = {fraction, std::move(text)};
        return std::move(db.error());
      }
      auto stored = (*db)->record_progress(j.id, *j.reserved_by, j.attempts,
                                           fraction, text);
      if (!stored) {
        st.waiting = {fraction, std::move(text)};
        return std::move(stored.error());
      }
      held = *stored;
    }
    st.last = now;
    // A rescued attempt's report is not the job's: no listener hears it.
    if (held && slot.bus->active()) {
      event e{event_kind::job_progress};
      e.queue = slot.queue_name;
      e.job = j;
      e.progress = job_progress{fraction, std::move(text), j.attempts,
                                slot.clock->now()};
      slot.bus->emit(std::move(e));
    }
    return caf::none;
  }
};

/// Puts `r` in the queue's inbox, and tells the queue when it was empty.
void report(handler_slot& slot, const caf::actor_addr& queue,
            attempt_report r) {
  if (slot.inbox->add(std::move(r)))
    if (auto hdl = caf::actor_cast<caf::actor>(queue))
      caf::anon_send(hdl, reports_atom::value);
}

void handler_loop(std::shared_ptr<handler_slot> slot) {
  std::minstd_rand rng{std::random_device{}()};
  for (;;) {
    job j;
    caf::actor_addr queue;
    {
      std::unique_lock<std::mutex> guard{slot->mtx};
      slot->cv.wait(guard, [&] { return slot->stop || !slot->next.empty(); });
      if (slot->stop)
        return;
      auto h = std::move(slot->next.front());
      slot->next.pop_front();
      if (std::chrono::steady_clock::now() > h.start_by) {
        attempt_report r;
        r.slot = slot->index;
        r.from = slot->executor;
        r.job_id = h.j.id;
        r.stale = true;
        slot->sent.push_back(std::move(h.j));
        queue = slot->queue;
        guard.unlock();
        report(*slot, queue, std::move(r));
        continue;
      }
      // The handler runs a copy: the queue may take the kept one back
      // (a timeout, a shutdown) while it runs.
      j = h.j;
      slot->running = std::move(h.j);
      slot->cancel_requested = false;
    }
    if (slot->bus->active()) {
      event e{event_kind::job_started};
      e.queue = slot->queue_name;
      e.queue_time = std::max(std::chrono::milliseconds{0},
                              slot->clock->now() - j.available_at);
      e.job = j;
      slot->bus->emit(std::move(e));
    }
    auto started = std::chrono::steady_clock::now();
    outcome result = outcome::failure("no worker for job '" + j.name + "'");
    progress_gate::begin(*slot, j);
    if (auto w = slot->rules->worker_of(j.name)) {
      // An encrypted value that does not open fails the attempt; the
      // handler never sees the sealed text.
      if (auto sealed = slot->rules->open(j))
        result = outcome::failure(describe(sealed));
      else
        result = w->run(
            j, job_context{&slot->cancelled, &slot->cancel_requested,
                           [shared = slot->shared, id = j.id]()
                               -> caf::expected<
                                   std::map<std::string, nlohmann::json>> {
                             if (!shared)
                               return std::map<std::string, nlohmann::json>{};
                             std::lock_guard<std::mutex> guard{shared->mtx};
                             auto db = shared->door.connection();
                             if (!db)
                               return std::move(db.error());
                             return (*db)->parent_outputs(id);
                           },
                           [slot, id = j.id, attempt = j.attempts](
                               double fraction, std::string text) {
                             return progress_gate::report(*slot, id, attempt,
                                                          fraction,
                                                          std::move(text));
                           }});
    }
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    if (slot->cancelled) {
      progress_gate::drop(*slot);
      return;
    }
    // The last report, while the reservation is still this attempt's.
    progress_gate::end(*slot);
    {
      std::lock_guard<std::mutex> guard{slot->mtx};
      // A cancelled job ends cancelled, whatever its handler returned.
      if (slot->cancel_requested)
        result = outcome::cancel(slot->cancel_reason);
      if (slot->running && slot->running->id == j.id) {
        slot->sent.push_back(std::move(*slot->running));
        slot->running.reset();
      }
      queue = slot->queue;
    }
    attempt_report r;
    r.slot = slot->index;
    r.from = slot->executor;
    r.job_id = j.id;
    r.done = slot->rules->decide(j, result, slot->clock->now(), rng, us);
    r.duration_us = static_cast<int64_t>(us.count());
    report(*slot, queue, std::move(r));
  }
}

struct executor_state {
  std::shared_ptr<handler_slot> slot;

  static inline const char* name = "bg_jobs.executor";
};

caf::behavior executor_actor(caf::stateful_actor<executor_state>* self,
                             std::shared_ptr<handler_slot> slot) {
  slot->executor = self->address();
  self->state.slot = slot;
  std::thread{handler_loop, slot}.detach();
  self->attach_functor([slot] {
    std::lock_guard<std::mutex> guard{slot->mtx};
    slot->stop = true;
    slot->cancelled = true;
    slot->cv.notify_all();
  });
  // Jobs arrive through the hand-over, not as messages: the actor stands
  // for the executor in the registry, dies with its queue, and answers
  // whether it is alive.
  return {
      [](ready_atom) { return caf::unit; },
      [](reregister_atom) {},
  };
}

} // namespace

spawned_executor spawn_executor(caf::event_based_actor* queue,
                                executor_args args) {
  auto slot = std::make_shared<handler_slot>();
  slot->index = args.slot;
  slot->rules = std::move(args.rules);
  slot->queue_name = std::move(args.queue_name);
  slot->bus = std::move(args.bus);
  slot->clock = std::move(args.clock);
  slot->shared = std::move(args.shared);
  slot->progress_interval = args.progress_interval;
  slot->inbox = std::move(args.inbox);
  auto actor = queue->spawn<caf::linked>(executor_actor, slot);
  return {std::move(actor), executor_handoff{std::move(slot)}};
}

} // namespace bg_jobs::detail
