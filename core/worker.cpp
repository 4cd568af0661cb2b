#include "bg_jobs/core/worker.hpp"

#include <cmath>
#include <exception>
#include <stdexcept>

#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/parse.hpp"

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

std::string progress_problem(double fraction, std::string_view text) {
  if (!std::isfinite(fraction) || fraction < 0 || fraction > 1)
    return "a progress fraction is from 0 to 1";
  if (auto why = text_problem(text, max_progress_text); !why.empty())
    return "the progress text " + why;
  return {};
}

caf::error job_context::report_progress(double fraction,
                                        std::string text) const {
  if (auto why = progress_problem(fraction, text); !why.empty())
    return make_error(errc::invalid_argument, why);
  if (!progress_)
    return caf::none;
  return progress_(fraction, std::move(text));
}

} // namespace bg_jobs
