#pragma once

#include <chrono>
#include <random>

namespace bg_jobs {

/// How long a failed job waits before its next attempt. The job waits in
/// the table, not in memory.
class backoff {
public:
  enum class kind { exponential, constant, immediate };

  /// `base * 2^(attempt - 1)`, capped at `max`, with ±`jitter` (a fraction)
  /// of random spread. The default: 1 s, 2 s, 4 s, ... up to 1 hour, ±10 %.
  static backoff
  exponential(std::chrono::milliseconds base = std::chrono::seconds{1},
              std::chrono::milliseconds max = std::chrono::hours{1},
              double jitter = 0.1) {
    return backoff{kind::exponential, base, max, jitter};
  }

  /// The queues' default: 15 s, 30 s, 1 min, ... doubling up to a day,
  /// ±10 %. With the default 20 retries a job keeps trying for about eight
  /// days (34 hours for the first 13, then daily), so that it outlives a
  /// real outage of what it calls, as Oban's, River's and Sidekiq's
  /// defaults do (20 to 25 attempts over about three weeks).
  static backoff standard() {
    return exponential(std::chrono::seconds{15}, std::chrono::hours{24}, 0.1);
  }

  /// The same delay after every failure.
  static backoff constant(std::chrono::milliseconds delay) {
    return backoff{kind::constant, delay, delay, 0};
  }

  /// Retry at once.
  static backoff immediate() { return backoff{kind::immediate, {}, {}, 0}; }

  kind what() const { return kind_; }

  /// The delay after the failure of attempt number `attempt` (1-based).
  template <class Rng>
  std::chrono::milliseconds delay(int attempt, Rng& rng) const {
    using std::chrono::milliseconds;
    switch (kind_) {
    case kind::immediate:
      return milliseconds{0};
    case kind::constant:
      return base_;
    case kind::exponential:
      break;
    }
    double ms = static_cast<double>(base_.count());
    for (int i = 1; i < attempt && ms < max_.count(); ++i)
      ms *= 2;
    ms = std::min(ms, static_cast<double>(max_.count()));
    if (jitter_ > 0) {
      std::uniform_real_distribution<double> spread{-jitter_, jitter_};
      ms *= 1 + spread(rng);
    }
    return milliseconds{static_cast<int64_t>(ms)};
  }

private:
  backoff(kind k, std::chrono::milliseconds base, std::chrono::milliseconds max,
          double jitter)
      : kind_(k), base_(base), max_(max), jitter_(jitter) {}

  kind kind_;
  std::chrono::milliseconds base_;
  std::chrono::milliseconds max_;
  double jitter_;
};

} // namespace bg_jobs
