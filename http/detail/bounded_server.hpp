#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <optional>
#include <string_view>

#include <caf/expected.hpp>

#include "bg_jobs/http/http_server.hpp"

namespace bg_jobs::detail {

/// One request, as the handler sees it.
struct http_request {
  std::string method;
  /// The path, percent-decoded.
  std::string path;
  /// Query parameters, percent-decoded (the last of a repeated one).
  std::map<std::string, std::string> query;
  /// Header fields by lower-case name (repeated ones joined with ", ").
  std::map<std::string, std::string> headers;
  std::string body;

  /// The header `name` (lower case), or empty.
  std::string header(const std::string& name) const;
};

/// The handler's answer.
struct http_response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

using http_handler = std::function<http_response(const http_request&)>;

/// An HTTP/1.1 server (Boost.Beast) that bounds what every client may send
/// and how long it may take: a slow or hostile client holds a connection
/// slot until its deadline, never a thread. `stop` closes every
/// connection, also those in the middle of a request, and returns once the
/// threads have ended (it may be called at any time, also at once after
/// `start`).
class bounded_server {
public:
  /// Binds `host:port` (0: a free port) without sharing the port with
  /// another listener, and starts serving.
  static caf::expected<std::unique_ptr<bounded_server>>
  start(const std::string& host, uint16_t port, http_limits limits,
        http_handler handler);

  ~bounded_server();

  uint16_t port() const;

  void stop();

  struct impl;

private:
  explicit bounded_server(std::shared_ptr<impl> p);
  std::shared_ptr<impl> impl_;
};

/// `text` percent-decoded (`+` as a space when `plus_is_space`); none when
/// an escape is malformed.
std::optional<std::string> percent_decoded(std::string_view text,
                                           bool plus_is_space);

} // namespace bg_jobs::detail
