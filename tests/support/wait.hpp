#pragma once

#include <chrono>
#include <thread>

namespace bg_jobs::test {

/// Polls `cond` until it holds or `limit` passes; returns the last result.
template <class F>
bool eventually(F&& cond,
                std::chrono::milliseconds limit = std::chrono::seconds{10}) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline)
      return cond();
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
  }
  return true;
}

} // namespace bg_jobs::test
