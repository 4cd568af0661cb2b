// A handler's own writes and its job's completion in one transaction of the
// application's, on every store: both commit or neither does; a rolled-back
// attempt is retried; a job rescued while its handler ran has the handler's
// writes rolled back; a process killed between the write and the commit
// leaves neither.
#include <atomic>
#include <csignal>
#include <mutex>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/runtime_fixture.hpp"
#include "support/app_connection.hpp"
#include "support/expect.hpp"
#include "support/store_reads.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;
using test::runtime_fixture;

namespace {

using test::error_of;
using test::require_ok;
using test::value_of;

queue_spec ledger_queue(worker w) {
  return queue_spec{"ledger"}
      .with_poll_interval(20ms)
      .with_max_retries(3)
      .with_backoff(backoff::immediate())
      .with_worker(std::move(w));
}

size_t follow_ups(db_adapter& db) {
  return value_of(test::all_in(db, job_state::waiting, {"follow_up"})).size();
}

} // namespace

TEST_SUITE("application transactions") {

  BG_JOBS_RUNTIME_CASE("a handler's writes and its job's completion commit "
                       "together, and an attempt rolled back is retried") {
    auto app = test::app_connection::open(*the_store);
    std::mutex mtx;
    std::unique_ptr<test::app_connection> handler_db;
    auto w = worker{"pay", [&](const job& j) -> outcome {
                      std::lock_guard<std::mutex> guard{mtx};
                      if (!handler_db)
                        handler_db = test::app_connection::open(*the_store);
                      auto note = "attempt " + std::to_string(j.attempts);
                      if (j.attempts == 1) {
                        // Writes, completes, then fails before the commit:
                        // the transaction rolls back, completion included.
                        REQUIRE(handler_db->write_and_complete(j, note, true));
                        throw std::runtime_error("failed before the commit");
                      }
                      REQUIRE(handler_db->write_and_complete(j, note));
                      return outcome::committed();
                    }};
    auto bg = start(make_builder().with_queue(ledger_queue(w)));
    auto j = value_of(bg.enqueue(job_request{"pay"}));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    CHECK(app->notes() == std::vector<std::string>{"attempt 2"});
    auto db = store();
    CHECK(follow_ups(*db) == 1);
    auto rec = value_of(db->get_job(j.id));
    CHECK(rec.state == job_state::succeeded);
    CHECK(rec.attempts == 2);
    CHECK(log.count(event_kind::job_exception) == 1);
    // The runtime found the job already done: no lost reservation reported.
    CHECK(log.count(event_kind::queue_error) == 0);
    require_ok(bg.shutdown());
  }

  BG_JOBS_RUNTIME_CASE("a handler whose job was rescued while it ran has its "
                       "writes rolled back with a clear error") {
    auto app = test::app_connection::open(*the_store);
    std::mutex mtx;
    caf::error refused;
    std::unique_ptr<test::app_connection> handler_db;
    auto w = worker{"pay", [&](const job& j) -> outcome {
                      std::lock_guard<std::mutex> guard{mtx};
                      handler_db = test::app_connection::open(*the_store);
                      // Rescued meanwhile, and claimed by another node.
                      app->exec("UPDATE jobs SET reserved_by = 'elsewhere/q/9'"
                                " WHERE id = " +
                                std::to_string(j.id));
                      auto done = handler_db->write_and_complete(
                          j, "lost attempt", false, true);
                      if (done)
                        return outcome::committed();
                      refused = done.error();
                      return outcome::failure(describe(done.error()));
                    }};
    auto bg = start(make_builder().with_queue(ledger_queue(w)));
    auto j = value_of(bg.enqueue(job_request{"pay"}));
    // The handler's failure finds the job another node's.
    REQUIRE(log.wait_for(event_kind::queue_error));
    {
      std::lock_guard<std::mutex> guard{mtx};
      REQUIRE(refused);
      CHECK(code_of(refused) == errc::reservation_lost);
      CHECK(describe(refused).find("no longer reserved") != std::string::npos);
    }
    CHECK(app->notes().empty());
    auto db = store();
    CHECK(follow_ups(*db) == 0);
    auto rec = value_of(db->get_job(j.id));
    CHECK(rec.state == job_state::running);
    CHECK(rec.reserved_by == "elsewhere/q/9");
    require_ok(bg.shutdown());
  }
}

TEST_SUITE("application transactions") {

  TEST_CASE_TEMPLATE("a process killed between its writes and their commit "
                     "leaves neither, and the job is still to do",
                     S, test::sqlite_store, test::postgres_store) {
    S store;
    auto db = store.fresh();
    value_of(db->enqueue_job(job_request{"pay"}));
    auto claimed = value_of(db->reserve_jobs({{"pay"}, 1, "n/q/1", ""}));
    REQUIRE(claimed.size() == 1);
    auto j = claimed[0];
    auto app = test::app_connection::open(store);
    auto pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // The child: its own connection; writes, completes, and is killed
      // before it commits. No doctest here; it may not outlive 30 s.
      alarm(30);
      try {
        if (std::string{store.store_name()} == "sqlite") {
          sqlite3* c = nullptr;
          sqlite3_open_v2(store.location().c_str(), &c, SQLITE_OPEN_READWRITE,
                          nullptr);
          sqlite3_busy_timeout(c, 10000);
          sqlite3_exec(c, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
          sqlite3_exec(c, "INSERT INTO ledger (note) VALUES ('killed')",
                       nullptr, nullptr, nullptr);
          if (!sqlite_adapter::complete_in(c, j))
            _exit(3);
        } else {
          pqxx::connection c{store.location()};
          pqxx::work tx{c};
          tx.exec("INSERT INTO ledger (note) VALUES ('killed')");
          if (!postgres_adapter::complete_in(tx, j))
            _exit(3);
          raise(SIGKILL);
        }
        raise(SIGKILL);
      } catch (...) {
        _exit(4);
      }
      _exit(5);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    CHECK(app->notes().empty());
    auto rec = value_of(db->get_job(j.id));
    CHECK(rec.state == job_state::running);
    // Still the claim's: its handler (or a rescue) finishes it.
    REQUIRE(app->write_and_complete(j, "done"));
    CHECK(app->notes() == std::vector<std::string>{"done"});
    CHECK(value_of(db->get_job(j.id)).state == job_state::succeeded);
    // Once done, a second completion is refused and writes nothing.
    auto again = app->write_and_complete(j, "twice", false, true);
    CHECK(error_of(again) == errc::reservation_lost);
    CHECK(app->notes() == std::vector<std::string>{"done"});
  }

  TEST_CASE_TEMPLATE("a completion in the application's transaction is "
                     "refused when a cancel was asked, or misused",
                     S, test::sqlite_store, test::postgres_store) {
    S store;
    auto db = store.fresh();
    value_of(db->enqueue_job(job_request{"pay"}));
    auto j = value_of(db->reserve_jobs({{"pay"}, 1, "n/q/1", ""})).at(0);
    value_of(db->cancel_job(j.id, "stop"));
    auto app = test::app_connection::open(store);
    auto asked = app->write_and_complete(j, "cancelled", false, true);
    CHECK(error_of(asked) == errc::reservation_lost);
    CHECK(describe(asked.error()).find("asked to cancel") != std::string::npos);
    CHECK(app->notes().empty());
    // A job that is not reserved is no job a handler runs.
    job unreserved = j;
    unreserved.reserved_by.reset();
    if (std::string{store.store_name()} == "sqlite") {
      sqlite3* c = nullptr;
      REQUIRE(sqlite3_open_v2(store.location().c_str(), &c,
                              SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
      // Outside a transaction, and unreserved: refused, nothing done.
      CHECK(error_of(sqlite_adapter::complete_in(c, j)) ==
            errc::invalid_argument);
      sqlite3_exec(c, "BEGIN", nullptr, nullptr, nullptr);
      CHECK(error_of(sqlite_adapter::complete_in(c, unreserved)) ==
            errc::invalid_argument);
      CHECK(error_of(sqlite_adapter::complete_in(c, j, "bad prefix")) ==
            errc::invalid_argument);
      sqlite3_exec(c, "ROLLBACK", nullptr, nullptr, nullptr);
      sqlite3_close_v2(c);
    } else {
      pqxx::connection c{store.location()};
      pqxx::work tx{c};
      CHECK(error_of(postgres_adapter::complete_in(tx, unreserved)) ==
            errc::invalid_argument);
      CHECK(error_of(postgres_adapter::complete_in(tx, j, "bad schema")) ==
            errc::invalid_argument);
    }
    CHECK(value_of(db->get_job(j.id)).state == job_state::running);
  }
}
