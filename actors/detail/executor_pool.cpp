#include "bg_jobs/actors/detail/executor_pool.hpp"

#include <algorithm>

#include <caf/event_based_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"

namespace bg_jobs::detail {

void executor_pool::start(caf::event_based_actor* self, size_t n) {
  slots_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    spawn(self, i);
    idle_.push_back(n - 1 - i);
  }
}

void executor_pool::spawn(caf::event_based_actor* self, size_t i) {
  executor_args args{queue_, i, workers_, ctx_.bus, ctx_.clock};
  auto e = spawn_executor(self, std::move(args));
  slots_[i].executor = std::move(e.actor);
  slots_[i].handoff = std::move(e.handoff);
  slots_[i].running.reset();
  register_one(self, i);
}

void executor_pool::register_one(caf::event_based_actor* self, size_t i) const {
  if (auto reg = ctx_.dir->get(actor_directory::registry))
    self->send(reg, register_atom::value,
               queue_ + "/executor/" + std::to_string(i), std::string{},
               slots_[i].executor);
}

void executor_pool::register_all(caf::event_based_actor* self) const {
  for (size_t i = 0; i < slots_.size(); ++i)
    register_one(self, i);
}

size_t executor_pool::run(job j, const caf::actor_addr& queue) {
  auto i = idle_.back();
  idle_.pop_back();
  slots_[i].running = j;
  slots_[i].handoff.run(std::move(j), queue);
  return i;
}

bool executor_pool::runs(size_t i, int64_t job_id) const {
  return i < slots_.size() && slots_[i].running &&
         slots_[i].running->id == job_id;
}

std::optional<job> executor_pool::finish(size_t i, int64_t job_id,
                                         const caf::actor_addr& from) {
  if (!runs(i, job_id) || slots_[i].executor.address() != from)
    return std::nullopt;
  auto j = std::move(slots_[i].running);
  slots_[i].running.reset();
  idle_.push_back(i);
  return j;
}

job executor_pool::replace(caf::event_based_actor* self, size_t i) {
  auto j = std::move(*slots_[i].running);
  auto old = slots_[i].executor;
  self->unlink_from(old);
  self->send_exit(old, caf::exit_reason::kill);
  spawn(self, i);
  idle_.push_back(i);
  return j;
}

std::optional<size_t>
executor_pool::slot_of(const caf::actor_addr& addr) const {
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].executor.address() == addr)
      return i;
  return std::nullopt;
}

std::optional<job> executor_pool::on_exit(caf::event_based_actor* self,
                                          size_t i, bool restart) {
  auto j = std::move(slots_[i].running);
  slots_[i].running.reset();
  idle_.erase(std::remove(idle_.begin(), idle_.end(), i), idle_.end());
  if (restart)
    spawn(self, i);
  else
    slots_[i].executor = nullptr;
  idle_.push_back(i);
  return j;
}

std::vector<int64_t> executor_pool::held() const {
  std::vector<int64_t> ids;
  for (auto& s : slots_)
    if (s.running)
      ids.push_back(s.running->id);
  return ids;
}

std::vector<job> executor_pool::take_running() {
  std::vector<job> jobs;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].running) {
      jobs.push_back(std::move(*slots_[i].running));
      slots_[i].running.reset();
      idle_.push_back(i);
    }
  return jobs;
}

void executor_pool::stop_all(caf::event_based_actor* self) {
  for (auto& s : slots_)
    if (s.executor)
      self->send_exit(s.executor, caf::exit_reason::user_shutdown);
}

} // namespace bg_jobs::detail
