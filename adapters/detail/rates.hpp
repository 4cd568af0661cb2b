#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <string>

#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/core/limits.hpp"

namespace bg_jobs::detail {

/// A rate limit as the generic cell rate algorithm counts it: a key's
/// `tat` (theoretical arrival time) moves `t` milliseconds ahead per start
/// and may run at most `tau` ahead of now, so `burst` starts go at once and
/// `allowed` per period over time. Times are milliseconds since the epoch
/// by the store's clock.
struct rate_numbers {
  double t = 1;
  double tau = 0;
  int64_t burst = 1;

  rate_numbers(int64_t allowed, int64_t period_ms, int64_t burst_)
      : t(static_cast<double>(period_ms) / static_cast<double>(allowed)),
        tau(static_cast<double>(burst_ - 1) * t), burst(burst_) {}

  /// The starts a key with `tat` and `blocked_until` may make at `now`.
  int64_t available(double tat, double blocked_until, double now) const {
    if (blocked_until > now)
      return 0;
    auto room = now + tau - std::max(tat, now);
    if (room < 0)
      return 0;
    return std::min<int64_t>(
        burst, static_cast<int64_t>(std::floor(room / t + 1e-9)) + 1);
  }

  /// Milliseconds from `now` until the key may start something of `cost`
  /// (0: now).
  int64_t wait(double tat, double blocked_until, double now,
               int64_t cost) const {
    auto at = std::max(blocked_until,
                       std::max(tat, now) + static_cast<double>(cost - 1) * t -
                           tau);
    return at <= now ? 0 : static_cast<int64_t>(std::ceil(at - now));
  }

  /// The key's `tat` after starts of `cost` at `now`.
  double charged(double tat, double now, int64_t cost) const {
    return std::max(tat, now) + static_cast<double>(cost) * t;
  }
};

/// The problem with `name` and `key` as a rate limit's name and one of its
/// keys (an `invalid_argument` error), or none.
inline caf::error check_rate_key(const std::string& name,
                                 const std::string& key) {
  if (auto why = rate_limit_name_problem(name); !why.empty())
    return make_error(errc::invalid_argument,
                      "rate limit name '" + printable(name) + "' " + why);
  if (!key.empty())
    if (auto why = concurrency_key_problem(key); !why.empty())
      return make_error(errc::invalid_argument,
                        "rate key '" + printable(key) + "' " + why);
  return caf::none;
}

/// The longest a handler's back-pressure may block a key (30 days).
constexpr int64_t max_block_ms = int64_t{30} * 24 * 3600 * 1000;

} // namespace bg_jobs::detail
