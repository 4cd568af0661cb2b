#pragma once

#include <optional>
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

/// What a unique request makes of the waiting job that holds its key.
struct absorbed_job {
  /// The waiting job's new payload (JSON text) and time.
  std::string payload;
  timestamp available_at;
};

/// The change `incoming` (with `on_conflict` of `u`) makes to the waiting
/// job `held`; none for `unique_conflict::keep`. A merge whose result is
/// larger than a payload may be is an `invalid_payload` error.
caf::expected<std::optional<absorbed_job>>
absorb(const job& held, const prepared_job& incoming, const unique_options& u);

/// `prepare_job` for each request; the first refusal names its index.
caf::expected<std::vector<prepared_job>>
prepare_jobs(const std::vector<job_request>& requests, timestamp now);

} // namespace bg_jobs::detail
