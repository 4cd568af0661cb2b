#include "bg_jobs/actors/detail/claim_pacer.hpp"

#include <algorithm>

#include <caf/event_based_actor.hpp>

#include "bg_jobs/actors/detail/internal_atoms.hpp"
#include "bg_jobs/actors/messages.hpp"

namespace bg_jobs::detail {

claim_pacer::claim_pacer(node_context ctx, queue_spec spec,
                         std::shared_ptr<const job_rules> rules,
                         caf::actor store)
    : ctx_(std::move(ctx)), spec_(std::move(spec)), rules_(std::move(rules)),
      store_(std::move(store)) {
}

void claim_pacer::flush(caf::event_based_actor* self) {
  if (!claiming_ && !unsent.empty())
    self->send(store_, write_outcomes_atom::value, std::exchange(unsent, {}));
}

void claim_pacer::claim(caf::event_based_actor* self, dispatcher& hand,
                        std::function<void(claim_call&)> answered) {
  if (claiming_) {
    claim_again_ = true;
    return;
  }
  auto wanted = hand.wanted();
  if (wanted == 0) {
    flush(self);
    return;
  }
  // Outcomes waiting to be written go first (retries become claimable
  // again), in the same transaction where the store makes that cheaper.
  auto call = std::make_shared<claim_call>();
  call->outcomes = std::exchange(unsent, {});
  call->held = hand.held();
  call->params = {rules_->job_names(), static_cast<int>(wanted),
                  rules_->owner(), spec_.name()};
  call->params.limited = spec_.limited();
  if (spec_.rate_limit())
    call->params.rate_limit = spec_.rate_limit()->name;
  claiming_ = true;
  self->request(store_, claim_timeout, claim_atom::value, call)
      .then([answered](claim_call_ptr& c) { answered(*c); },
            [this, self](caf::error& err) {
              // A hung store call (or a dead worker): the registry
              // releases what this queue and its worker hold.
              event e{event_kind::queue_error};
              e.queue = spec_.name();
              e.message = "claim failed: " + self->system().render(err);
              ctx_.emit(std::move(e));
              self->quit(err);
            });
}

bool claim_pacer::take_answer(caf::event_based_actor* self, dispatcher& hand,
                              claim_call& c) {
  claiming_ = false;
  // A limited queue also claims again after every result (which frees a
  // slot of its keys), since a short claim may have passed over jobs whose
  // keys were full.
  backlog_ = !c.error && static_cast<int>(c.reserved.size()) == c.params.limit;
  // Half the lease after the claim left, well before another node could
  // rescue these jobs (their reservation is younger than that).
  if (!c.error)
    hand.hold(std::move(c.reserved), c.sent + ctx_.plan->maintenance.lease / 2);
  if (c.rate_wait)
    look_when_rate_allows(self, std::chrono::milliseconds{*c.rate_wait});
  return std::exchange(claim_again_, false);
}

bool claim_pacer::settle(caf::event_based_actor* self, dispatcher& hand,
                         bool stopping) {
  auto target = hand.ahead_target();
  if (!stopping && backlog_ && hand.ahead() <= target / 2)
    return true;
  if (stopping || hand.ahead() == 0 ||
      unsent.size() >= std::max<size_t>(1, target / 2)) {
    flush(self);
    return false;
  }
  if (!std::exchange(flush_pending_, true))
    self->delayed_send(self, flush_delay, flush_due_atom::value);
  return false;
}

void claim_pacer::flush_due(caf::event_based_actor* self) {
  flush_pending_ = false;
  flush(self);
}

void claim_pacer::rate_due() {
  if (rate_look_at_ && *rate_look_at_ <= std::chrono::steady_clock::now())
    rate_look_at_.reset();
  backlog_ = true;
}

void claim_pacer::look_when_due(caf::event_based_actor* self,
                                const pending_outcome& o) {
  auto& c = o.change;
  if (c.what != completion::kind::retry && c.what != completion::kind::snooze)
    return;
  auto wait = std::max(std::chrono::milliseconds{0},
                       std::chrono::duration_cast<std::chrono::milliseconds>(
                           c.available_at - ctx_.now()));
  if (wait < poll_every())
    self->delayed_send(self, wait + std::chrono::milliseconds{1},
                       wake_atom::value, o.report.job->name);
}

std::chrono::milliseconds claim_pacer::poll_every() const {
  auto every = spec_.poll_interval(ctx_.plan->listen);
  if (spec_.limited())
    every = std::min(every, std::chrono::milliseconds{1000});
  return every;
}

bool claim_pacer::earliest(
    std::optional<std::chrono::steady_clock::time_point>& armed,
    std::chrono::milliseconds wait) {
  auto now = std::chrono::steady_clock::now();
  auto at = now + wait;
  if (armed && *armed <= at && *armed > now)
    return false;
  armed = at;
  return true;
}

void claim_pacer::look_when_rate_allows(caf::event_based_actor* self,
                                        std::chrono::milliseconds wait) {
  if (earliest(rate_look_at_, wait))
    self->delayed_send(self, wait + std::chrono::milliseconds{1},
                       rate_due_atom::value);
}

void claim_pacer::look_when_available(caf::event_based_actor* self,
                                      std::chrono::milliseconds wait) {
  if (wait < poll_every() && earliest(due_look_at_, wait))
    self->delayed_send(self, wait + std::chrono::milliseconds{1},
                       wake_atom::value, std::string{});
}

void claim_pacer::check_cancels(caf::event_based_actor* self,
                                const dispatcher& hand) {
  if (!hand.empty())
    self->send(store_, check_cancels_atom::value, hand.held());
}

} // namespace bg_jobs::detail
