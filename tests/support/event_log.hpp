#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "bg_jobs/core/event.hpp"

namespace bg_jobs::test {

/// Records every event it receives; tests wait on it for conditions.
class event_log {
public:
  event_listener listener() {
    return [this](const event& e) {
      std::lock_guard<std::mutex> guard{mtx_};
      events_.push_back(e);
      cv_.notify_all();
    };
  }

  /// Waits until `pred(events)` holds or `limit` passes.
  template <class Pred>
  bool wait(Pred pred,
            std::chrono::milliseconds limit = std::chrono::seconds{15}) {
    std::unique_lock<std::mutex> guard{mtx_};
    return cv_.wait_for(guard, limit, [&] { return pred(events_); });
  }

  /// Waits until at least `n` events of kind `k` arrived.
  bool wait_for(event_kind k, size_t n = 1,
                std::chrono::milliseconds limit = std::chrono::seconds{15}) {
    return wait([&](const std::vector<event>& es) { return count(es, k) >= n; },
                limit);
  }

  size_t count(event_kind k) {
    std::lock_guard<std::mutex> guard{mtx_};
    return count(events_, k);
  }

  std::vector<event> events() {
    std::lock_guard<std::mutex> guard{mtx_};
    return events_;
  }

  std::vector<event> of(event_kind k) {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<event> result;
    for (auto& e : events_)
      if (e.kind == k)
        result.push_back(e);
    return result;
  }

  static size_t count(const std::vector<event>& es, event_kind k) {
    return static_cast<size_t>(std::count_if(
        es.begin(), es.end(), [k](const event& e) { return e.kind == k; }));
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<event> events_;
};

/// A gate that handlers wait at until the test opens it (or a bound passes,
/// so that a failing test never leaves a thread blocked forever).
class gate {
public:
  void open() {
    std::lock_guard<std::mutex> guard{mtx_};
    open_ = true;
    cv_.notify_all();
  }

  bool wait(std::chrono::milliseconds limit = std::chrono::seconds{20}) {
    std::unique_lock<std::mutex> guard{mtx_};
    return cv_.wait_for(guard, limit, [&] { return open_; });
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  bool open_ = false;
};

} // namespace bg_jobs::test
