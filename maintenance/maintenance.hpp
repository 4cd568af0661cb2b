#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/timestamp.hpp"

namespace bg_jobs {

/// Settings of the periodic upkeep every node runs: its heartbeat, the
/// rescue of jobs held by dead nodes, and the pruning of history.
struct maintenance_config {
  /// A node without a heartbeat for this long is presumed dead and its
  /// jobs are rescued (30 s). Heartbeats and rescues come every third of it.
  std::chrono::milliseconds lease{30000};
  /// What history to keep (24 h of succeeded, 7 days of failed jobs, at
  /// most 100,000 of each, deleted 1,000 rows at a time; see
  /// `prune_service` for how a round goes).
  prune_params retention;
  /// How often to prune (60 s).
  std::chrono::milliseconds prune_every{60000};
  /// Vacuum `jobs` once it holds this many dead row versions (20,000;
  /// PostgreSQL only); 0 leaves it to autovacuum.
  int64_t vacuum_dead_rows = 20000;
  /// How often to look (1 s).
  std::chrono::milliseconds vacuum_every{1000};

  std::chrono::milliseconds interval() const {
    return std::max(lease / 3, std::chrono::milliseconds{10});
  }

  caf::error validate() const;
};

/// What one round of a maintenance service did.
struct maintenance_report {
  bool heartbeat = false;
  std::vector<job> rescued;
  int64_t pruned = 0;
  bool vacuumed = false;
  std::vector<caf::error> errors;
};

/// One periodic upkeep service: a validated config, and one round against
/// the store per `run_once`, which says what it did. The periodic actor adds
/// the timer; tests call `run_once` directly.
class maintenance_service {
public:
  virtual ~maintenance_service() = default;

  /// Names the service in events (`heartbeat`, `rescuer`, `pruner`).
  virtual const char* name() const = 0;

  /// The time between two rounds.
  virtual std::chrono::milliseconds interval() const = 0;

  /// Runs one round at `now`. The store dates rows with its own clock.
  virtual maintenance_report run_once(db_adapter& db, timestamp now) = 0;
};

/// Records that `node` is alive, every third of the lease.
class heartbeat_service : public maintenance_service {
public:
  struct config {
    std::string node;
    std::chrono::milliseconds every{10000};
    caf::error validate() const;
  };

  explicit heartbeat_service(config cfg) : cfg_(std::move(cfg)) {}
  const char* name() const override { return "heartbeat"; }
  std::chrono::milliseconds interval() const override { return cfg_.every; }
  maintenance_report run_once(db_adapter& db, timestamp now) override;

private:
  config cfg_;
};

/// Releases the jobs of nodes whose heartbeat is older than the lease.
class rescue_service : public maintenance_service {
public:
  struct config {
    std::chrono::milliseconds lease{30000};
    std::chrono::milliseconds every{10000};
    caf::error validate() const;
  };

  explicit rescue_service(config cfg) : cfg_(cfg) {}
  const char* name() const override { return "rescuer"; }
  std::chrono::milliseconds interval() const override { return cfg_.every; }
  maintenance_report run_once(db_adapter& db, timestamp now) override;

private:
  config cfg_;
};

/// Deletes history beyond the retention, batch after batch while they come
/// back full, for at most `budget` per round.
class prune_service : public maintenance_service {
public:
  struct config {
    prune_params retention;
    std::chrono::milliseconds every{60000};
    /// How long one round may go on deleting full batches.
    std::chrono::milliseconds budget{500};
    caf::error validate() const;
  };

  explicit prune_service(config cfg) : cfg_(cfg) {}
  const char* name() const override { return "pruner"; }
  /// `every`, or a second while the last round ended with history still
  /// beyond the retention (it arrives faster than a round deletes).
  std::chrono::milliseconds interval() const override {
    return behind_ ? std::min(cfg_.every, std::chrono::milliseconds{1000})
                   : cfg_.every;
  }
  maintenance_report run_once(db_adapter& db, timestamp now) override;

private:
  config cfg_;
  bool behind_ = false;
};

/// Vacuums `jobs` once enough of it is dead (see `db_adapter::vacuum_jobs`).
/// A vacuum that could remove little (a snapshot open elsewhere still sees
/// the rows) raises the bar: the next waits for as many new dead rows
/// again, or for ten intervals, so that a held transaction does not make it
/// scan in a loop and the table is vacuumed soon after it ends.
class vacuum_service : public maintenance_service {
public:
  struct config {
    int64_t dead_rows = 20000;
    std::chrono::milliseconds every{1000};
    caf::error validate() const;
  };

  explicit vacuum_service(config cfg) : cfg_(cfg), bar_(cfg.dead_rows) {}
  const char* name() const override { return "vacuum"; }
  std::chrono::milliseconds interval() const override { return cfg_.every; }
  maintenance_report run_once(db_adapter& db, timestamp now) override;

  /// The dead rows the next vacuum waits for.
  int64_t bar() const { return bar_; }

private:
  config cfg_;
  int64_t bar_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

/// The services of a node, from its settings.
std::vector<std::shared_ptr<maintenance_service>>
maintenance_services(const std::string& node, const maintenance_config& cfg);

} // namespace bg_jobs
