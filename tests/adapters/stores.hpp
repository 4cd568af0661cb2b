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

/// The plan of the claim statement (`explain_reserve` of the store's
/// adapter), or an empty text for another adapter.
inline std::string explain_claim(db_adapter& db, const reserve_params& p) {
  caf::expected<std::string> plan{std::string{}};
  if (auto* s = dynamic_cast<sqlite_adapter*>(&db))
    plan = s->explain_reserve(p);
  else if (auto* pg = dynamic_cast<postgres_adapter*>(&db))
    plan = pg->explain_reserve(p);
  REQUIRE_MESSAGE(plan, bg_jobs::test::why(plan));
  return *plan;
}

/// One test's store: a fresh SQLite file or a fresh PostgreSQL schema.
class test_store {
public:
  virtual ~test_store() = default;

  virtual const char* store_name() const = 0;

  /// Whether connections opened from now on keep succeeded jobs in
  /// history (the adapters' option `succeeded_history`).
  bool succeeded_history = true;

  /// What a separate process opens: the SQLite path or the PostgreSQL URL.
  virtual std::string location() const = 0;

  /// A factory of connections to this test's store, dated by `clk` (the
  /// system clock by default).
  virtual adapter_factory
  factory(std::shared_ptr<bg_jobs::clock> clk = nullptr) const = 0;

  /// Opens one more connection to this test's store.
  std::unique_ptr<db_adapter>
  connect(std::shared_ptr<bg_jobs::clock> clk = nullptr) const {
    auto db = factory(std::move(clk))();
    REQUIRE_MESSAGE(db, bg_jobs::test::why(db));
    return std::move(*db);
  }

  /// Opens the store with an empty, current schema.
  std::unique_ptr<db_adapter>
  fresh(std::shared_ptr<bg_jobs::clock> clk = nullptr) const {
    auto db = connect(std::move(clk));
    auto up = db->migrate_up();
    REQUIRE_MESSAGE(up, bg_jobs::test::why(up));
    return db;
  }

  /// Makes every reservation fail inside the store (a trigger that raises
  /// on any update setting `reserved_by`), for failures after other work.
  virtual void fail_reserves() const = 0;

  /// The rows of the store's table `table` (named without the table
  /// prefix), counted through a connection of its own: for what no read of
  /// the adapter shows.
  virtual int64_t count_rows(const std::string& table) const = 0;
};

/// A fresh, migrated SQLite file per test.
class sqlite_store : public test_store {
public:
  static constexpr const char* name = "sqlite";

  const char* store_name() const override { return name; }

  std::string location() const override { return dir_.file("jobs.db"); }

  sqlite_options options(std::shared_ptr<bg_jobs::clock> clk = nullptr) const {
    sqlite_options opts;
    opts.path = dir_.file("jobs.db");
    opts.table_prefix = prefix_;
    opts.synchronous_full = false;
    opts.succeeded_history = succeeded_history;
    if (clk)
      opts.clock = std::move(clk);
    return opts;
  }

  adapter_factory
  factory(std::shared_ptr<bg_jobs::clock> clk = nullptr) const override {
    return sqlite_adapter::factory(options(std::move(clk)));
  }

  void fail_reserves() const override;
  int64_t count_rows(const std::string& table) const override;

  const temp_dir& dir() const { return dir_; }

protected:
  temp_dir dir_;
  std::string prefix_;
};

/// A SQLite store whose tables carry a prefix.
class sqlite_prefixed_store : public sqlite_store {
public:
  static constexpr const char* name = "sqlite_prefixed";

  sqlite_prefixed_store() { prefix_ = "app_"; }

  const char* store_name() const override { return name; }
};

/// A fresh, migrated schema on the test's PostgreSQL server per test.
class postgres_store : public test_store {
public:
  static constexpr const char* name = "postgres";

  const char* store_name() const override { return name; }

  std::string location() const override { return schema_.url(); }

  postgres_options
  options(std::shared_ptr<bg_jobs::clock> clk = nullptr) const {
    postgres_options opts{by_option_ ? schema_.base_url() : schema_.url()};
    if (by_option_)
      opts.schema = schema_.name();
    opts.application_name = "bg_jobs_" + schema_.name();
    opts.succeeded_history = succeeded_history;
    if (clk)
      opts.clock = std::move(clk);
    return opts;
  }

  adapter_factory
  factory(std::shared_ptr<bg_jobs::clock> clk = nullptr) const override {
    return postgres_adapter::factory(options(std::move(clk)));
  }

  void fail_reserves() const override;
  int64_t count_rows(const std::string& table) const override;

  const pg_schema& schema() const { return schema_; }

protected:
  pg_schema schema_;
  /// The schema is given by `postgres_options::schema`, not the URL.
  bool by_option_ = false;
};

/// A PostgreSQL store whose schema is named by the adapter's option.
class postgres_schema_store : public postgres_store {
public:
  static constexpr const char* name = "postgres_schema";

  postgres_schema_store() { by_option_ = true; }

  const char* store_name() const override { return name; }
};

} // namespace bg_jobs::test

/// Every store the conformance and runtime suites run against.
#define BG_JOBS_STORES                                                         \
  bg_jobs::test::sqlite_store, bg_jobs::test::postgres_store

/// The conformance suite also runs with prefixed tables and a schema
/// named by the option.
#define BG_JOBS_CONFORMANCE_STORES                                             \
  BG_JOBS_STORES, bg_jobs::test::sqlite_prefixed_store,                        \
      bg_jobs::test::postgres_schema_store
