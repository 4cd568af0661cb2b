#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <caf/error.hpp>

#include "bg_jobs/actors/detail/node_context.hpp"

namespace bg_jobs::detail {

/// One actor's connection to the store: opened on first use and again after
/// it was lost, at most once per backoff period (50 ms, doubling to 5 s)
/// while the store is unreachable. Failures are reported as `db_error`
/// events on behalf of `queue` (empty for actors of the whole node). Every
/// actor of the tree reaches the store through one of these.
class store_connection {
public:
  store_connection() = default;

  store_connection(node_context ctx, std::string who, std::string queue)
      : ctx_(std::move(ctx)), who_(std::move(who)), queue_(std::move(queue)) {}

  /// The connection, or null while the store is unreachable. The first
  /// connection that opens after a loss is reported (`db_reconnected`).
  /// Shared, so that a caller's handle outlives a `failed` that drops the
  /// connection in between: a dropped connection fails its later calls
  /// instead of being used after it was destroyed.
  std::shared_ptr<db_adapter> get();

  /// Whether a connection is open (none was dropped since the last `get`).
  bool connected() const { return db_ != nullptr; }

  /// Reports that `what` failed with `err`; drops the connection when the
  /// error says it was lost, so that the next `get` reconnects.
  void failed(const caf::error& err, const std::string& what);

  /// Runs `fn` on the connection; when that fails because the connection
  /// was lost, reconnects at once (ignoring the backoff) and runs it once
  /// more. For calls that must not wait for the next round, such as the
  /// releases of a shutdown. Reports a failure that remains.
  caf::error run_now(const std::string& what,
                     const std::function<caf::error(db_adapter&)>& fn);

  /// How long until the next attempt to connect.
  std::chrono::milliseconds backoff() const { return backoff_; }

  /// Whether the last store call's reply went missing (a lost
  /// connection): its effect on the store is unknown.
  static bool outcome_unknown(const caf::error& err);

private:
  void report(std::string message) const;

  node_context ctx_;
  std::string who_;
  std::string queue_;
  std::shared_ptr<db_adapter> db_;
  std::chrono::steady_clock::time_point next_attempt_;
  std::chrono::milliseconds backoff_{50};
  /// The connection was lost or could not be opened: the next one that
  /// opens is reported as a reconnection.
  bool lost_ = false;
};

} // namespace bg_jobs::detail
