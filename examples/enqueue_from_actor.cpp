// Enqueue from an actor: any actor sends (enqueue_atom, job_request) to the
// bg_jobs actor, found by name in the actor system's registry, and gets the
// stored job back. Queues and executors can be looked up by name too.
#include <iostream>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>

#include <bg_jobs/actors/builder.hpp>
#include <bg_jobs/actors/messages.hpp>
#include <bg_jobs/actors/system_config.hpp>
#include <bg_jobs/adapters/sqlite/sqlite_adapter.hpp>
#include <bg_jobs/core/errc.hpp>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "enqueue_from_actor.db";
  caf::actor_system_config cfg;
  bg_jobs::configure(cfg);
  caf::actor_system sys{cfg};
  auto bg = bg_jobs::builder{bg_jobs::sqlite_adapter::factory({path})}
                .with_migrations()
                .with_queue(bg_jobs::queue_spec{"mail"}.with_worker(
                    bg_jobs::worker{"welcome",
                                    [](const bg_jobs::job& j) {
                                      std::cout << "welcome mail to "
                                                << j.payload["user"]
                                                << std::endl;
                                    }}))
                .build(sys);
  if (!bg) {
    std::cerr << bg_jobs::describe(bg.error()) << std::endl;
    return 1;
  }
  // A request handler of the application, as an actor.
  auto signup = [](caf::event_based_actor* self, std::string user) {
    auto jobs =
        self->system().registry().get<caf::actor>(bg_jobs::system_registry_key);
    self->request(jobs, 5s, bg_jobs::enqueue_atom::value,
                  bg_jobs::job_request{"welcome", {{"user", user}}})
        .then(
            [=](const bg_jobs::job& j) {
              std::cout << "signup of " << user << " stored job " << j.id
                        << std::endl;
            },
            [=](caf::error& err) {
              std::cerr << "enqueue failed: " << bg_jobs::describe(err)
                        << std::endl;
            });
  };
  sys.spawn(signup, "ada");
  sys.spawn(signup, "grace");
  std::cout << "queue 'mail' is " << (bg->lookup("mail") ? "" : "not ")
            << "registered" << std::endl;
  std::this_thread::sleep_for(500ms); // let the example's jobs run
  return bg->shutdown() ? 0 : 1;
}
