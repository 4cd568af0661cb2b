// Retries: a failing job is retried with backoff, then moved to jobs_failed
// with its last error; outcomes can also snooze or cancel a job.
#include <future>
#include <iostream>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <bg_jobs/actors/builder.hpp>
#include <bg_jobs/adapters/sqlite/sqlite_adapter.hpp>
#include <bg_jobs/core/errc.hpp>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "retries.db";
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::promise<std::string> failed;
  auto bg = bg_jobs::builder{bg_jobs::sqlite_adapter::factory({path})}
                .with_migrations()
                .with_event_listener([&](const bg_jobs::event& e) {
                  if (e.kind == bg_jobs::event_kind::job_exception)
                    std::cout << "attempt " << e.job->attempts
                              << " failed: " << e.message << "; retrying"
                              << std::endl;
                  if (e.kind == bg_jobs::event_kind::job_failed)
                    failed.set_value(e.message);
                })
                .with_queue(
                    bg_jobs::queue_spec{"payments"}
                        .with_max_retries(2) // three attempts in all
                        .with_backoff(bg_jobs::backoff::exponential(50ms))
                        .with_worker(bg_jobs::worker{
                            "charge",
                            [](const bg_jobs::job& j) -> bg_jobs::outcome {
                              if (j.payload["amount"] < 0)
                                throw std::invalid_argument("negative amount");
                              return bg_jobs::outcome::success();
                            }}))
                .build(sys);
  if (!bg) {
    std::cerr << bg_jobs::describe(bg.error()) << std::endl;
    return 1;
  }
  bg->enqueue(bg_jobs::job_request{"charge", {{"amount", -5}}});
  auto f = failed.get_future();
  if (f.wait_for(10s) != std::future_status::ready)
    return 1;
  std::cout << "moved to jobs_failed with: " << f.get() << std::endl;
  bg->shutdown();
  return 0;
}
