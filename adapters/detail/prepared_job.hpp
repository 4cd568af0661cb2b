#pragma once

#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "bg_jobs/core/job.hpp"
#include "bg_jobs/core/job_request.hpp"

namespace bg_jobs::detail {

/// A request checked and turned into the job to store, once for every
/// store: the adapters only write it.
struct prepared_job {
  job j;
  /// The payload as stored (JSON text).
  std::string payload;
};

/// Validates `request` (at `now`, which also dates the job) and builds its
/// job: an `invalid_argument` error otherwise.
caf::expected<prepared_job> prepare_job(const job_request& request,
                                        timestamp now);

/// `prepare_job` for each request; the first refusal names its index.
caf::expected<std::vector<prepared_job>>
prepare_jobs(const std::vector<job_request>& requests, timestamp now);

} // namespace bg_jobs::detail
