#include "bg_jobs/core/worker.hpp"

#include <exception>
#include <stdexcept>

namespace bg_jobs {

outcome worker::run(const job& j, const job_context& ctx) const noexcept {
  if (!handler_)
    return outcome::failure("worker for '" + job_name_ + "' has no handler");
  try {
    return handler_(j, ctx);
  } catch (const std::exception& e) {
    return outcome::failure(e.what());
  } catch (...) {
    return outcome::failure("handler threw a non-standard exception");
  }
}

} // namespace bg_jobs
