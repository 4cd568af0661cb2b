#include "bg_jobs/scheduling/detail/occurrences.hpp"

#include <algorithm>

namespace bg_jobs::detail {

namespace {

using std::chrono::milliseconds;

/// Steps of `next_after` one search may take before it gives up.
constexpr int max_steps = 100000;

} // namespace

std::optional<timestamp> latest_at_or_before(const schedule& plan, timestamp t,
                                             timestamp floor) {
  using namespace std::chrono;
  const milliseconds spans[] = {minutes{1},      hours{1},
                                hours{24},       hours{24 * 32},
                                hours{24 * 367}, hours{24 * 367 * 5}};
  for (auto span : spans) {
    auto from = std::max(floor, t - span);
    auto first = plan.next_after(from);
    if (first && *first <= t) {
      auto latest = *first;
      for (int i = 0; i < max_steps; ++i) {
        auto n = plan.next_after(latest);
        if (!n || *n > t)
          break;
        latest = *n;
      }
      return latest;
    }
    if (from == floor)
      break;
  }
  return std::nullopt;
}

std::optional<next_occurrence>
next_occurrence_after(const schedule& plan, const occurrence_rules& rules,
                      const std::optional<scheduled_run>& last, timestamp now) {
  bool allow = rules.overlap == overlap_policy::allow;
  // The next waits for this one (a catch-up's steps always do).
  if (last && last->pending &&
      (!last->running || !allow || last->catch_up_left > 0))
    return std::nullopt;
  if (plan.is_interval()) {
    auto every = plan.interval();
    auto aligned = [&](timestamp t) {
      // Multiples of the interval, so that nodes starting in the same
      // window pick the same occurrence.
      auto n = (to_unix_ms(t) / every.count() + 1) * every.count();
      return next_occurrence{from_unix_ms(n)};
    };
    if (!last)
      return aligned(now);
    if (allow) {
      auto n = last->scheduled_at + every;
      if (n + rules.late_after < now)
        return aligned(now);
      return next_occurrence{n};
    }
    auto end = last->finished_at.value_or(now);
    return next_occurrence{
        std::max(end + every, last->scheduled_at + milliseconds{1})};
  }
  if (!last) {
    auto n = plan.next_after(now);
    if (!n)
      return std::nullopt;
    return next_occurrence{*n};
  }
  if (last->catch_up_left > 0) {
    auto n = plan.next_after(last->scheduled_at);
    if (!n)
      return std::nullopt;
    return next_occurrence{*n, last->catch_up_left - 1, last->skip_until};
  }
  auto base = last->scheduled_at;
  if (last->skip_until && *last->skip_until > base)
    base = *last->skip_until;
  // What fell due before the previous run ended is the overlap policy's.
  auto end = last->pending ? base : std::max(base, last->finished_at.value_or(base));
  if (auto first = plan.next_after(base); first && *first <= end) {
    if (rules.overlap == overlap_policy::one_waiting) {
      if (auto latest = latest_at_or_before(plan, end, base))
        return next_occurrence{*latest};
    }
    if (rules.overlap != overlap_policy::allow)
      base = end;
  }
  auto n = plan.next_after(base);
  if (!n)
    return std::nullopt;
  if (*n + rules.late_after >= now)
    return next_occurrence{*n}; // on time, or late by less than allowed
  switch (rules.missed) {
  case missed_runs::skip:
    if (auto next = plan.next_after(now - rules.late_after))
      return next_occurrence{*next};
    return std::nullopt;
  case missed_runs::run_latest_once:
    return next_occurrence{latest_at_or_before(plan, now, base).value_or(*n)};
  case missed_runs::catch_up:
    break;
  }
  // The oldest missed times inside the window, up to the cap; the rest
  // (and any older than the window) are passed over.
  auto from = std::max(base, now - rules.catch_up_window - milliseconds{1});
  auto first = plan.next_after(from);
  if (!first || *first > now) {
    if (auto next = plan.next_after(now - rules.late_after))
      return next_occurrence{*next};
    return std::nullopt;
  }
  auto t = *first;
  int count = 1;
  while (count < rules.catch_up_max) {
    auto after = plan.next_after(t);
    if (!after || *after > now)
      break;
    t = *after;
    ++count;
  }
  next_occurrence result{*first, count - 1, std::nullopt};
  if (auto after = plan.next_after(t); after && *after <= now)
    result.skip_until = latest_at_or_before(plan, now, t);
  return result;
}

} // namespace bg_jobs::detail
