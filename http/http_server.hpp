#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/event.hpp"

namespace bg_jobs {

namespace detail {
struct http_access;
struct action_effects;
} // namespace detail

/// What one client of the HTTP server may send and for how long.
struct http_limits {
  /// Connections open at once; more are answered 503 and closed.
  size_t max_connections = 64;
  /// Bytes of the request line and headers together.
  size_t header_bytes = 16 * 1024;
  /// Header fields of one request.
  size_t header_fields = 64;
  /// Bytes of a request body.
  size_t body_bytes = 64 * 1024;
  /// The longest a client may take to send one request (headers and body)
  /// and to read its answer; also how long an idle keep-alive connection
  /// stays open.
  std::chrono::milliseconds request_deadline{10000};
  /// Threads that run the handlers (a slow client holds none).
  size_t threads = 4;
};

/// Where and how the operator's HTTP server (the dashboard, its JSON API
/// and `/metrics`) listens.
struct http_options {
  /// An IP address: 127.0.0.1 by default; any address other than
  /// 127.0.0.1, ::1 or localhost needs a `token`.
  std::string host = "127.0.0.1";
  /// 0 picks a free port (see `http_server::port`).
  uint16_t port = 9090;
  /// Checked on every request when set (`Authorization: Bearer <token>`,
  /// or `?token=` once, which sets a cookie for the browser).
  std::string token{};
  /// No actions: retry, cancel, delete, pause and resume are refused.
  bool read_only = false;
  /// Host names it answers to besides its address and this machine's
  /// loopback names (a name behind a proxy). Requests for any other
  /// `Host`, and actions from any other `Origin`, are refused, so that a
  /// page of another site cannot reach it through DNS rebinding. A server
  /// on 0.0.0.0 or :: answers to every name (its token guards it).
  std::vector<std::string> allowed_hosts{};
  http_limits limits{};
};

/// Prometheus metrics of one process: counters and histograms fed by the
/// runtime's events (`listener()`), gauges of jobs by state and queue read
/// from the store at most once a second.
class metrics {
public:
  metrics();
  ~metrics();

  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  /// The listener that counts events; add it to a builder.
  event_listener listener();

  /// Records that `queue` has `n` executors in this process.
  void set_executors(const std::string& queue, int n);

  /// The exposition text, with the gauges refreshed from `db` when they are
  /// older than a second.
  std::string scrape(db_adapter& db);

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

/// The operator's HTTP server: the dashboard at `/`, its JSON API under
/// `/api/`, and `/metrics`. Boost.Beast, with every client bounded
/// (`http_limits`); requests take their store connection from a small
/// pool.
class http_server {
public:
  /// Starts listening; `invalid_config` for a non-local address without a
  /// token, `database_unavailable` when the store cannot be opened, or the
  /// bind failure.
  static caf::expected<std::unique_ptr<http_server>>
  start(adapter_factory store, http_options options,
        std::shared_ptr<bg_jobs::metrics> metrics = nullptr);

  ~http_server();

  /// The port it listens on.
  uint16_t port() const;

  /// Stops listening, closes every connection (also one in the middle of
  /// a request) and waits for the server's threads.
  void stop();

  struct impl;

private:
  friend struct detail::http_access;
  static caf::expected<std::unique_ptr<http_server>>
  launch(adapter_factory store, http_options options,
         std::shared_ptr<bg_jobs::metrics> metrics,
         std::function<void(detail::action_effects)> sink);
  explicit http_server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace bg_jobs
