// Cases only the PostgreSQL adapter has: connection strings, the server,
// transactional enqueue, notifications and dropped connections.
#include <set>
#include <thread>

#include <doctest/doctest.h>
#include <pqxx/pqxx>

#include "adapters/stores.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<postgres_adapter> open_migrated(const test::pg_schema& s) {
  auto db = postgres_adapter::open({s.url()});
  REQUIRE_MESSAGE(db, test::why(db));
  auto up = (*db)->migrate_up();
  REQUIRE_MESSAGE(up, test::why(up));
  return std::move(*db);
}

} // namespace

TEST_SUITE("postgres") {

  TEST_CASE("a malformed connection string is a clear error") {
    auto db = postgres_adapter::open({"host=localhost port"});
    REQUIRE_FALSE(db);
    CHECK(code_of(db.error()) == errc::invalid_argument);
    CHECK(describe(db.error()).find("malformed PostgreSQL connection string") !=
          std::string::npos);
    auto bad_key = postgres_adapter::open({"hots=localhost"});
    REQUIRE_FALSE(bad_key);
    CHECK(code_of(bad_key.error()) == errc::invalid_argument);
  }

  TEST_CASE("a server that is down is a clear error, quickly") {
    auto t0 = std::chrono::steady_clock::now();
    auto db = postgres_adapter::open(
        {"host=127.0.0.1 port=1 user=postgres dbname=postgres"});
    REQUIRE_FALSE(db);
    CHECK(code_of(db.error()) == errc::database_unavailable);
    CHECK(describe(db.error()).find("cannot connect to PostgreSQL") !=
          std::string::npos);
    CHECK(std::chrono::steady_clock::now() - t0 < 15s);
  }

  TEST_CASE("wrong credentials are a clear error") {
    auto url = test::pg_url();
    auto db = postgres_adapter::open({url + " user=no_such_role_here"});
    REQUIRE_FALSE(db);
    CHECK(code_of(db.error()) == errc::database_unavailable);
    CHECK(describe(db.error()).find("no_such_role_here") != std::string::npos);
  }

  TEST_CASE("a database without the schema says to run the migration") {
    test::pg_schema s;
    auto db = postgres_adapter::open({s.url()});
    REQUIRE(db);
    auto ok = (*db)->check_schema();
    REQUIRE_FALSE(ok);
    CHECK(code_of(ok.error()) == errc::schema_missing);
    CHECK(describe(ok.error()).find("migrate_up") != std::string::npos);
    auto j = (*db)->enqueue_job(job_request{"j"});
    REQUIRE_FALSE(j);
    CHECK(code_of(j.error()) == errc::schema_missing);
  }

  TEST_CASE("a schema newer than the code is refused") {
    test::pg_schema s;
    open_migrated(s);
    {
      pqxx::connection c{s.url()};
      pqxx::work tx{c};
      tx.exec("INSERT INTO bg_jobs_migrations (version) VALUES (99)");
      tx.commit();
    }
    auto db = postgres_adapter::open({s.url()});
    REQUIRE_FALSE(db);
    CHECK(code_of(db.error()) == errc::schema_too_new);
  }

  TEST_CASE("a job enqueued in the application's transaction exists iff it "
            "commits") {
    test::pg_schema s;
    auto db = open_migrated(s);
    pqxx::connection app{s.url()};
    {
      pqxx::work tx{app};
      auto j =
          postgres_adapter::enqueue_in(tx, job_request{"kept", {{"n", 1}}});
      REQUIRE_MESSAGE(j, test::why(j));
      CHECK(db->get_enqueued_jobs("kept")->empty());
      tx.commit();
    }
    {
      pqxx::work tx{app};
      REQUIRE(postgres_adapter::enqueue_in(tx, job_request{"dropped"}));
      tx.abort();
    }
    auto kept = db->get_enqueued_jobs("kept");
    REQUIRE(kept);
    REQUIRE(kept->size() == 1);
    CHECK(kept->front().payload == nlohmann::json{{"n", 1}});
    CHECK(db->get_enqueued_jobs("dropped")->empty());
    pqxx::work tx{app};
    auto bad = postgres_adapter::enqueue_in(tx, job_request{""});
    REQUIRE_FALSE(bad);
    CHECK(code_of(bad.error()) == errc::invalid_job_name);
  }

  TEST_CASE("an enqueue on one connection wakes a listener on another") {
    test::pg_schema s;
    auto listener = open_migrated(s);
    auto producer = postgres_adapter::open({s.url()});
    REQUIRE(producer);
    REQUIRE(listener->caps().supports_listen_notify);
    auto none = listener->await_wakeups(10ms);
    REQUIRE(none);
    CHECK(none->empty());
    REQUIRE((*producer)->enqueue_job(job_request{"wake_me"}));
    REQUIRE((*producer)->enqueue_jobs(
        {job_request{"a"}, job_request{"b"}, job_request{"a"}}));
    std::set<std::string> names;
    CHECK(test::eventually([&] {
      auto got = listener->await_wakeups(100ms);
      REQUIRE(got);
      names.insert(got->begin(), got->end());
      return names.size() >= 3;
    }));
    CHECK(names == std::set<std::string>{"a", "b", "wake_me"});
  }

  TEST_CASE("bulk enqueue stores thousands of jobs in one call") {
    test::pg_schema s;
    auto db = open_migrated(s);
    std::vector<job_request> reqs;
    for (int i = 0; i < 5000; ++i)
      reqs.emplace_back("bulk", nlohmann::json{{"seq", i}});
    auto ids = db->enqueue_jobs(reqs);
    REQUIRE_MESSAGE(ids, test::why(ids));
    REQUIRE(ids->size() == 5000);
    CHECK(std::is_sorted(ids->begin(), ids->end()));
    auto first = db->reserve_jobs({{"bulk"}, 1, "o", ""});
    REQUIRE(first);
    CHECK(first->front().payload["seq"] == 0);
    CHECK(db->stats()->available == 4999);
  }

  TEST_CASE("a terminated backend is reported as a lost connection") {
    test::pg_schema s;
    auto db = open_migrated(s);
    REQUIRE(db->enqueue_job(job_request{"j"}));
    {
      pqxx::connection admin{test::pg_url()};
      pqxx::work tx{admin};
      tx.exec_params("SELECT pg_terminate_backend($1)", db->backend_pid());
      tx.commit();
    }
    auto r = db->reserve_jobs({{"j"}, 1, "o", ""});
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::connection_lost);
    auto again = postgres_adapter::open({s.url()});
    REQUIRE(again);
    auto got = (*again)->reserve_jobs({{"j"}, 1, "o", ""});
    REQUIRE(got);
    CHECK(got->size() == 1);
  }

} // TEST_SUITE
