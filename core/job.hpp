#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "bg_jobs/core/timestamp.hpp"

namespace bg_jobs {

/// The W3C trace context (`traceparent`, `tracestate`) of the request that
/// enqueued a job; both empty when none was given.
struct trace_context {
  std::string traceparent;
  std::string tracestate;

  bool empty() const { return traceparent.empty(); }
  bool operator==(const trace_context&) const = default;
};

/// Gives the trace context of the code that enqueues, if it has one
/// (`builder::with_trace_source`).
using trace_source = std::function<std::optional<trace_context>()>;

/// A job waiting in the `jobs` table or running: pending while
/// `reserved_by` is empty, reserved (running) otherwise.
struct job {
  int64_t id = 0;
  std::string name;
  nlohmann::json payload;
  /// Attempts started so far, counting the current one while reserved.
  int attempts = 0;
  /// 0 (the most urgent) to 9; see `job_request::with_priority`.
  int priority = 0;
  timestamp created_at;
  timestamp available_at;
  std::optional<timestamp> reserved_at;
  std::optional<std::string> reserved_by;
  /// The error text of the last failed attempt, if any.
  std::optional<std::string> last_error;
  /// Set once a cancel was asked for while the job runs
  /// (`db_adapter::cancel_job`).
  std::optional<std::string> cancel_reason;
  /// Its concurrency keys (`job_request::with_concurrency_key`), empty
  /// when none.
  std::string concurrency_key;
  std::string second_concurrency_key;
  /// Its metadata (`job_request::with_meta`): a JSON object, empty when
  /// none.
  nlohmann::json meta = nlohmann::json::object();
  /// Its tags (`job_request::with_tags`), in the order given.
  std::vector<std::string> tags;
  /// The trace context it was enqueued with (`job_request::with_trace`).
  trace_context trace;
  /// Set on the job an enqueue returns when its request was unique and an
  /// equal job already counted: that job, and nothing new was stored.
  bool conflict = false;

  bool operator==(const job&) const = default;
};

/// Where a job is in its life, as inspection reports it.
enum class job_state {
  /// In `jobs`, unreserved and available now.
  waiting,
  /// In `jobs`, unreserved and available later.
  scheduled,
  /// Reserved by a queue.
  running,
  succeeded,
  failed,
  cancelled,
  /// A workflow's task waiting for its parents (`db_adapter::
  /// enqueue_workflow`).
  blocked,
};

/// `"waiting"`, `"scheduled"`, ... .
const char* to_string(job_state s);

/// The state named `text` (as `to_string` spells it), if any.
std::optional<job_state> parse_job_state(std::string_view text);

/// One job wherever it is kept, as the operator's tools show it.
/// What a running handler last reported of its progress
/// (`job_context::report_progress`), as stored.
struct job_progress {
  /// 0 to 1.
  double fraction = 0;
  /// At most `max_progress_text` bytes; may be empty.
  std::string text;
  /// The attempt that reported it.
  int attempt = 0;
  /// When it was stored, by the store's clock.
  timestamp at;

  bool operator==(const job_progress&) const = default;
};

/// The longest progress text, in bytes.
inline constexpr size_t max_progress_text = 200;

struct job_record {
  int64_t id = 0;
  std::string name;
  nlohmann::json payload;
  int priority = 0;
  int attempts = 0;
  job_state state = job_state::waiting;
  timestamp created_at;
  timestamp available_at;
  std::optional<timestamp> reserved_at;
  std::optional<std::string> reserved_by;
  /// When it succeeded, failed or was cancelled.
  std::optional<timestamp> finished_at;
  /// The last error (waiting, running), the final error (failed) or the
  /// reason (cancelled).
  std::optional<std::string> error;
  /// Set while a running job has been asked to stop.
  std::optional<std::string> cancel_reason;
  /// The errors of failed attempts, oldest first, kept across manual
  /// retries: objects `{"attempt": n, "at": unix_ms, "error": text}`.
  nlohmann::json errors = nlohmann::json::array();
  /// Its concurrency keys, empty when none (a succeeded job shows none).
  std::string concurrency_key;
  std::string second_concurrency_key;
  /// Its metadata, tags and trace context, as `job` has them.
  nlohmann::json meta = nlohmann::json::object();
  std::vector<std::string> tags;
  trace_context trace;
  /// Its output (`outcome::success(output)`), null when none.
  nlohmann::json output;
  /// The progress its handler last reported, if any; kept with the job
  /// (it shows the last report of a job that ended).
  std::optional<job_progress> progress;
};

} // namespace bg_jobs
