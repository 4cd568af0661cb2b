#include "bg_jobs/actors/detail/spare_connections.hpp"

#include <system_error>

namespace bg_jobs::detail {

void spare_connections::open(const std::string& role,
                             const adapter_factory& connect, size_t n) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (closed_)
    return;
  auto& k = roles_[role];
  try {
    for (size_t i = 0; i < n; ++i)
      k.opening.push_back(std::async(std::launch::async, connect));
  } catch (const std::system_error&) {
    // No thread to open one on: the actors open their own.
  }
}

void spare_connections::add(const std::string& role,
                            std::unique_ptr<db_adapter> db) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!closed_)
    roles_[role].open.push_back(std::move(db));
}

std::unique_ptr<db_adapter> spare_connections::take(const std::string& role) {
  std::future<opened> pending;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto found = roles_.find(role);
    if (found == roles_.end())
      return nullptr;
    auto& k = found->second;
    if (!k.open.empty()) {
      auto db = std::move(k.open.back());
      k.open.pop_back();
      return db;
    }
    if (k.opening.empty())
      return nullptr;
    // The first started is the likeliest to be open.
    pending = std::move(k.opening.front());
    k.opening.erase(k.opening.begin());
  }
  try {
    if (auto db = pending.get())
      return std::move(*db);
  } catch (...) {
    // As a connection that failed to open.
  }
  return nullptr;
}

void spare_connections::close() {
  std::map<std::string, kept> left;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    closed_ = true;
    left.swap(roles_);
  }
  // Out of the lock: a future of std::async waits for its connection as
  // it is destroyed, which must not hold up `take`.
  left.clear();
}

} // namespace bg_jobs::detail
