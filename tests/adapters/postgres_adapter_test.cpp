// Cases only the PostgreSQL adapter has: connection strings, the server,
// transactional enqueue, notifications and dropped connections.
#include <algorithm>
#include <set>
#include <thread>

#include <doctest/doctest.h>
#include <pqxx/pqxx>

#include "adapters/stores.hpp"
#include "bg_jobs/adapters/postgres/detail/postgres_internal.hpp"
#include "bg_jobs/maintenance/maintenance.hpp"
#include "support/expect.hpp"
#include "support/store_reads.hpp"
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

/// Runs statements on a connection of its own, outside a transaction.
class sql_runner {
public:
  explicit sql_runner(const std::string& url) : conn_(url) {}

  void operator()(const std::string& text) {
    pqxx::nontransaction tx{conn_};
    tx.exec(text);
  }

private:
  pqxx::connection conn_;
};

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
      CHECK(test::enqueued(*db, "kept")->empty());
      tx.commit();
    }
    {
      pqxx::work tx{app};
      REQUIRE(postgres_adapter::enqueue_in(tx, job_request{"dropped"}));
      tx.abort();
    }
    auto kept = test::enqueued(*db, "kept");
    REQUIRE(kept);
    REQUIRE(kept->size() == 1);
    CHECK(kept->front().payload == nlohmann::json{{"n", 1}});
    CHECK(test::enqueued(*db, "dropped")->empty());
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

  TEST_CASE("the store's clock is read to within half a round trip") {
    // Every process reads the store's time from its own measurement of the
    // server's clock; they must agree closely enough that a job one
    // enqueues for now is due for the claim another makes on its
    // notification. The server runs on this host, on the same clock: the
    // true offset is zero, and a measurement is off by at most half its
    // quickest round trip (plus the microsecond of rounding). A loaded
    // machine makes round trips slow: measure until one is quick.
    pqxx::connection conn{test::pg_url()};
    detail::postgres::server_clock time;
    int64_t trip = 0;
    for (int i = 0; i < 100; ++i)
      if ((trip = time.measure(conn)) < 2'000)
        break;
    INFO("round trip " << trip << " us, offset " << time.offset_us()
                       << " us");
    CHECK(std::abs(time.offset_us()) <= trip / 2 + 1);
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

  TEST_CASE("a limited claim whose statement fails is rolled back whole, its "
            "successes are then recorded on their own, and the connection "
            "serves the next claim") {
    test::pg_schema s;
    auto db = open_migrated(s);
    REQUIRE(db->set_limits("q", {{limit_kind::per_key, "", 2}}));
    for (int i = 0; i < 4; ++i)
      REQUIRE(db->enqueue_job(std::move(
          job_request{"work"}.with_concurrency_key("k" + std::to_string(i % 2)))));
    reserve_params p{{"work"}, 2, "node/q/1", "q"};
    p.limited = true;
    auto first = db->reserve_jobs(p);
    REQUIRE_MESSAGE(first, test::why(first));
    REQUIRE(first->size() == 2);
    // Every reservation from now on raises an error inside the claim's
    // statement, after the successes that came with it were deleted.
    sql_runner sql{s.url()};
    sql("CREATE FUNCTION refuse_claims() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'claims refused'; END $$");
    sql("CREATE TRIGGER refuse_claims BEFORE UPDATE ON jobs FOR EACH ROW"
        " WHEN (OLD.reserved_by IS NULL AND NEW.reserved_by IS NOT NULL)"
        " EXECUTE FUNCTION refuse_claims()");
    completion done;
    done.job_id = (*first)[0].id;
    done.reserved_by = "node/q/1";
    auto r = db->complete_and_reserve({done}, p);
    REQUIRE_MESSAGE(r, test::why(r));
    CHECK(r->applied == std::vector<bool>{true});
    REQUIRE(r->reserve_error);
    CHECK(describe(r->reserve_error).find("claims refused") !=
          std::string::npos);
    CHECK(r->reserved.empty());
    auto st = db->stats();
    REQUIRE(st);
    CHECK(st->succeeded == 1);
    CHECK(st->reserved == 1);
    CHECK(st->available == 2);
    sql("DROP TRIGGER refuse_claims ON jobs");
    // The same connection: no transaction was left open, no lock held.
    auto next = db->reserve_jobs(p);
    REQUIRE_MESSAGE(next, test::why(next));
    CHECK(next->size() == 2);
  }

  TEST_CASE("the claim walks the claim index, with the plan made for its "
            "parameters or the generic one, on an empty, a full and a "
            "bloated table, and so does a limited queue's claim") {
    test::pg_schema s;
    auto db = open_migrated(s);
    sql_runner sql{s.url()};
    reserve_params claim{{"j"}, 10, "node/q/1", "q"};
    auto check_limited_plans = [&](const char* table) {
      auto plans = test::value_of(db->explain_limited_claims(claim, "api"));
      REQUIRE(plans.size() == 2);
      for (auto& plan : plans) {
        INFO(std::string{table} << ", limited claim, generic plan:\n" << plan);
        // The candidates in index order, stopping after the scan's limit
        // (the ranking sorts only them); the held slots from the index of
        // reservations; the reservation by id.
        CHECK(plan.find("Index Scan using jobs_claim_idx on jobs c") !=
              std::string::npos);
        CHECK(plan.find("Sort Key: c.priority") == std::string::npos);
        CHECK(plan.find("using jobs_reserved_by_idx") != std::string::npos);
        CHECK(plan.find("Bitmap") == std::string::npos);
        CHECK(plan.find("Seq Scan") == std::string::npos);
        CHECK(plan.find("Hash Join") == std::string::npos);
        CHECK(plan.find("Merge Join") == std::string::npos);
        CHECK(plan.find("Index Cond: (id = ANY") != std::string::npos);
      }
    };
    auto check_plans = [&](const char* table) {
      check_limited_plans(table);
      for (bool generic : {false, true}) {
        auto plans = test::value_of(db->explain_claims(claim, generic));
        REQUIRE(plans.size() == 4);
        for (auto& plan : plans) {
          INFO(std::string{table} << (generic ? ", generic plan:\n" : ", custom plan:\n")
                     << plan);
          // In order, stopping after the limit: no sort of every waiting
          // row, no bitmap or sequential scan of the table, and the
          // update finds its rows by id (no join that reruns the claim).
          CHECK(plan.find("Index Scan using jobs_claim_idx") !=
                std::string::npos);
          CHECK(plan.find("Sort") == std::string::npos);
          CHECK(plan.find("Bitmap") == std::string::npos);
          CHECK(plan.find("Seq Scan") == std::string::npos);
          CHECK(plan.find("Join") == std::string::npos);
          CHECK(plan.find("Index Cond: (id = ANY") != std::string::npos);
        }
      }
    };
    auto insert = [&](int n) {
      sql("INSERT INTO jobs (name, payload, created_at, available_at)"
          " SELECT 'j', repeat('x', 250), now(), now() - interval '1 hour'"
          "   + g * interval '1 ms' FROM generate_series(1, " +
          std::to_string(n) + ") g");
    };
    check_plans("empty");
    sql("ANALYZE jobs");
    check_plans("empty, analyzed");
    insert(20000);
    sql("ANALYZE jobs");
    check_plans("full");
    // What ANALYZE sees right after a vacuum in a queue that keeps up: a
    // few live rows in many pages. Then a backlog arrives.
    sql("DELETE FROM jobs WHERE id > (SELECT min(id) + 1 FROM jobs)");
    sql("ANALYZE jobs");
    insert(5000);
    check_plans("bloated");
    // And the claim so planned takes the oldest jobs first.
    auto got = test::value_of(db->reserve_jobs(claim));
    REQUIRE(got.size() == 10);
    auto first = test::value_of(test::running(*db));
    CHECK(got.front().id == std::min_element(first.begin(), first.end(),
                                             [](auto& a, auto& b) {
                                               return a.id < b.id;
                                             })
                                ->id);
  }

  TEST_CASE("history past 100,000 rows is counted from the statistics, "
            "and says so (below it, exactly)") {
    test::pg_schema s;
    auto db = open_migrated(s);
    sql_runner sql{s.url()};
    // 3 succeeded and 2 failed (1 cancelled) jobs: counted exactly.
    sql("INSERT INTO jobs_succeeded (id, name, payload, attempts, created_at,"
        " available_at, succeeded_at) SELECT g, 'small', '{}', 1, now(),"
        " now(), now() FROM generate_series(1, 3) g");
    sql("INSERT INTO jobs_failed (id, name, payload, attempts, exception,"
        " created_at, available_at, failed_at, cancelled) SELECT g, 'small',"
        " '{}', 1, 'x', now(), now(), now(), g = 5"
        " FROM generate_series(4, 5) g");
    sql("ANALYZE jobs_succeeded; ANALYZE jobs_failed");
    auto exact = test::value_of(db->stats());
    CHECK_FALSE(exact.history_estimated);
    CHECK(exact.succeeded == 3);
    CHECK(exact.failed == 1);
    CHECK(exact.cancelled == 1);
    // 150,000 more succeeded, two thirds of them named "big".
    sql("INSERT INTO jobs_succeeded (id, name, payload, attempts, created_at,"
        " available_at, succeeded_at) SELECT g, CASE WHEN g % 3 = 0 THEN"
        " 'other' ELSE 'big' END, '{}', 1, now(), now(), now()"
        " FROM generate_series(10, 150009) g");
    sql("ANALYZE jobs_succeeded");
    auto st = test::value_of(db->stats());
    CHECK(st.history_estimated);
    CHECK(st.succeeded > 140000);
    CHECK(st.succeeded < 160000);
    CHECK(st.failed == 1); // its own table is small: exact
    CHECK(st.cancelled == 1);
    auto names = test::value_of(db->stats_by_name());
    auto big = std::find_if(names.begin(), names.end(),
                            [](auto& n) { return n.name == "big"; });
    REQUIRE(big != names.end());
    CHECK(big->counts.history_estimated);
    CHECK(big->counts.succeeded > 90000);
    CHECK(big->counts.succeeded < 110000);
  }

  TEST_CASE("jobs is vacuumed once enough of it is dead, and a held snapshot "
            "raises the bar instead of vacuuming in a loop") {
    // A database of its own: a transaction open in another test would keep
    // the dead rows of this one too.
    test::pg_database d;
    auto opened = postgres_adapter::open({d.url()});
    REQUIRE_MESSAGE(opened, test::why(opened));
    auto db = std::move(*opened);
    test::require_ok(db->migrate_up());
    pqxx::connection admin{d.url()};
    // Stores and deletes `n` jobs in a transaction that flushes its
    // statistics.
    auto churn = [&](int n) {
      pqxx::work tx{admin};
      tx.exec("INSERT INTO jobs (name, payload, created_at, available_at)"
              " SELECT 'j', '{}', now(), now() FROM generate_series(1, " +
              std::to_string(n) + ")");
      tx.exec("DELETE FROM jobs");
      tx.exec("SELECT pg_stat_force_next_flush()");
      tx.commit();
    };
    churn(3000);
    auto few = test::value_of(db->vacuum_jobs(10000));
    CHECK(few.dead_rows >= 3000);
    CHECK_FALSE(few.vacuumed);
    // Every dead row goes (an autovacuum's ANALYZE of this database may
    // hold a snapshot for a moment: then the next try).
    CHECK(test::eventually(
        [&] {
          auto r = test::value_of(db->vacuum_jobs(1));
          return r.vacuumed && r.dead_rows_after == 0;
        },
        30s));
    // A snapshot open elsewhere keeps the next dead rows.
    pqxx::connection reader{d.url()};
    pqxx::transaction<pqxx::repeatable_read> held{reader};
    held.exec("SELECT count(*) FROM jobs");
    churn(3000);
    vacuum_service vacuum{{1000, 1s}};
    CHECK(vacuum.run_once(*db, utc_now()).vacuumed);
    CHECK(vacuum.bar() >= 6000);
    // Below the raised bar, within ten intervals: no vacuum.
    CHECK_FALSE(vacuum.run_once(*db, utc_now()).vacuumed);
    held.commit();
    churn(3000);
    // At the raised bar, with the snapshot gone, the bar comes down.
    CHECK(test::eventually(
        [&] {
          vacuum.run_once(*db, utc_now());
          return vacuum.bar() == 1000;
        },
        30s));
    CHECK(test::value_of(db->vacuum_jobs(1)).dead_rows < 1000);
  }

} // TEST_SUITE
