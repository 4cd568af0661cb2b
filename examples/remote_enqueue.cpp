// Enqueue from another process over CAF's middleman. The worker process
// publishes its bg_jobs actor on 127.0.0.1; the web process, which has no
// store of its own, connects with remote_actor and sends the same messages
// a local actor would.
//
//   remote_enqueue worker DB PORT_FILE   runs jobs; writes the port to
//                                        PORT_FILE, exits 0 once 3 jobs ran
//                                        and PORT_FILE.done exists (the web
//                                        process has finished)
//   remote_enqueue web PORT              enqueues 3 jobs, checks errors
#include <fstream>
#include <iostream>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include <bg_jobs/actors/builder.hpp>
#include <bg_jobs/actors/messages.hpp>
#include <bg_jobs/adapters/sqlite/sqlite_adapter.hpp>
#include <bg_jobs/core/errc.hpp>

using namespace std::chrono_literals;

namespace {

int worker(const std::string& db, const std::string& port_file) {
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  bg_jobs::add_message_types(cfg);
  caf::actor_system sys{cfg};
  std::atomic<int> done{0};
  auto bg = bg_jobs::builder{bg_jobs::sqlite_adapter::factory({db})}
                .with_migrations()
                .with_remote(0) // any free port on 127.0.0.1
                .with_queue(bg_jobs::queue_spec{"mail"}.with_worker(
                    bg_jobs::worker{"welcome",
                                    [&](const bg_jobs::job& j) {
                                      std::cout << "worker: welcome mail to "
                                                << j.payload["user"]
                                                << std::endl;
                                      ++done;
                                    }}))
                .build(sys);
  if (!bg) {
    std::cerr << "worker: " << bg_jobs::describe(bg.error()) << std::endl;
    return 1;
  }
  std::ofstream{port_file + ".tmp"} << bg->remote_port() << "\n";
  std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  std::cout << "worker: listening on 127.0.0.1:" << bg->remote_port()
            << std::endl;
  // The web process still asks after its third job: the worker stays until
  // it is done.
  auto finished = [&] { return std::ifstream{port_file + ".done"}.good(); };
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while ((done < 3 || !finished()) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  auto stopped = bg->shutdown();
  return done == 3 && stopped ? 0 : 3;
}

int web(uint16_t port) {
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  bg_jobs::add_message_types(cfg);
  caf::actor_system sys{cfg};
  auto jobs = sys.middleman().remote_actor("127.0.0.1", port);
  if (!jobs) {
    std::cerr << "web: " << sys.render(jobs.error()) << std::endl;
    return 1;
  }
  caf::scoped_actor self{sys};
  int failures = 0;
  auto expect_job = [&](auto&&... xs) {
    self->request(*jobs, 10s, xs...)
        .receive(
            [&](const bg_jobs::job& j) {
              std::cout << "web: stored job " << j.id << std::endl;
            },
            [&](caf::error& err) {
              std::cerr << "web: " << bg_jobs::describe(err) << std::endl;
              ++failures;
            });
  };
  expect_job(bg_jobs::enqueue_atom::value,
             bg_jobs::job_request{"welcome", {{"user", "ada"}}});
  self->request(*jobs, 10s, bg_jobs::enqueue_atom::value,
                std::vector<bg_jobs::job_request>{
                    bg_jobs::job_request{"welcome", {{"user", "grace"}}},
                    bg_jobs::job_request{"welcome", {{"user", "linus"}}}})
      .receive(
          [&](const std::vector<int64_t>& ids) {
            std::cout << "web: stored " << ids.size() << " jobs" << std::endl;
            failures += ids.size() == 2 ? 0 : 1;
          },
          [&](caf::error& err) {
            std::cerr << "web: " << bg_jobs::describe(err) << std::endl;
            ++failures;
          });
  // Refusals come back as bg_jobs errors, with their message.
  self->request(*jobs, 10s, bg_jobs::enqueue_atom::value,
                bg_jobs::job_request{"no_such_job"})
      .receive([&](const bg_jobs::job&) { ++failures; },
               [&](caf::error& err) {
                 std::cout << "web: refused: " << bg_jobs::describe(err)
                           << std::endl;
                 failures +=
                     bg_jobs::code_of(err) == bg_jobs::errc::no_worker_for_job
                         ? 0
                         : 1;
               });
  self->request(*jobs, 10s, bg_jobs::lookup_atom::value, std::string{"mail"})
      .receive(
          [&](const caf::actor& queue) {
            std::cout << "web: queue 'mail' is "
                      << (queue ? "registered" : "unknown") << std::endl;
            failures += queue ? 0 : 1;
          },
          [&](caf::error& err) {
            std::cerr << "web: " << bg_jobs::describe(err) << std::endl;
            ++failures;
          });
  return failures == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "worker" && argc == 4)
    return worker(argv[2], argv[3]);
  if (mode == "web" && argc == 3)
    return web(static_cast<uint16_t>(std::stoi(argv[2])));
  std::cerr << "usage: remote_enqueue worker DB PORT_FILE\n"
               "       remote_enqueue web PORT"
            << std::endl;
  return 2;
}
