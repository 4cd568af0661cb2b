// The handler's own transaction: a handler writes its results to the
// application's table, enqueues a follow-up and records its job's success
// in one transaction on the application's own connection to the store, so
// that all of it commits or none of it does.
#include <future>
#include <iostream>
#include <mutex>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <sqlite3.h>

#include <bg_jobs/actors/builder.hpp>
#include <bg_jobs/adapters/sqlite/sqlite_adapter.hpp>
#include <bg_jobs/core/errc.hpp>

using namespace std::chrono_literals;

namespace {

bool exec(sqlite3* db, const char* sql) {
  return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK;
}

} // namespace

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "transactional_completion.db";
  // The application's connection to the same file, and its own table.
  sqlite3* app = nullptr;
  if (sqlite3_open(path.c_str(), &app) != SQLITE_OK)
    return 1;
  sqlite3_busy_timeout(app, 5000);
  exec(app, "CREATE TABLE IF NOT EXISTS payments (order_id INTEGER)");
  std::mutex app_mtx; // one handler at a time on the connection
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::promise<void> done;
  auto bg =
      bg_jobs::builder{bg_jobs::sqlite_adapter::factory({path})}
          .with_migrations()
          .with_enqueued_job_names({"receipt"})
          .with_event_listener([&](const bg_jobs::event& e) {
            if (e.kind == bg_jobs::event_kind::job_succeeded)
              done.set_value();
          })
          .with_queue(bg_jobs::queue_spec{"payments"}.with_worker(
              bg_jobs::worker{"charge", [&](const bg_jobs::job& j) {
                std::lock_guard<std::mutex> guard{app_mtx};
                if (!exec(app, "BEGIN IMMEDIATE"))
                  return bg_jobs::outcome::failure(sqlite3_errmsg(app));
                auto order = j.payload.value("order", int64_t{0});
                auto insert = "INSERT INTO payments (order_id) VALUES (" +
                              std::to_string(order) + ")";
                exec(app, insert.c_str());
                bg_jobs::sqlite_adapter::enqueue_in(
                    app, bg_jobs::job_request{"receipt", {{"order", order}}});
                // Only while the job is still this handler's; otherwise the
                // transaction is rolled back here, writes included.
                if (auto ok = bg_jobs::sqlite_adapter::complete_in(app, j); !ok)
                  return bg_jobs::outcome::failure(
                      bg_jobs::describe(ok.error()));
                if (!exec(app, "COMMIT")) {
                  exec(app, "ROLLBACK");
                  return bg_jobs::outcome::failure("the commit failed");
                }
                return bg_jobs::outcome::committed();
              }}))
          .build(sys);
  if (!bg) {
    std::cerr << bg_jobs::describe(bg.error()) << std::endl;
    return 1;
  }
  auto j = bg->enqueue(bg_jobs::job_request{"charge", {{"order", 1001}}});
  if (!j || done.get_future().wait_for(10s) != std::future_status::ready)
    return 1;
  auto record = bg->get_job(j->id);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(app, "SELECT count(*) FROM payments WHERE order_id = 1001",
                     -1, &s, nullptr);
  sqlite3_step(s);
  auto rows = sqlite3_column_int(s, 0);
  sqlite3_finalize(s);
  std::cout << "job " << j->id << " is "
            << (record ? to_string(record->state) : "unknown") << "; "
            << rows << " payment row(s) for order 1001" << std::endl;
  bg->shutdown();
  sqlite3_close(app);
  return record && record->state == bg_jobs::job_state::succeeded &&
                 rows >= 1
             ? 0
             : 1;
}
