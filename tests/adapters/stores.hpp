#pragma once

#include <memory>
#include <string>

#include <doctest/doctest.h>

#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"
#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"
#include "bg_jobs/core/errc.hpp"
#include "support/pg.hpp"
#include "support/temp_dir.hpp"
#include "support/why.hpp"

namespace bg_jobs::test {

/// A fresh, migrated SQLite file per test.
class sqlite_store {
public:
  static constexpr const char* name = "sqlite";

  /// Opens one more connection to this test's store.
  std::unique_ptr<db_adapter>
  connect(std::shared_ptr<bg_jobs::clock> clk = nullptr) {
    sqlite_options opts;
    opts.path = dir_.file("jobs.db");
    opts.synchronous_full = false;
    if (clk)
      opts.clock = std::move(clk);
    auto db = sqlite_adapter::open(opts);
    REQUIRE_MESSAGE(db, bg_jobs::test::why(db));
    return std::move(*db);
  }

  /// Opens the store with an empty, current schema.
  std::unique_ptr<db_adapter>
  fresh(std::shared_ptr<bg_jobs::clock> clk = nullptr) {
    auto db = connect(std::move(clk));
    auto up = db->migrate_up();
    REQUIRE_MESSAGE(up, bg_jobs::test::why(up));
    return db;
  }

private:
  temp_dir dir_;
};

/// A fresh, migrated schema on the test's PostgreSQL server per test.
class postgres_store {
public:
  static constexpr const char* name = "postgres";

  std::unique_ptr<db_adapter>
  connect(std::shared_ptr<bg_jobs::clock> clk = nullptr) {
    postgres_options opts{schema_.url()};
    if (clk)
      opts.clock = std::move(clk);
    auto db = postgres_adapter::open(opts);
    REQUIRE_MESSAGE(db, bg_jobs::test::why(db));
    return std::move(*db);
  }

  std::unique_ptr<db_adapter>
  fresh(std::shared_ptr<bg_jobs::clock> clk = nullptr) {
    auto db = connect(std::move(clk));
    auto up = db->migrate_up();
    REQUIRE_MESSAGE(up, bg_jobs::test::why(up));
    return db;
  }

  const pg_schema& schema() const { return schema_; }

private:
  pg_schema schema_;
};

} // namespace bg_jobs::test

/// Every store the conformance suite runs against.
#define BG_JOBS_STORES bg_jobs::test::sqlite_store, bg_jobs::test::postgres_store
