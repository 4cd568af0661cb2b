// A PostgreSQL server restart in the middle of a drain. This binary runs
// alone (RUN_SERIAL): the restart takes down every connection to the server.
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <doctest/doctest.h>
#include <pqxx/pqxx>

#include "bg_jobs/actors/builder.hpp"
#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"
#include "bg_jobs/core/errc.hpp"
#include "support/event_log.hpp"
#include "support/pg.hpp"
#include "support/wait.hpp"
#include "support/why.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

int64_t count_succeeded(const std::string& url) {
  try {
    pqxx::connection c{url};
    pqxx::work tx{c};
    return tx.exec("SELECT count(*) FROM jobs_succeeded")[0][0].as<int64_t>();
  } catch (...) {
    return -1; // the server is restarting
  }
}

/// Jobs still in `jobs` (waiting or reserved); -1 while restarting.
int64_t count_pending(const std::string& url) {
  try {
    pqxx::connection c{url};
    pqxx::work tx{c};
    return tx.exec("SELECT count(*) FROM jobs")[0][0].as<int64_t>();
  } catch (...) {
    return -1;
  }
}

} // namespace

TEST_SUITE("reliability") {

  TEST_CASE("three server restarts mid-drain lose no job, strand none and "
            "run none twice") {
    REQUIRE_MESSAGE(std::ifstream{test::pg_state_dir() + "/base"}.good(),
                    "this test restarts the server that the test command "
                    "started; it cannot restart a server named by "
                    "BG_JOBS_PG_URL");
    test::pg_schema schema;
    test::event_log log;
    std::mutex mtx;
    std::map<int64_t, int> runs;
    constexpr int n = 1500;
    caf::actor_system_config cfg;
    cfg.set("scheduler.max-threads", 2);
    caf::actor_system sys{cfg};
    auto factory = postgres_adapter::factory({schema.url()});
    {
      auto db = factory();
      REQUIRE(db);
      REQUIRE((*db)->migrate_up());
      REQUIRE(
          (*db)->enqueue_jobs(std::vector<job_request>(n, job_request{"j"})));
    }
    auto bg =
        builder{factory}
            .with_node_name("restart-node")
            .with_event_listener(log.listener())
            .with_queue(
                queue_spec{"q"}
                    .with_poll_interval(50ms)
                    .with_max_concurrent_jobs(4)
                    .with_worker(worker{"j",
                                        [&](const job& j) {
                                          std::this_thread::sleep_for(3ms);
                                          std::lock_guard<std::mutex> g{mtx};
                                          ++runs[j.id];
                                        }}))
            .build(sys);
    REQUIRE_MESSAGE(bg, test::why(bg));
    // Three restarts, each mid-drain, in one bounded test.
    for (int round = 1; round <= 3; ++round) {
      REQUIRE(test::eventually(
          [&] { return count_succeeded(schema.url()) >= round * 300; }, 60s));
      auto cmd = std::string{BG_JOBS_SCRIPTS} + "/pg_restart.sh " +
                 test::pg_state_dir() + " 1";
      REQUIRE(std::system(cmd.c_str()) == 0);
    }
    REQUIRE(test::eventually([&] { return count_succeeded(schema.url()) == n; },
                             60s));
    REQUIRE(test::eventually([&] { return count_pending(schema.url()) == 0; }));
    CHECK(log.count(event_kind::db_error) >= 1);
    // Each actor that lost its connection says when it has one again.
    CHECK(log.count(event_kind::db_reconnected) >= 1);
    std::lock_guard<std::mutex> guard{mtx};
    CHECK(runs.size() == n);
    size_t twice = 0;
    for (auto& kvp : runs)
      twice += kvp.second > 1 ? 1 : 0;
    MESSAGE(runs.size() << " jobs ran, " << twice << " of them more than once, "
                        << log.count(event_kind::db_error)
                        << " db_error events during 3 restarts");
    CHECK(twice == 0);
    REQUIRE(bg->shutdown());
  }

} // TEST_SUITE
