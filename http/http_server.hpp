#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/event.hpp"

namespace bg_jobs {

/// Where and how the operator's HTTP server (the dashboard, its JSON API
/// and `/metrics`) listens.
struct http_options {
  /// 127.0.0.1 by default; any other address needs a `token`.
  std::string host = "127.0.0.1";
  /// 0 picks a free port (see `http_server::port`).
  uint16_t port = 9090;
  /// Checked on every request when set (`Authorization: Bearer <token>`,
  /// or `?token=` once, which sets a cookie for the browser).
  std::string token{};
  /// No actions: retry, cancel, delete, pause and resume are refused.
  bool read_only = false;
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
/// `/api/`, and `/metrics`. One thread per connection (cpp-httplib); every
/// request opens its store connection from a small pool.
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

  /// Stops listening and waits for the server thread.
  void stop();

  struct impl;

private:
  explicit http_server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace bg_jobs
