#pragma once

#include <optional>
#include <string>
#include <string_view>
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
  /// The metadata, tags and trace context as stored (`attrs_text`); empty
  /// (NULL) when the request has none.
  std::string attrs;
};

/// A job's metadata, tags and trace context as the object `attrs_text`
/// stores (empty when it has none).
nlohmann::json attrs_json(const nlohmann::json& meta,
                          const std::vector<std::string>& tags,
                          const trace_context& trace);

/// The stored text of a job's metadata, tags and trace context: a JSON
/// object with only those it has (`meta`, `tags`, `traceparent`,
/// `tracestate`), or "" when it has none.
std::string attrs_text(const nlohmann::json& meta,
                        const std::vector<std::string>& tags,
                        const trace_context& trace);

/// Reads stored attrs (`attrs_text`) into `meta`, `tags` and `trace`;
/// empty text (NULL), or text written outside bg_jobs that is not such an
/// object, gives none.
void read_attrs(std::string_view text, nlohmann::json& meta,
                 std::vector<std::string>& tags, trace_context& trace);

template <class Job>
void read_attrs(std::string_view text, Job& j) {
  read_attrs(text, j.meta, j.tags, j.trace);
}

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
