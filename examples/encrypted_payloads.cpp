// Encrypted payloads: a node with a key ring seals the payloads and
// metadata the application marks secret before they reach the store, and
// opens them only for the handler. The program prints what the store holds
// and what the handler saw.
#include <future>
#include <iostream>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <bg_jobs/actors/builder.hpp>
#include <bg_jobs/adapters/sqlite/sqlite_adapter.hpp>
#include <bg_jobs/core/errc.hpp>
#include <bg_jobs/core/keyring.hpp>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "encrypted_payloads.db";
  // In production the key comes from a secret store, never from code.
  bg_jobs::keyring keys;
  if (auto err = keys.add("2026-12", std::string(64, 'c'))) {
    std::cerr << bg_jobs::describe(err) << std::endl;
    return 1;
  }
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::promise<std::string> seen;
  auto bg =
      bg_jobs::builder{bg_jobs::sqlite_adapter::factory({path})}
          .with_migrations()
          .with_encryption(keys)
          .with_queue(bg_jobs::queue_spec{"billing"}.with_worker(
              bg_jobs::worker{"charge", [&](const bg_jobs::job& j) {
                seen.set_value(j.payload["card"].get<std::string>() + " for " +
                               j.meta["email"].get<std::string>());
              }}))
          .build(sys);
  if (!bg) {
    std::cerr << bg_jobs::describe(bg.error()) << std::endl;
    return 1;
  }
  // Held back a moment, so that the stored row can be shown first.
  auto j = bg->enqueue(bg_jobs::job_request{"charge", {{"card", "4111-1111"}}}
                           .encrypted()
                           .with_secret_meta("email", "ada@example.com")
                           .available_in(200ms));
  if (!j) {
    std::cerr << bg_jobs::describe(j.error()) << std::endl;
    return 1;
  }
  auto stored = bg->get_job(j->id);
  if (!stored)
    return 1;
  std::cout << "the store holds: " << stored->payload.dump() << std::endl;
  auto f = seen.get_future();
  if (f.wait_for(10s) != std::future_status::ready)
    return 1;
  std::cout << "the handler saw: " << f.get() << std::endl;
  bg->shutdown();
  return bg_jobs::keyring::sealed(stored->payload) ? 0 : 1;
}
