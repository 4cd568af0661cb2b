#pragma once

#include <iosfwd>

#include "bg_jobs/core/event.hpp"

namespace bg_jobs {

/// A listener that writes one line per event at or above `min_level` to
/// `out` (`std::clog` by default).
event_listener logger_listener(log_level min_level = log_level::info);
event_listener logger_listener(std::ostream& out,
                               log_level min_level = log_level::info);

} // namespace bg_jobs
