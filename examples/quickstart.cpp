// Quickstart: a CAF application that runs bg_jobs on an embedded SQLite
// file. It registers two workers, enqueues jobs (from plain code and from an
// actor), prints every event, waits until the jobs are done, shuts down
// gracefully and exits 0.
//
//   quickstart [path/to/jobs.db]
//   quickstart --pg "host=... dbname=..."    (or set BG_JOBS_PG_URL)
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>

#include <bg_jobs/actors/builder.hpp>
#include <bg_jobs/actors/logger_listener.hpp>
#include <bg_jobs/actors/messages.hpp>
#include <bg_jobs/actors/system_config.hpp>
#include <bg_jobs/adapters/postgres/postgres_adapter.hpp>
#include <bg_jobs/adapters/sqlite/sqlite_adapter.hpp>
#include <bg_jobs/core/errc.hpp>

using namespace std::chrono_literals;

namespace {

/// Counts finished jobs so that main can wait for them.
struct finished_jobs {
  std::mutex mtx;
  std::condition_variable cv;
  int count = 0;

  void on_event(const bg_jobs::event& e) {
    if (e.kind != bg_jobs::event_kind::job_succeeded &&
        e.kind != bg_jobs::event_kind::job_failed)
      return;
    std::lock_guard<std::mutex> guard{mtx};
    ++count;
    cv.notify_all();
  }

  bool wait_for(int n, std::chrono::seconds limit) {
    std::unique_lock<std::mutex> guard{mtx};
    return cv.wait_for(guard, limit, [&] { return count >= n; });
  }
};

int run(caf::actor_system& sys, const bg_jobs::adapter_factory& store) {
  finished_jobs finished;
  int attempts_of_flaky = 0;
  auto spec =
      bg_jobs::queue_spec{"default"}
          .with_max_concurrent_jobs(4)
          .with_max_retries(2)
          .with_backoff(bg_jobs::backoff::constant(50ms))
          .with_worker(bg_jobs::worker{"send_email",
                                       [](const bg_jobs::job& j) {
                                         std::cout << "  -> sending email to "
                                                   << j.payload.value("to", "?")
                                                   << std::endl;
                                       }})
          .with_worker(bg_jobs::worker{
              "flaky", [&](const bg_jobs::job&) -> bg_jobs::outcome {
                if (++attempts_of_flaky < 2)
                  return bg_jobs::outcome::failure("the mail server is busy");
                return bg_jobs::outcome::success();
              }});
  auto bg = bg_jobs::builder{store}
                .with_node_name("quickstart")
                .with_migrations()
                .with_event_listener(bg_jobs::logger_listener(std::cout))
                .with_event_listener(
                    [&](const bg_jobs::event& e) { finished.on_event(e); })
                .with_queue(spec)
                .build(sys);
  if (!bg) {
    std::cerr << "cannot start bg_jobs: " << bg_jobs::describe(bg.error())
              << std::endl;
    return EXIT_FAILURE;
  }
  // From plain code: the blocking convenience call.
  for (auto to : {"ada@example.com", "grace@example.com"})
    if (auto j = bg->enqueue(bg_jobs::job_request{"send_email", {{"to", to}}});
        !j) {
      std::cerr << bg_jobs::describe(j.error()) << std::endl;
      return EXIT_FAILURE;
    }
  bg->enqueue(bg_jobs::job_request{"send_email", {{"to", "later@example.com"}}}
                  .available_in(300ms));
  bg->enqueue(bg_jobs::job_request{"flaky"});
  // An unknown job name is refused, and nothing is stored.
  auto unknown = bg->enqueue(bg_jobs::job_request{"does_not_exist"});
  std::cout << "unknown job: " << bg_jobs::describe(unknown.error())
            << std::endl;
  // From an actor: send the enqueue message and get the stored job back.
  sys.spawn([root = bg->actor()](caf::event_based_actor* self) {
    self->request(
            root, 5s, bg_jobs::enqueue_atom::value,
            bg_jobs::job_request{"send_email", {{"to", "actor@example.com"}}})
        .then([](const bg_jobs::job& j) {
          std::cout << "an actor enqueued job " << j.id << std::endl;
        });
  });
  bool done = finished.wait_for(5, 20s);
  auto stopped = bg->shutdown();
  if (!done || !stopped) {
    std::cerr << "the jobs did not finish in time" << std::endl;
    return EXIT_FAILURE;
  }
  std::cout << "all 5 jobs finished; bg_jobs stopped cleanly" << std::endl;
  return EXIT_SUCCESS;
}

} // namespace

int main(int argc, char** argv) {
  std::string path = "bg_jobs_quickstart.db";
  std::string pg_url;
  if (auto env = std::getenv("BG_JOBS_PG_URL"))
    pg_url = env;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--pg" && i + 1 < argc)
      pg_url = argv[++i];
    else
      path = arg;
  }
  auto store = pg_url.empty() ? bg_jobs::sqlite_adapter::factory({path})
                              : bg_jobs::postgres_adapter::factory({pg_url});
  std::cout << "store: "
            << (pg_url.empty() ? "SQLite file " + path
                               : std::string{"PostgreSQL"})
            << std::endl;
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  bg_jobs::configure(cfg);
  int rc;
  {
    caf::actor_system sys{cfg};
    rc = run(sys, store);
  }
  return rc;
}
