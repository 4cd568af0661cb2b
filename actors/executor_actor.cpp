#include "bg_jobs/actors/executor_actor.hpp"

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/messages.hpp"

namespace bg_jobs {

namespace {

using done_atom = caf::atom_constant<caf::atom("done")>;

/// The hand-over between an executor actor and its handler thread.
struct handler_slot {
  std::mutex mtx;
  std::condition_variable cv;
  std::optional<job> next;
  bool stop = false;
  std::atomic<bool> cancelled{false};
  caf::actor_addr executor;
  std::shared_ptr<const std::map<std::string, worker>> workers;
};

void handler_loop(std::shared_ptr<handler_slot> slot) {
  for (;;) {
    job j;
    {
      std::unique_lock<std::mutex> guard{slot->mtx};
      slot->cv.wait(guard, [&] { return slot->stop || slot->next; });
      if (!slot->next)
        return;
      j = std::move(*slot->next);
      slot->next.reset();
    }
    auto started = std::chrono::steady_clock::now();
    outcome result = outcome::failure("no worker for job '" + j.name + "'");
    if (auto i = slot->workers->find(j.name); i != slot->workers->end())
      result = i->second.run(j, job_context{&slot->cancelled});
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                std::chrono::steady_clock::now() - started)
                .count();
    if (auto hdl = caf::actor_cast<caf::actor>(slot->executor))
      caf::anon_send(hdl, done_atom::value, j.id, std::move(result),
                     static_cast<int64_t>(us));
    if (slot->cancelled)
      return;
  }
}

struct executor_state {
  executor_args args;
  std::shared_ptr<handler_slot> slot;
  caf::strong_actor_ptr queue;
  int64_t running = 0;

  static inline const char* name = "bg_jobs.executor";
};

caf::behavior executor_actor(caf::stateful_actor<executor_state>* self,
                             executor_args args) {
  auto& st = self->state;
  st.args = std::move(args);
  st.slot = std::make_shared<handler_slot>();
  st.slot->executor = self->address();
  st.slot->workers = st.args.workers;
  std::thread{handler_loop, st.slot}.detach();
  self->attach_functor([slot = st.slot] {
    std::lock_guard<std::mutex> guard{slot->mtx};
    slot->stop = true;
    slot->cancelled = true;
    slot->cv.notify_all();
  });
  return {
    [=](run_atom, job& j) {
      auto& st = self->state;
      st.queue = self->current_sender();
      st.running = j.id;
      if (st.args.bus->active()) {
        event e{event_kind::job_started};
        e.queue = st.args.queue_name;
        e.queue_time = std::max(std::chrono::milliseconds{0},
                                utc_now() - j.available_at);
        e.job = j;
        st.args.bus->emit(std::move(e));
      }
      std::lock_guard<std::mutex> guard{st.slot->mtx};
      st.slot->next = std::move(j);
      st.slot->cv.notify_one();
    },
    [=](done_atom, int64_t job_id, outcome& o, int64_t duration_us) {
      auto& st = self->state;
      if (job_id != st.running || !st.queue)
        return;
      self->send(caf::actor_cast<caf::actor>(st.queue), result_atom::value,
                 st.args.slot, job_id, std::move(o), duration_us);
      st.running = 0;
    },
  };
}

} // namespace

caf::actor spawn_executor(caf::event_based_actor* queue, executor_args args) {
  return queue->spawn<caf::linked>(executor_actor, std::move(args));
}

} // namespace bg_jobs
