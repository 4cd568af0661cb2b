#include "bg_jobs/actors/system_config.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/settings.hpp>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

void configure(caf::actor_system_config& cfg) {
  add_error_category(cfg);
  constexpr const char* relaxed = "work-stealing.relaxed-sleep-duration";
  constexpr const char* moderate = "work-stealing.moderate-poll-attempts";
  if (!caf::get_if(&cfg.content, relaxed))
    cfg.set(relaxed, caf::timespan{std::chrono::seconds{1}});
  if (!caf::get_if(&cfg.content, moderate))
    cfg.set(moderate, 10);
}

} // namespace bg_jobs
