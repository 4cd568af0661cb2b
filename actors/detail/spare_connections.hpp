#pragma once

#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bg_jobs/adapters/db_adapter.hpp"

namespace bg_jobs::detail {

/// Connections opened ahead for the actors on the way to a node's first
/// claim, each kept for one role (a `store_connection`'s name): for the
/// shared connection ("node"), the one the build registered the node on;
/// for the queues ("queue"), connections opened side by side while the
/// build registers the node and the tree starts. Start-up then waits for
/// one connection at most, not for one after another (each takes tens of
/// milliseconds on a busy PostgreSQL server, whose postmaster starts one
/// backend at a time). Each is taken once; the build closes what start-up
/// did not take once the tree is ready.
class spare_connections {
public:
  using opened = caf::expected<std::unique_ptr<db_adapter>>;

  spare_connections() = default;
  spare_connections(const spare_connections&) = delete;
  spare_connections& operator=(const spare_connections&) = delete;

  /// Starts opening `n` connections for `role` with `connect`, each on a
  /// thread of its own.
  void open(const std::string& role, const adapter_factory& connect, size_t n);

  /// Keeps `db`, open already, for `role`.
  void add(const std::string& role, std::unique_ptr<db_adapter> db);

  /// A connection kept for `role`, waiting for one still being opened;
  /// none when none is left or the one it waited for failed to open (the
  /// caller opens its own, and reports what fails then).
  std::unique_ptr<db_adapter> take(const std::string& role);

  /// Closes every connection left (waiting for those still being
  /// opened); later calls of `take` find none.
  void close();

  ~spare_connections() { close(); }

private:
  struct kept {
    std::vector<std::unique_ptr<db_adapter>> open;
    std::vector<std::future<opened>> opening;
  };
  std::mutex mtx_;
  std::map<std::string, kept> roles_;
  bool closed_ = false;
};

} // namespace bg_jobs::detail
