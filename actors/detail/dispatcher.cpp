#include "bg_jobs/actors/detail/dispatcher.hpp"

#include <algorithm>

#include <caf/event_based_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"

namespace bg_jobs::detail {

namespace {

/// The work a queue keeps in hand beyond its free executors.
constexpr double ahead_horizon_us = 10000;

} // namespace

dispatcher::dispatcher(node_context ctx,
                       std::shared_ptr<const job_rules> rules, size_t prefetch)
    : ctx_(ctx), rules_(rules), prefetch_(prefetch),
      pool_(std::move(ctx), std::move(rules)) {
}

size_t dispatcher::ahead_target() const {
  if (prefetch_ == 0 || run_us_ < 0)
    return 0;
  auto n = ahead_horizon_us / std::max(run_us_, 1.0) *
           static_cast<double>(pool_.size());
  return static_cast<size_t>(std::min(n, double(prefetch_)));
}

size_t dispatcher::wanted() const {
  auto room = pool_.idle() + ahead_target();
  return room > ahead_.size() ? room - ahead_.size() : 0;
}

std::vector<int64_t> dispatcher::held() const {
  auto ids = pool_.held();
  for (auto& h : ahead_)
    ids.push_back(h.j.id);
  return ids;
}

void dispatcher::hold(std::vector<job> jobs, steady_time start_by) {
  for (auto& j : jobs)
    ahead_.push_back(held_job{std::move(j), start_by});
}

size_t dispatcher::hand_depth() const {
  return !rules_->timeouts() && run_us_ >= 0 && run_us_ < 100 ? 8 : 1;
}

void dispatcher::feed(caf::event_based_actor* self, outcome_batch& decided) {
  auto depth = hand_depth();
  while (!ahead_.empty() &&
         (pool_.idle() > 0 || (depth > 1 && pool_.room_behind(depth)))) {
    auto h = std::move(ahead_.front());
    ahead_.pop_front();
    dispatch(self, std::move(h), depth, decided);
  }
}

void dispatcher::dispatch(caf::event_based_actor* self, held_job h,
                          size_t depth, outcome_batch& decided) {
  auto& j = h.j;
  if (std::chrono::steady_clock::now() > h.start_by) {
    decided.push_back(release(std::move(j), held_too_long, false));
    return;
  }
  if (auto& policy = rules_->policy(j); policy.exhausted(j)) {
    decided.push_back(pending_outcome::of(
        policy.on_exhausted(j, rules_->owner()), std::move(j),
        rules_->queue()));
    return;
  }
  if (ctx_.bus->active()) {
    event e{event_kind::job_reserved};
    e.queue = rules_->queue();
    e.job = j;
    ctx_.emit(std::move(e));
  }
  auto limit = rules_->timeout_of(j.name);
  auto id = j.id;
  auto i = pool_.idle() > 0
               ? pool_.run(std::move(h), self->address())
               : *pool_.run_behind(std::move(h), self->address(), depth);
  if (limit)
    self->delayed_send(self, *limit, job_timeout_atom::value, i, id);
}

void dispatcher::ran(int64_t duration_us) {
  auto us = static_cast<double>(std::max<int64_t>(duration_us, 0));
  run_us_ = run_us_ < 0 ? us : 0.8 * run_us_ + 0.2 * us;
}

std::optional<job> dispatcher::take_unstarted(caf::event_based_actor* self,
                                              int64_t job_id) {
  auto held = std::find_if(ahead_.begin(), ahead_.end(),
                           [&](const held_job& h) { return h.j.id == job_id; });
  if (held == ahead_.end())
    return pool_.take_unstarted(self, job_id);
  auto j = std::move(held->j);
  ahead_.erase(held);
  return j;
}

std::vector<job> dispatcher::take_ahead() {
  std::vector<job> out;
  for (auto& h : ahead_)
    out.push_back(std::move(h.j));
  ahead_.clear();
  return out;
}

bool dispatcher::cancel(caf::event_based_actor* self, int64_t job_id,
                        const std::string& reason, outcome_batch& decided) {
  if (auto unstarted = take_unstarted(self, job_id)) {
    decided.push_back(rules_->decide(*unstarted, outcome::cancel(reason),
                                     ctx_.now(), rng_, {}));
    return true;
  }
  pool_.request_cancel(job_id, reason);
  return false;
}

void dispatcher::time_out(caf::event_based_actor* self, size_t i,
                          outcome_batch& decided) {
  auto j = pool_.replace(self, i);
  auto limit =
      rules_->timeout_of(j.name).value_or(std::chrono::milliseconds{0});
  auto o = outcome::failure("timed out after " +
                            std::to_string(limit.count()) + " ms");
  decided.push_back(rules_->decide(
      j, o, ctx_.now(), rng_,
      std::chrono::duration_cast<std::chrono::microseconds>(limit)));
}

pending_outcome dispatcher::release(job j, const std::string& why,
                                    bool count_attempt) {
  return rules_->release(std::move(j), why, count_attempt, ctx_.now());
}

} // namespace bg_jobs::detail
