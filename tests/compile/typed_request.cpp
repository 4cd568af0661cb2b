// Compiled only: a request through the bg_jobs actor's typed handle. With
// WRONG_MESSAGE defined it sends a message the actor does not take, which
// must fail to compile.
#include <chrono>
#include <cstdint>
#include <string>

#include <caf/scoped_actor.hpp>

#include "bg_jobs/actors/instance.hpp"

void cancel_one(caf::scoped_actor& self, const bg_jobs::instance& bg) {
#ifdef WRONG_MESSAGE
  // The job id is a number, not text.
  self->request(bg.typed(), std::chrono::seconds{1},
                bg_jobs::cancel_atom::value, std::string{"42"},
                std::string{"why"});
#else
  self->request(bg.typed(), std::chrono::seconds{1},
                bg_jobs::cancel_atom::value, int64_t{42}, std::string{"why"});
#endif
}
