#include "bg_jobs/actors/detail/executor_pool.hpp"

#include <algorithm>

#include <caf/event_based_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"

namespace bg_jobs::detail {

void executor_pool::start(caf::event_based_actor* self, size_t n) {
  slots_.resize(n);
  active_ = n;
  for (size_t i = 0; i < n; ++i) {
    spawn(self, i);
    idle_.push_back(n - 1 - i);
  }
}

size_t executor_pool::busy() const {
  size_t n = 0;
  for (auto& s : slots_)
    if (s.executor && s.held() > 0)
      ++n;
  return n;
}

void executor_pool::retire(caf::event_based_actor* self, size_t i) {
  slots_[i].retired = true;
  if (slots_[i].executor && slots_[i].held() > 0)
    return; // when its jobs end
  if (auto& e = slots_[i].executor) {
    self->unlink_from(e);
    self->send_exit(e, caf::exit_reason::user_shutdown);
    e = nullptr;
  }
}

void executor_pool::resize(caf::event_based_actor* self, size_t n) {
  n = std::max<size_t>(n, 1);
  // Back into service first: retired slots, lowest first.
  for (size_t i = 0; i < slots_.size() && active_ < n; ++i)
    if (slots_[i].retired) {
      slots_[i].retired = false;
      ++active_;
      if (!slots_[i].executor)
        spawn(self, i);
      if (slots_[i].held() == 0)
        idle_.push_back(i);
    }
  while (active_ < n) {
    slots_.emplace_back();
    spawn(self, slots_.size() - 1);
    idle_.push_back(slots_.size() - 1);
    ++active_;
  }
  // Out of service: idle slots first, then the highest busy ones.
  for (size_t k = idle_.size(); k > 0 && active_ > n; --k) {
    auto i = idle_[k - 1];
    idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(k - 1));
    retire(self, i);
    --active_;
  }
  for (size_t i = slots_.size(); i > 0 && active_ > n; --i)
    if (!slots_[i - 1].retired) {
      retire(self, i - 1);
      --active_;
    }
}

bool executor_pool::request_cancel(int64_t job_id,
                                   const std::string& reason) {
  for (auto& s : slots_)
    if (s.executor && s.handoff.request_cancel(job_id, reason))
      return true;
  return false;
}

void executor_pool::emptied(caf::event_based_actor* self, size_t i) {
  if (slots_[i].held() > 0)
    return;
  if (slots_[i].retired)
    retire(self, i);
  else
    idle_.push_back(i);
}

std::optional<job> executor_pool::take_unstarted(caf::event_based_actor* self,
                                                 int64_t job_id) {
  for (size_t k = 0; k < slots_.size(); ++k) {
    if (!slots_[k].executor)
      continue;
    // Whether it started is the executor's to say.
    if (auto j = slots_[k].handoff.take_unstarted(job_id)) {
      emptied(self, k);
      return j;
    }
  }
  return std::nullopt;
}

std::vector<job>
executor_pool::take_all_unstarted(caf::event_based_actor* self) {
  std::vector<job> taken;
  for (size_t k = 0; k < slots_.size(); ++k) {
    if (!slots_[k].executor)
      continue;
    auto xs = slots_[k].handoff.take_all_unstarted();
    if (xs.empty())
      continue;
    for (auto& j : xs)
      taken.push_back(std::move(j));
    emptied(self, k);
  }
  return taken;
}

void executor_pool::spawn(caf::event_based_actor* self, size_t i) {
  executor_args args{queue_,    i,          rules_,
                     ctx_.bus,  ctx_.clock, ctx_.shared,
                     ctx_.plan->progress_interval, inbox_};
  auto e = spawn_executor(self, std::move(args));
  slots_[i].executor = std::move(e.actor);
  slots_[i].handoff = std::move(e.handoff);
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
    if (slots_[i].executor)
      register_one(self, i);
}

size_t executor_pool::run(held_job h, const caf::actor_addr& queue) {
  auto i = idle_.back();
  idle_.pop_back();
  slots_[i].handoff.run(std::move(h), queue);
  return i;
}

std::optional<size_t>
executor_pool::run_behind(held_job h, const caf::actor_addr& queue,
                          size_t depth) {
  std::optional<size_t> best;
  size_t fewest = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& s = slots_[i];
    if (s.retired || !s.executor)
      continue;
    auto n = s.held();
    if (n == 0 || n >= depth)
      continue;
    if (!best || n < fewest) {
      best = i;
      fewest = n;
    }
  }
  if (!best)
    return std::nullopt;
  slots_[*best].handoff.run(std::move(h), queue);
  return best;
}

bool executor_pool::room_behind(size_t depth) const {
  for (auto& s : slots_)
    if (!s.retired && s.executor) {
      auto n = s.held();
      if (n > 0 && n < depth)
        return true;
    }
  return false;
}

bool executor_pool::runs(size_t i, int64_t job_id) const {
  return i < slots_.size() && slots_[i].executor &&
         slots_[i].handoff.runs(job_id);
}

std::optional<job> executor_pool::finish(caf::event_based_actor* self, size_t i,
                                         int64_t job_id,
                                         const caf::actor_addr& from) {
  if (i >= slots_.size() || !slots_[i].executor ||
      slots_[i].executor.address() != from)
    return std::nullopt;
  auto j = slots_[i].handoff.reported(job_id);
  if (j)
    emptied(self, i);
  return j;
}

job executor_pool::replace(caf::event_based_actor* self, size_t i) {
  // Queues with timeouts hand executors one job at a time: the running one
  // is first.
  auto j = std::move(slots_[i].handoff.take_all().front());
  auto old = slots_[i].executor;
  self->unlink_from(old);
  self->send_exit(old, caf::exit_reason::kill);
  if (slots_[i].retired) {
    slots_[i].executor = nullptr;
    return j;
  }
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

std::vector<job> executor_pool::on_exit(caf::event_based_actor* self, size_t i,
                                        bool restart) {
  auto j = slots_[i].handoff.take_all();
  idle_.erase(std::remove(idle_.begin(), idle_.end(), i), idle_.end());
  if (restart && !slots_[i].retired)
    spawn(self, i);
  else
    slots_[i].executor = nullptr;
  if (!slots_[i].retired)
    idle_.push_back(i);
  return j;
}

std::vector<int64_t> executor_pool::held() const {
  std::vector<int64_t> ids;
  for (auto& s : slots_)
    if (s.executor)
      s.handoff.ids(ids);
  return ids;
}

std::vector<job> executor_pool::take_running() {
  std::vector<job> jobs;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i].executor)
      continue;
    auto xs = slots_[i].handoff.take_all();
    if (xs.empty())
      continue;
    for (auto& j : xs)
      jobs.push_back(std::move(j));
    if (!slots_[i].retired)
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
