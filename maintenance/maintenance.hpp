#pragma once

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/timestamp.hpp"

namespace bg_jobs {

/// Settings of the periodic upkeep: every node's heartbeat, and the
/// store-wide upkeep that one elected node runs (the rescue of jobs held by
/// dead nodes, the pruning of history, the vacuum of `jobs`).
struct maintenance_config {
  /// A node without a heartbeat for this long is presumed dead and its
  /// jobs are rescued (30 s). Heartbeats and rescues come every third of it.
  /// The store-wide upkeep's lease lasts two thirds of it and is renewed
  /// every third: another node takes over within `lease` of its holder's
  /// death.
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
  /// How often the node that holds the upkeep looks for workflows that
  /// finished or became stuck, to report them as events, when the store
  /// has not announced one (30 s; 1 s at most on a node that does not
  /// listen, `builder::with_poll_only`). The store announces each finish
  /// and each task that becomes held, and the node looks then (at most
  /// every 100 ms).
  std::chrono::milliseconds workflow_watch_every{30000};
  /// A schedule declared in code that no node has declared for this long
  /// stops: the node that holds the upkeep removes it from the store and
  /// cancels its waiting occurrence (60 s). Each node declares its
  /// schedules again every quarter of it.
  std::chrono::milliseconds schedule_stale_after{60000};

  std::chrono::milliseconds interval() const {
    return std::max(lease / 3, std::chrono::milliseconds{10});
  }

  caf::error validate() const;
};

/// What one round of a maintenance service did.
struct maintenance_report {
  bool heartbeat = false;
  /// Whether this node holds the store-wide upkeep's lease (set by the
  /// `leader_service` only), and for how long from before the round.
  std::optional<bool> leader;
  std::chrono::milliseconds held_for{0};
  std::vector<job> rescued;
  int64_t pruned = 0;
  bool vacuumed = false;
  /// Events to emit (operator actions recorded outside any node).
  std::vector<event> events;
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

  /// Whether it acts on the whole store, and so runs only on the node that
  /// holds the upkeep's lease.
  virtual bool store_wide() const { return false; }

  /// The time between two rounds.
  virtual std::chrono::milliseconds interval() const = 0;

  /// The store's announcement (a wake-up name, such as
  /// `workflows_changed`) that makes a round due at once, however long the
  /// interval; none by default.
  virtual const char* woken_by() const { return nullptr; }

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

/// Takes or renews the lease of the store-wide upkeep for `node`: held for
/// two thirds of `lease`, renewed every third.
class leader_service : public maintenance_service {
public:
  /// The lease's name in the store.
  static constexpr const char* lease_name = "maintenance";

  struct config {
    std::string node;
    std::chrono::milliseconds lease{30000};
    caf::error validate() const;
  };

  explicit leader_service(config cfg) : cfg_(std::move(cfg)) {}
  const char* name() const override { return "leader"; }
  std::chrono::milliseconds interval() const override {
    return std::max(cfg_.lease / 3, std::chrono::milliseconds{1});
  }
  maintenance_report run_once(db_adapter& db, timestamp now) override;

private:
  config cfg_;
};

/// Releases the jobs of nodes whose heartbeat is older than the lease, and
/// records jobs that expired unstarted as cancelled ("expired").
class rescue_service : public maintenance_service {
public:
  struct config {
    std::chrono::milliseconds lease{30000};
    std::chrono::milliseconds every{10000};
    caf::error validate() const;
  };

  explicit rescue_service(config cfg) : cfg_(cfg) {}
  const char* name() const override { return "rescuer"; }
  bool store_wide() const override { return true; }
  std::chrono::milliseconds interval() const override { return cfg_.every; }
  maintenance_report run_once(db_adapter& db, timestamp now) override;

private:
  config cfg_;
};

/// Deletes history beyond the retention, batch after batch while they come
/// back full, for at most `budget` per round. Rounds come every five
/// seconds while the last found more than a batch to delete (history
/// arrives faster than a batch per interval), a second later when one ended
/// on its budget, and `every` otherwise; rounds that find nothing stretch
/// from five seconds to `every`, doubling, so that a node that starts under
/// load prunes from its first seconds and an idle one rarely looks.
class prune_service : public maintenance_service {
public:
  struct config {
    prune_params retention;
    std::chrono::milliseconds every{60000};
    /// How long one round may go on deleting full batches.
    std::chrono::milliseconds budget{500};
    caf::error validate() const;
  };

  /// The time between rounds while history arrives fast.
  static constexpr std::chrono::milliseconds busy_every{5000};
  /// The time before the next round after one that ran out of budget.
  static constexpr std::chrono::milliseconds behind_every{1000};

  explicit prune_service(config cfg) : cfg_(cfg) {}
  const char* name() const override { return "pruner"; }
  bool store_wide() const override { return true; }
  std::chrono::milliseconds interval() const override { return next_; }
  maintenance_report run_once(db_adapter& db, timestamp now) override;

private:
  config cfg_;
  std::chrono::milliseconds next_ = std::min(cfg_.every, busy_every);
};

/// Vacuums `jobs` once enough of it is dead (see `db_adapter::vacuum_jobs`).
/// A vacuum that could remove little (a snapshot open elsewhere still sees
/// the rows) raises the bar: the next waits for as many new dead rows
/// again, or for ten intervals, so that a held transaction does not make it
/// scan in a loop and the table is vacuumed soon after it ends.
///
/// It looks every `every` while rows die fast enough to reach the bar
/// within a few intervals, and up to ten times less often while they do not
/// (an idle node, or a store that needs no vacuum): the next look comes
/// when half the distance to the bar would be covered at the rate last
/// seen. The look after the first comes after one interval if the first
/// found a quarter of the bar dead already, and after five otherwise.
class vacuum_service : public maintenance_service {
public:
  struct config {
    int64_t dead_rows = 20000;
    std::chrono::milliseconds every{1000};
    caf::error validate() const;
  };

  explicit vacuum_service(config cfg) : cfg_(cfg), bar_(cfg.dead_rows) {}
  const char* name() const override { return "vacuum"; }
  bool store_wide() const override { return true; }
  std::chrono::milliseconds interval() const override { return next_; }
  maintenance_report run_once(db_adapter& db, timestamp now) override;

  /// The dead rows the next vacuum waits for.
  int64_t bar() const { return bar_; }

private:
  using clock = std::chrono::steady_clock;

  /// The time until the next look, from the dead rows seen now (`dead`,
  /// and `left_dead` after a vacuum) and the bar they are to reach.
  std::chrono::milliseconds pace(int64_t dead, int64_t left_dead, int64_t bar,
                                 clock::time_point now);

  config cfg_;
  int64_t bar_;
  clock::time_point last_ = clock::now();
  std::chrono::milliseconds next_ = cfg_.every;
  int64_t seen_dead_ = -1;
  clock::time_point seen_at_;
};

/// Reports the operator actions recorded in the store by processes without
/// a node (the command line) as this node's events, and removes them: each
/// is reported once, by the node that holds the upkeep (none is reported if
/// that node dies between taking and emitting it). Looks at start, then
/// after five seconds (or `every`, if shorter), a second after a round that
/// found some, and otherwise ever less often, doubling up to `every`.
class actions_service : public maintenance_service {
public:
  struct config {
    std::chrono::milliseconds every{10000};
    caf::error validate() const;
  };

  explicit actions_service(config cfg)
      : cfg_(cfg), next_(std::min(cfg.every, std::chrono::milliseconds{5000})) {}
  const char* name() const override { return "actions"; }
  bool store_wide() const override { return true; }
  std::chrono::milliseconds interval() const override { return next_; }
  maintenance_report run_once(db_adapter& db, timestamp now) override;

private:
  config cfg_;
  std::chrono::milliseconds next_;
};

/// Reports, as the node that holds the upkeep, the workflows that finished
/// (`workflow_finished`, with the time from start to end as `duration`)
/// and those that became stuck (`workflow_stuck`: running with a task held
/// by a parent that did not succeed), reading the store every `every`.
/// Each finish is taken from the store once (`db_adapter::
/// watch_workflows`), so it is reported once whichever node holds the
/// upkeep (none is reported if that node dies between taking and emitting
/// it). A stuck workflow is reported when this node first sees it so, and
/// again after it was not (a node that takes the upkeep over reports those
/// stuck then).
class workflow_watch_service : public maintenance_service {
public:
  struct config {
    std::chrono::milliseconds every{1000};
    caf::error validate() const;
  };

  explicit workflow_watch_service(config cfg) : cfg_(cfg), next_(cfg.every) {}
  const char* name() const override { return "workflows"; }
  bool store_wide() const override { return true; }
  const char* woken_by() const override { return workflows_changed; }
  std::chrono::milliseconds interval() const override { return next_; }
  maintenance_report run_once(db_adapter& db, timestamp now) override;

private:
  config cfg_;
  std::chrono::milliseconds next_;
  /// The workflows stuck at the last round.
  std::set<int64_t> stuck_;
};

/// Removes, as the node that holds the upkeep, the schedules declared in
/// code that no node has declared for `stale_after` (a node declares its
/// own every quarter of it): each goes with its waiting occurrence
/// (cancelled) and is reported as `schedule_removed`.
///
/// A jump of the clock cannot stop a schedule at once: one is removed only
/// after this service has also seen it unseen for half of `stale_after` of
/// its own steady time, and never one this node declares itself.
class schedule_sweep_service : public maintenance_service {
public:
  struct config {
    std::chrono::milliseconds stale_after{60000};
    /// The schedules this node declares.
    std::set<std::string> own{};
    caf::error validate() const;
  };

  explicit schedule_sweep_service(config cfg) : cfg_(std::move(cfg)) {}
  const char* name() const override { return "schedules"; }
  bool store_wide() const override { return true; }
  std::chrono::milliseconds interval() const override {
    return std::max(cfg_.stale_after / 4, std::chrono::milliseconds{10});
  }
  maintenance_report run_once(db_adapter& db, timestamp now) override;

private:
  config cfg_;
  /// When this service first saw each stale schedule so (steady time).
  std::map<std::string, std::chrono::steady_clock::time_point> stale_since_;
};

/// The services of a node, from its settings: the heartbeat, the leader's
/// lease, then the store-wide ones. `announced`: the node hears the
/// store's announcements (it listens), so the workflow watch can wait
/// `workflow_watch_every`; otherwise it looks at least once a second.
std::vector<std::shared_ptr<maintenance_service>>
maintenance_services(const std::string& node, const maintenance_config& cfg,
                     std::set<std::string> declared_schedules = {},
                     bool announced = true);

} // namespace bg_jobs
