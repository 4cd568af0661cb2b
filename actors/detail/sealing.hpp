#pragma once

#include <optional>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "bg_jobs/core/job.hpp"
#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/core/keyring.hpp"

namespace bg_jobs::detail {

/// `r` with its payload (when marked `encrypted`) and its secret metadata
/// sealed with the current key of `keys`; none when it has nothing to seal.
/// A unique request keeps the key of its plain payload. `invalid_argument`
/// when it has something to seal and `keys` is null or empty.
caf::expected<std::optional<job_request>> sealed_request(const job_request& r,
                                                         const keyring* keys);

/// Opens the sealed values of `j` in place: its payload and its metadata
/// entries. `decryption_failed`, naming the job and the key, when one does
/// not open (or `keys` is null); `j` is then unchanged.
caf::error open_job(job& j, const keyring* keys);

} // namespace bg_jobs::detail
