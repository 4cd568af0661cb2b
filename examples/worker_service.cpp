// A long-running worker service: it runs until SIGTERM or SIGINT, then
// stops gracefully (running jobs get their grace period, jobs held ahead go
// back to the table) and exits 0, or 1 if it could not stop in time. Start
// several on one store to share its jobs; enqueue from anywhere (the
// command line, another process, `instance::enqueue`).
//
//   worker_service NODE_NAME STORE        (a SQLite path or a PostgreSQL URL)
//   bg_jobs --store STORE enqueue resize_image '{"path":"a.png","width":64}'
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

#include <pthread.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <bg_jobs/actors/builder.hpp>
#include <bg_jobs/actors/logger_listener.hpp>
#include <bg_jobs/actors/system_config.hpp>
#include <bg_jobs/adapters/postgres/postgres_adapter.hpp>
#include <bg_jobs/adapters/sqlite/sqlite_adapter.hpp>
#include <bg_jobs/core/errc.hpp>
#include <bg_jobs/core/typed_job.hpp>

using namespace std::chrono_literals;

namespace {

struct resize_image {
  static constexpr const char* job_name = "resize_image";
  std::string path;
  int width = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(resize_image, path, width)

bool is_postgres(const std::string& store) {
  return store.rfind("postgres", 0) == 0 || store.find("dbname=") != std::string::npos;
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: worker_service NODE_NAME STORE" << std::endl;
    return 2;
  }
  std::string node = argv[1];
  std::string store = argv[2];
  // Block the stop signals before any thread starts: every thread inherits
  // the mask, and this one takes them with sigwait.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  auto factory = is_postgres(store) ? bg_jobs::postgres_adapter::factory({store})
                                    : bg_jobs::sqlite_adapter::factory({store});
  caf::actor_system_config cfg;
  bg_jobs::configure(cfg);
  caf::actor_system sys{cfg};
  std::atomic<int> ran{0};
  auto bg =
      bg_jobs::builder{factory}
          .with_node_name(node)
          .with_migrations()
          .with_event_listener(bg_jobs::logger_listener(std::cout))
          .with_queue(bg_jobs::queue_spec{"images"}
                          .with_max_concurrent_jobs(4)
                          .with_worker(bg_jobs::typed_worker<resize_image>(
                              [&](const resize_image& r) {
                                ++ran;
                                // One write per line: handlers run on
                                // several threads.
                                std::cout << node + " resized " + r.path +
                                                 " to " +
                                                 std::to_string(r.width) + "\n"
                                          << std::flush;
                              })))
          .build(sys);
  if (!bg) {
    std::cerr << "cannot start: " << bg_jobs::describe(bg.error()) << std::endl;
    return 1;
  }
  std::cout << node << " ready" << std::endl;
  int sig = 0;
  sigwait(&stop, &sig);
  std::cout << node << " stopping on signal " << sig << std::endl;
  auto stopped = bg->shutdown(30s);
  std::cout << node << " ran " << ran.load() << " jobs" << std::endl;
  return stopped ? 0 : 1;
}
