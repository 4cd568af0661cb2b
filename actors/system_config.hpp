#pragma once

#include <caf/fwd.hpp>

namespace bg_jobs {

/// Prepares an actor system's configuration for bg_jobs: registers its
/// error category (`add_error_category`) and lets idle scheduler threads
/// sleep. Unless the application set them itself,
/// `work-stealing.relaxed-sleep-duration` becomes 1 s (CAF's 10 ms wakes
/// every idle thread a hundred times a second) and
/// `work-stealing.moderate-poll-attempts` 10 (CAF's 500 polls every 50 us
/// for 25 ms after each message before a thread sleeps). A sleeping thread
/// that is given work is woken at once either way, and bg_jobs waits for
/// its own work on sockets, files and timers.
void configure(caf::actor_system_config& cfg);

} // namespace bg_jobs
