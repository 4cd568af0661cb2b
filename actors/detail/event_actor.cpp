#include "bg_jobs/actors/detail/event_actor.hpp"

#include <set>

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "bg_jobs/actors/detail/event_bus.hpp"
#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/messages.hpp"

namespace bg_jobs::detail {

void event_bus::emit(event e) const {
  if (!active_)
    return;
  e.at = clock_->now();
  if (auto t = target())
    caf::anon_send(t, std::move(e));
}

namespace {

struct event_state {
  listener_set listeners;
  /// Listeners that threw once, by address; later throws stay silent.
  std::set<const event_listener*> reported;

  static inline const char* name = "bg_jobs.events";

  void call(const event_listener& l, const event& e) {
    try {
      l(e);
    } catch (...) {
      if (!reported.insert(&l).second || e.kind == event_kind::listener_error)
        return;
      event report{event_kind::listener_error};
      report.queue = e.queue;
      report.message = "a listener threw while handling " +
                       std::string{e.name()} + ": " +
                       describe(std::current_exception()) +
                       "; further exceptions of it are ignored";
      deliver(report);
    }
  }

  void deliver(const event& e) {
    for (auto& l : listeners.global)
      call(l, e);
    if (!e.queue.empty())
      if (auto i = listeners.per_queue.find(e.queue);
          i != listeners.per_queue.end())
        for (auto& l : i->second)
          call(l, e);
    if (e.job)
      if (auto i = listeners.per_job.find(e.job->name);
          i != listeners.per_job.end())
        for (auto& l : i->second)
          call(l, e);
  }

  static std::string describe(std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& ex) {
      return ex.what();
    } catch (...) {
      return "a non-standard exception";
    }
  }
};

caf::behavior event_actor(caf::stateful_actor<event_state>* self,
                          listener_set listeners) {
  self->state.listeners = std::move(listeners);
  return {
      [=](const event& e) { self->state.deliver(e); },
      [=](flush_atom) { return caf::unit; },
      [=](reregister_atom) {},
      [=](shutdown_atom) {
        self->quit();
        return caf::unit;
      },
  };
}

} // namespace

caf::actor spawn_event_actor(caf::event_based_actor* parent,
                             listener_set listeners) {
  return parent->spawn<caf::linked + caf::detached>(event_actor,
                                                    std::move(listeners));
}

} // namespace bg_jobs::detail
