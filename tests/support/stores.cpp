#include "adapters/stores.hpp"

#include <pqxx/pqxx>
#include <sqlite3.h>

namespace bg_jobs::test {

void sqlite_store::fail_reserves() const {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(dir_.file("jobs.db").c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  auto sql = "CREATE TRIGGER bg_jobs_test_fail_reserve BEFORE UPDATE ON " +
             prefix_ +
             "jobs WHEN NEW.reserved_by IS NOT NULL"
             " BEGIN SELECT RAISE(ABORT, 'injected reserve failure'); END";
  auto rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  auto msg = std::string{err ? err : ""};
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE_MESSAGE(rc == SQLITE_OK, msg);
}

void postgres_store::fail_reserves() const {
  pqxx::connection c{schema_.url()};
  pqxx::work tx{c};
  tx.exec("CREATE FUNCTION bg_jobs_test_fail_reserve() RETURNS trigger"
          " LANGUAGE plpgsql AS $$ BEGIN"
          " RAISE EXCEPTION 'injected reserve failure'; END $$");
  tx.exec("CREATE TRIGGER bg_jobs_test_fail_reserve BEFORE UPDATE ON jobs"
          " FOR EACH ROW WHEN (NEW.reserved_by IS NOT NULL)"
          " EXECUTE FUNCTION bg_jobs_test_fail_reserve()");
  tx.commit();
}

int64_t sqlite_store::count_rows(const std::string& table) const {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(dir_.file("jobs.db").c_str(), &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  auto sql = "SELECT count(*) FROM " + prefix_ + table;
  sqlite3_stmt* q = nullptr;
  auto rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr);
  int64_t n = -1;
  if (rc == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
    n = sqlite3_column_int64(q, 0);
  auto msg = std::string{sqlite3_errmsg(db)};
  sqlite3_finalize(q);
  sqlite3_close(db);
  REQUIRE_MESSAGE(n >= 0, msg);
  return n;
}

int64_t postgres_store::count_rows(const std::string& table) const {
  pqxx::connection c{schema_.url()};
  pqxx::work tx{c};
  return tx.exec1("SELECT count(*) FROM " + tx.quote_name(table))[0]
      .as<int64_t>();
}

} // namespace bg_jobs::test
