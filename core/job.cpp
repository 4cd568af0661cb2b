#include "bg_jobs/core/job.hpp"

#include <array>

namespace bg_jobs {

namespace {

constexpr std::array<const char*, 7> state_names = {
    "waiting", "scheduled", "running", "succeeded",
    "failed",  "cancelled", "blocked",
};

} // namespace

const char* to_string(job_state s) {
  return state_names[static_cast<size_t>(s)];
}

std::optional<job_state> parse_job_state(std::string_view text) {
  for (size_t i = 0; i < state_names.size(); ++i)
    if (text == state_names[i])
      return static_cast<job_state>(i);
  return std::nullopt;
}

} // namespace bg_jobs
