// Maintenance services, one round at a time, on every store.
#include <doctest/doctest.h>

#include "adapters/stores.hpp"
#include "bg_jobs/core/clock.hpp"
#include "bg_jobs/maintenance/maintenance.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

const timestamp t0 = *parse_iso8601("2025-03-01T12:00:00Z");

/// Runs three jobs to success.
void succeed_three(db_adapter& db) {
  for (int i = 0; i < 3; ++i) {
    auto j = db.enqueue_job(job_request{"j"});
    REQUIRE(j);
    REQUIRE(db.reserve_jobs({{"j"}, 1, "n/q/1", ""}));
    j->reserved_by = "n/q/1";
    REQUIRE(db.move_job_to_succeeded(*j));
  }
}

} // namespace

TEST_SUITE("maintenance") {

  TEST_CASE_TEMPLATE("the rescuer takes back what a silent node held", S,
                     BG_JOBS_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    heartbeat_service alive{{"alive", 10s}};
    heartbeat_service dead{{"dead", 10s}};
    rescue_service rescuer{{30s, 10s}};
    REQUIRE(db->enqueue_job(job_request{"j"}));
    REQUIRE(db->enqueue_job(job_request{"j"}));
    REQUIRE(db->reserve_jobs({{"j"}, 1, "alive/q/1", ""}));
    REQUIRE(db->reserve_jobs({{"j"}, 1, "dead/q/1", ""}));
    CHECK(alive.run_once(*db, clk->now()).heartbeat);
    CHECK(dead.run_once(*db, clk->now()).heartbeat);
    CHECK(rescuer.run_once(*db, clk->now()).rescued.empty());
    clk->advance(31s);
    CHECK(alive.run_once(*db, clk->now()).heartbeat);
    auto report = rescuer.run_once(*db, clk->now());
    CHECK(report.errors.empty());
    REQUIRE(report.rescued.size() == 1);
    CHECK_FALSE(report.rescued.front().reserved_by);
    CHECK(db->stats()->reserved == 1);
  }

  TEST_CASE_TEMPLATE("one node holds the upkeep's lease until it stops "
                     "renewing it",
                     S, BG_JOBS_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    leader_service a{{"a", 30s}};
    leader_service b{{"b", 30s}};
    CHECK(a.interval() == 10s);
    auto first = a.run_once(*db, clk->now());
    REQUIRE(first.leader);
    CHECK(*first.leader);
    CHECK(first.held_for == 20s);
    CHECK_FALSE(*b.run_once(*db, clk->now()).leader);
    // Renewed every 10 s, it stays a's.
    for (int i = 0; i < 3; ++i) {
      clk->advance(10s);
      CHECK(*a.run_once(*db, clk->now()).leader);
      CHECK_FALSE(*b.run_once(*db, clk->now()).leader);
    }
    // a stops: 20 s after its last renewal, b takes over.
    clk->advance(19s);
    CHECK_FALSE(*b.run_once(*db, clk->now()).leader);
    clk->advance(2s);
    CHECK(*b.run_once(*db, clk->now()).leader);
    CHECK_FALSE(*a.run_once(*db, clk->now()).leader);
  }

  TEST_CASE_TEMPLATE("the pruner deletes batch after batch of old history "
                     "while they come back full, comes back five seconds "
                     "later when it found more than a batch, and a second "
                     "later when its budget ran out",
                     S, BG_JOBS_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    succeed_three(*db);
    prune_params keep;
    keep.succeeded_max_age = 1h;
    keep.batch = 2;
    SUBCASE("within its budget") {
      // A budget no round on a loaded machine runs out of.
      prune_service pruner{{keep, 60s, 60s}};
      CHECK(pruner.interval() == 5s);
      CHECK(pruner.run_once(*db, clk->now()).pruned == 0);
      // Nothing found: the next look waits twice as long.
      CHECK(pruner.interval() == 10s);
      clk->advance(2h);
      // A full batch of 2, then the last 1.
      CHECK(pruner.run_once(*db, clk->now()).pruned == 3);
      CHECK(pruner.interval() == 5s);
      for (auto want : {10s, 20s, 40s, 60s, 60s}) {
        CHECK(pruner.run_once(*db, clk->now()).pruned == 0);
        CHECK(pruner.interval() == want);
      }
    }
    SUBCASE("past its budget") {
      prune_service pruner{{keep, 60s, 0ms}};
      clk->advance(2h);
      CHECK(pruner.run_once(*db, clk->now()).pruned == 2);
      CHECK(pruner.interval() == 1s);
      CHECK(pruner.run_once(*db, clk->now()).pruned == 1);
      // Less than a batch.
      CHECK(pruner.interval() == 60s);
    }
    CHECK(db->stats()->succeeded == 0);
  }

  TEST_CASE_TEMPLATE("the vacuum service looks ten times less often while "
                     "no row dies",
                     S, BG_JOBS_STORES) {
    S store;
    auto db = store.fresh();
    // A bar no rate seen here can come near within ten intervals.
    vacuum_service vacuum{{1000000000, 1s}};
    CHECK(vacuum.interval() == 1s);
    // The first look found less than a quarter of the bar: an idle start.
    CHECK_FALSE(vacuum.run_once(*db, utc_now()).vacuumed);
    CHECK(vacuum.interval() == 5s);
    CHECK_FALSE(vacuum.run_once(*db, utc_now()).vacuumed);
    CHECK(vacuum.interval() == 10s);
    // A quarter of a bar of 3 is no row: the first look found that many,
    // so the next comes after one interval, to see the rate.
    vacuum_service busy{{3, 1s}};
    busy.run_once(*db, utc_now());
    CHECK(busy.interval() == 1s);
  }

  TEST_CASE("maintenance settings are validated") {
    CHECK(heartbeat_service::config{"", 1s}.validate());
    CHECK(heartbeat_service::config{"n", 0s}.validate());
    CHECK_FALSE(heartbeat_service::config{"n", 1s}.validate());
    CHECK(rescue_service::config{0s, 1s}.validate());
    prune_params bad;
    bad.batch = 0;
    CHECK(prune_service::config{bad, 1s}.validate());
    CHECK_FALSE(prune_service::config{prune_params{}, 1s}.validate());
    CHECK(vacuum_service::config{-1, 1s}.validate());
    CHECK(vacuum_service::config{1000, 0s}.validate());
    CHECK(workflow_watch_service::config{0s}.validate());
    CHECK_FALSE(workflow_watch_service::config{1s}.validate());
    maintenance_config no_watch;
    no_watch.workflow_watch_every = 0s;
    CHECK(no_watch.validate());
    CHECK(schedule_sweep_service::config{0s}.validate());
    CHECK_FALSE(schedule_sweep_service::config{1s}.validate());
    maintenance_config no_sweep;
    no_sweep.schedule_stale_after = 0s;
    CHECK(no_sweep.validate());
    auto all = maintenance_services("n", maintenance_config{});
    REQUIRE(all.size() == 8);
    // Only the node's own heartbeat and lease run on every node.
    CHECK_FALSE(all[0]->store_wide());
    CHECK_FALSE(all[1]->store_wide());
    for (size_t i = 2; i < all.size(); ++i)
      CHECK(all[i]->store_wide());
    maintenance_config no_vacuum;
    no_vacuum.vacuum_dead_rows = 0;
    CHECK(maintenance_services("n", no_vacuum).size() == 7);
  }

} // TEST_SUITE
