#pragma once

#include <memory>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <doctest/doctest.h>

#include "adapters/stores.hpp"
#include "bg_jobs/actors/builder.hpp"
#include "bg_jobs/actors/system_config.hpp"
#include "bg_jobs/core/errc.hpp"
#include "support/event_log.hpp"
#include "support/why.hpp"

namespace bg_jobs::test {

/// A migrated store, an event log and an actor system per test. Members
/// are declared so that the system goes before the log and the store.
class runtime_fixture {
public:
  explicit runtime_fixture(std::unique_ptr<test_store> s)
      : the_store(std::move(s)) {
    cfg.set("scheduler.max-threads", 2);
    configure(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    the_store->fresh();
  }

  /// A connection of the test's own, to look at the store directly.
  std::unique_ptr<db_adapter>
  store(std::shared_ptr<bg_jobs::clock> clk = nullptr) const {
    return the_store->connect(std::move(clk));
  }

  /// A builder on the test's store, dated by `clk` where one is given.
  builder make_builder(std::shared_ptr<bg_jobs::clock> clk = nullptr) {
    auto b = builder{the_store->factory(clk)}
                 .with_node_name("test-node")
                 .with_event_listener(log.listener());
    if (clk)
      b.with_clock(clk);
    return b;
  }

  instance start(const builder& b) {
    auto bg = b.build(*sys);
    REQUIRE_MESSAGE(bg, bg_jobs::test::why(bg));
    return std::move(*bg);
  }

  std::unique_ptr<test_store> the_store;
  event_log log;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
};

/// The runtime fixture on a SQLite file, for cases about SQLite itself.
class sqlite_runtime_fixture : public runtime_fixture {
public:
  sqlite_runtime_fixture()
      : runtime_fixture(std::make_unique<sqlite_store>()) {}

  const sqlite_store& sqlite() const {
    return static_cast<const sqlite_store&>(*the_store);
  }

  sqlite_options options() const { return sqlite().options(); }

  const temp_dir& dir() const { return sqlite().dir(); }
};

} // namespace bg_jobs::test

#define BG_JOBS_RUNTIME_CASE_IMPL(name, cls)                                   \
  namespace {                                                                  \
  struct cls : ::bg_jobs::test::runtime_fixture {                              \
    using runtime_fixture::runtime_fixture;                                    \
    void run();                                                                \
  };                                                                           \
  }                                                                            \
  TEST_CASE_TEMPLATE(name, S, BG_JOBS_STORES) {                                \
    cls f{std::make_unique<S>()};                                              \
    f.run();                                                                   \
  }                                                                            \
  void cls::run()

/// A runtime test case that runs once per store of `BG_JOBS_STORES`; its
/// body sees the members of `runtime_fixture`.
#define BG_JOBS_RUNTIME_CASE(name)                                             \
  BG_JOBS_RUNTIME_CASE_IMPL(name, DOCTEST_CAT(runtime_case_, __LINE__))
