#include "bg_jobs/actors/logger_listener.hpp"

#include <iostream>
#include <mutex>

namespace bg_jobs {

event_listener logger_listener(log_level min_level) {
  return logger_listener(std::clog, min_level);
}

event_listener logger_listener(std::ostream& out, log_level min_level) {
  auto mtx = std::make_shared<std::mutex>();
  return [&out, min_level, mtx](const event& e) {
    if (e.level() < min_level)
      return;
    // One write per line: a handler may print to the same stream.
    auto line = to_log_line(e) + '\n';
    std::lock_guard<std::mutex> guard{*mtx};
    out << line;
  };
}

} // namespace bg_jobs
