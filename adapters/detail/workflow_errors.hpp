#pragma once

#include <cstdint>
#include <string>

#include <caf/error.hpp>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

/// The error of a call that names a workflow the store does not hold.
inline caf::error no_workflow(int64_t id) {
  return make_error(errc::job_not_found, "no workflow " + std::to_string(id));
}

} // namespace bg_jobs::detail
