#pragma once

#include <atomic>
#include <memory>

#include "bg_jobs/core/timestamp.hpp"

namespace bg_jobs {

/// The source of "now" for everything that stores or compares times. The
/// runtime uses the system clock; tests pin time with a `manual_clock`.
class clock {
public:
  virtual ~clock() = default;

  /// Returns the current UTC time.
  virtual timestamp now() const = 0;

  /// Returns the process-wide system clock.
  static std::shared_ptr<clock> system();
};

/// A clock that stands still until told to move.
class manual_clock : public clock {
public:
  explicit manual_clock(timestamp start) : now_(to_unix_ms(start)) {}

  timestamp now() const override { return from_unix_ms(now_.load()); }

  void set(timestamp t) { now_ = to_unix_ms(t); }

  void advance(std::chrono::milliseconds d) { now_ += d.count(); }

private:
  std::atomic<int64_t> now_;
};

} // namespace bg_jobs
