// Delayed jobs: run a job at a UTC time or after a delay.
#include <future>
#include <iostream>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <bg_jobs/actors/builder.hpp>
#include <bg_jobs/actors/system_config.hpp>
#include <bg_jobs/adapters/sqlite/sqlite_adapter.hpp>
#include <bg_jobs/core/errc.hpp>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "delayed_jobs.db";
  caf::actor_system_config cfg;
  bg_jobs::configure(cfg);
  caf::actor_system sys{cfg};
  std::promise<void> both_ran;
  int runs = 0;
  auto bg = bg_jobs::builder{bg_jobs::sqlite_adapter::factory({path})}
                .with_migrations()
                .with_queue(bg_jobs::queue_spec{"reminders"}.with_worker(
                    bg_jobs::worker{"remind",
                                    [&](const bg_jobs::job& j) {
                                      std::cout
                                          << "reminder: " << j.payload["text"]
                                          << std::endl;
                                      if (++runs == 2)
                                        both_ran.set_value();
                                    }}))
                .build(sys);
  if (!bg) {
    std::cerr << bg_jobs::describe(bg.error()) << std::endl;
    return 1;
  }
  // In 200 ms from now ...
  bg->enqueue(
      bg_jobs::job_request{"remind", {{"text", "in 200 ms"}}}.available_in(
          200ms));
  // ... or at a given UTC time.
  bg->enqueue(
      bg_jobs::job_request{"remind", {{"text", "at a UTC time"}}}.available_at(
          bg_jobs::clock::system()->now() + 100ms));
  auto ok = both_ran.get_future().wait_for(10s) == std::future_status::ready;
  bg->shutdown();
  return ok ? 0 : 1;
}
