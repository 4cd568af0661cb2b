#pragma once

#include "bg_jobs/control/detail/control_plane.hpp"
#include "bg_jobs/http/http_server.hpp"

namespace bg_jobs::detail {

/// How a node starts the HTTP server it runs.
struct http_access {
  /// As `http_server::start`, with where the effects of the dashboard's
  /// actions go: the node applies them. A server started without one (the
  /// command line's) records their events in the store, for the node that
  /// holds the upkeep to report.
  static caf::expected<std::unique_ptr<http_server>>
  start(adapter_factory store, http_options options,
        std::shared_ptr<bg_jobs::metrics> metrics, action_sink sink);
};

} // namespace bg_jobs::detail
