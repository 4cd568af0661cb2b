// Quickstart: stores jobs in an embedded SQLite file and walks one through
// its life: enqueue, reserve, complete, read back.
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include <bg_jobs/adapters/sqlite/sqlite_adapter.hpp>
#include <bg_jobs/core/errc.hpp>

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "bg_jobs_quickstart.db";
  auto db = bg_jobs::sqlite_adapter::open({path});
  if (!db) {
    std::cerr << bg_jobs::describe(db.error()) << '\n';
    return EXIT_FAILURE;
  }
  auto& store = **db;
  if (auto up = store.migrate_up(); !up) {
    std::cerr << bg_jobs::describe(up.error()) << '\n';
    return EXIT_FAILURE;
  }
  auto j = store.enqueue_job(
    bg_jobs::job_request{"send_email", {{"to", "ada@example.com"}}});
  if (!j) {
    std::cerr << bg_jobs::describe(j.error()) << '\n';
    return EXIT_FAILURE;
  }
  std::cout << "enqueued job " << j->id << " (" << j->name << ")\n";
  auto reserved = store.reserve_jobs({{"send_email"}, 10, "quickstart"});
  if (!reserved) {
    std::cerr << bg_jobs::describe(reserved.error()) << '\n';
    return EXIT_FAILURE;
  }
  for (auto& r : *reserved) {
    std::cout << "running job " << r.id << " for " << r.payload["to"] << '\n';
    if (auto done = store.move_job_to_succeeded(r); !done) {
      std::cerr << bg_jobs::describe(done.error()) << '\n';
      return EXIT_FAILURE;
    }
  }
  auto st = store.stats();
  std::cout << "succeeded so far: " << (st ? st->succeeded : -1) << '\n';
  return EXIT_SUCCESS;
}
