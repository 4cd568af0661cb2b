#pragma once

#include <memory>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <doctest/doctest.h>

#include "bg_jobs/actors/builder.hpp"
#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"
#include "bg_jobs/core/errc.hpp"
#include "support/event_log.hpp"
#include "support/temp_dir.hpp"
#include "support/why.hpp"

namespace bg_jobs::test {

/// A migrated SQLite file, an event log and an actor system per test.
/// Members are declared so that the system goes before the log and file.
class runtime_fixture {
public:
  runtime_fixture() {
    cfg.set("scheduler.max-threads", 2);
    add_error_category(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    REQUIRE(store()->migrate_up());
  }

  sqlite_options options() const {
    sqlite_options opts{dir.file("jobs.db")};
    opts.synchronous_full = false;
    return opts;
  }

  /// A connection of the test's own, to look at the store directly.
  std::unique_ptr<sqlite_adapter> store() const {
    auto db = sqlite_adapter::open(options());
    REQUIRE_MESSAGE(db, bg_jobs::test::why(db));
    return std::move(*db);
  }

  builder make_builder() {
    return builder{sqlite_adapter::factory(options())}
      .with_node_name("test-node")
      .with_event_listener(log.listener());
  }

  instance start(const builder& b) {
    auto bg = b.build(*sys);
    REQUIRE_MESSAGE(bg, bg_jobs::test::why(bg));
    return std::move(*bg);
  }

  temp_dir dir;
  event_log log;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
};

} // namespace bg_jobs::test
