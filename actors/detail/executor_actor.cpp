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
  /// Where results go: the queue, which checks that `executor` still
  /// holds the slot (a replaced executor's late result is dropped).
  caf::actor_addr queue;
  caf::actor_addr executor;
  size_t index = 0;
  std::shared_ptr<const job_rules> rules;
  std::string queue_name;
  std::shared_ptr<event_bus> bus;
  std::shared_ptr<bg_jobs::clock> clock;
  std::shared_ptr<direct_enqueue> shared;
  std::chrono::milliseconds progress_interval{1000};
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

/// One attempt's progress reports on their way to the store and the
/// listeners: at most one per interval; a report inside the interval waits,
/// replaced by the next, until the interval ends with a later report or
/// the handler returns (`flush`). The handler may report from any thread.
class progress_gate {
public:
  progress_gate(std::shared_ptr<handler_slot> slot, job j)
      : slot_(std::move(slot)), job_(std::move(j)) {}

  caf::error report(double fraction, std::string text) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto now = std::chrono::steady_clock::now();
    if (last_ && now - *last_ < slot_->progress_interval) {
      waiting_ = {fraction, std::move(text)};
      return caf::none;
    }
    waiting_.reset();
    return deliver(now, fraction, std::move(text));
  }

  /// Delivers the report still waiting, if any.
  void flush() {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!waiting_)
      return;
    auto [fraction, text] = std::move(*waiting_);
    waiting_.reset();
    deliver(std::chrono::steady_clock::now(), fraction, std::move(text));
  }

private:
  caf::error deliver(std::chrono::steady_clock::time_point now,
                     double fraction, std::string text) {
    bool held = true;
    if (slot_->shared && job_.reserved_by) {
      std::lock_guard<std::mutex> guard{slot_->shared->mtx};
      auto db = slot_->shared->door.connection();
      if (!db) {
        waiting_ = {fraction, std::move(text)};
        return std::move(db.error());
      }
      auto stored = (*db)->record_progress(job_.id, *job_.reserved_by,
                                           job_.attempts, fraction, text);
      if (!stored) {
        waiting_ = {fraction, std::move(text)};
        return std::move(stored.error());
      }
      held = *stored;
    }
    last_ = now;
    // A rescued attempt's report is not the job's: no listener hears it.
    if (held && slot_->bus->active()) {
      event e{event_kind::job_progress};
      e.queue = slot_->queue_name;
      e.job = job_;
      e.progress =
          job_progress{fraction, std::move(text), job_.attempts,
                       slot_->clock->now()};
      slot_->bus->emit(std::move(e));
    }
    return caf::none;
  }

  std::shared_ptr<handler_slot> slot_;
  job job_;
  std::mutex mtx_;
  std::optional<std::chrono::steady_clock::time_point> last_;
  std::optional<std::pair<double, std::string>> waiting_;
};

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
        auto id = h.j.id;
        slot->sent.push_back(std::move(h.j));
        queue = slot->queue;
        guard.unlock();
        if (auto hdl = caf::actor_cast<caf::actor>(queue))
          caf::anon_send(hdl, stale_atom::value, slot->index, id,
                         slot->executor);
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
    // Shared with the handler's context, which a handler might keep.
    auto progress = std::make_shared<progress_gate>(slot, j);
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
                           [progress](double fraction, std::string text) {
                             return progress->report(fraction,
                                                     std::move(text));
                           }});
    }
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    if (slot->cancelled)
      return;
    // The last report, while the reservation is still this attempt's.
    progress->flush();
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
    auto done = slot->rules->decide(j, result, slot->clock->now(), rng, us);
    if (auto hdl = caf::actor_cast<caf::actor>(queue))
      caf::anon_send(hdl, result_atom::value, slot->index, j.id,
                     std::move(done), static_cast<int64_t>(us.count()),
                     slot->executor);
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
  auto actor = queue->spawn<caf::linked>(executor_actor, slot);
  return {std::move(actor), executor_handoff{std::move(slot)}};
}

} // namespace bg_jobs::detail
