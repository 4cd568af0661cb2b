#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <caf/error.hpp>

#include "bg_jobs/actors/runtime_context.hpp"

namespace bg_jobs {

/// One actor's connection to the store: opened on first use and again after
/// it was lost, at most once per backoff period (50 ms, doubling to 5 s)
/// while the store is unreachable. Failures are reported as `db_error`
/// events on behalf of `queue` (empty for actors of the whole node).
class store_connection {
public:
  store_connection() = default;

  store_connection(runtime_context ctx, std::string who, std::string queue)
    : ctx_(std::move(ctx)), who_(std::move(who)), queue_(std::move(queue)) {}

  /// The connection, or nullptr while the store is unreachable.
  db_adapter* get();

  /// Reports that `what` failed with `err`; drops the connection when the
  /// error says it was lost, so that the next `get` reconnects.
  void failed(const caf::error& err, const std::string& what);

  /// How long until the next attempt to connect.
  std::chrono::milliseconds backoff() const { return backoff_; }

private:
  void report(std::string message) const;

  runtime_context ctx_;
  std::string who_;
  std::string queue_;
  std::unique_ptr<db_adapter> db_;
  std::chrono::steady_clock::time_point next_attempt_;
  std::chrono::milliseconds backoff_{50};
};

} // namespace bg_jobs
