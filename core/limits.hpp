#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>

namespace bg_jobs {

/// What a concurrency limit bounds (`concurrency_limit`).
enum class limit_kind {
  /// One key's running jobs.
  key,
  /// The running jobs of each key without a limit of its own.
  per_key,
  /// The queue's running jobs, across every node.
  total,
  /// Every key of the queue is a sequence: only the oldest unfinished job
  /// of a key may run, and a failed job holds its key until it is retried
  /// or deleted, or the key is unblocked. `max_running` is 1.
  sequence,
  /// As `sequence`, but a job that failed for good lets the next one go.
  sequence_skip_failed,
  /// The queue draws from the rate limit named `key` (`rate_limit`, whose
  /// numbers are its own); `max_running` is 1. Written by the queue's start
  /// from `queue_spec::with_rate_limit`; not changed through `set_limit`.
  rate,
};

/// What a failed job of a sequence does to the jobs behind it.
enum class sequence_failure {
  /// Holds its key (the key is blocked) until it is retried or deleted, or
  /// the key is unblocked.
  hold,
  /// Lets the next job of the key go.
  skip,
};

/// `"key"`, `"per_key"`, `"total"`, `"sequence"`,
/// `"sequence_skip_failed"` or `"rate"`.
const char* to_string(limit_kind k);

/// The kind named `text` (as `to_string` spells it), if any.
std::optional<limit_kind> parse_limit_kind(std::string_view text);

/// A concurrency limit of a queue, as stored.
struct concurrency_limit {
  limit_kind kind = limit_kind::per_key;
  /// The key, for `limit_kind::key`; empty otherwise.
  std::string key;
  /// At least 1.
  int max_running = 1;

  bool operator==(const concurrency_limit&) const = default;
};

/// How one concurrency key of a queue stands: its jobs reserved (running or
/// held ahead, on every node) and those ready to run, against its limit.
struct key_usage {
  std::string key;
  int64_t running = 0;
  /// Ready to run now (not delayed, not reserved).
  int64_t waiting = 0;
  /// The limit that applies to it (its own, else the per-key one); 0: none.
  int max_running = 0;

  /// No more of its jobs are admitted until one ends.
  bool full() const { return max_running > 0 && running >= max_running; }
};

/// A key of a sequenced queue held by a job that failed for good.
struct blocked_key {
  std::string key;
  /// The oldest failed job that holds it.
  int64_t failed_job = 0;
  /// Jobs of the key waiting behind it (delayed ones included).
  int64_t waiting = 0;
};

/// A rate limit: at most `allowed` starts per `period` for each key, with
/// bursts of up to `burst` starts (a token bucket, kept as the generic cell
/// rate algorithm). Named, and shared by every queue that declares the
/// same name: their jobs of one rate key draw from one bucket.
struct rate_limit {
  /// 1 to 63 bytes of letters, digits, '_', '-', '.' and ':'.
  std::string name;
  /// At least 1.
  int64_t allowed = 1;
  /// 1 ms to 30 days.
  std::chrono::milliseconds period{1000};
  /// The most starts at once after an idle spell, 1 to 1,000,000; 0 means
  /// `allowed`.
  int64_t burst = 0;

  /// The burst, `allowed` when left at 0.
  int64_t bucket() const { return burst > 0 ? burst : allowed; }

  bool operator==(const rate_limit&) const = default;
};

/// The most a job may cost against a rate limit (`job_request::with_rate`).
constexpr int64_t max_rate_cost = 1'000'000;

/// The problem with `limit` (an `invalid_argument` error), or none.
caf::error check_rate_limit(const rate_limit& limit);

/// The problem with `name` as a rate limit's name, or an empty text.
std::string rate_limit_name_problem(std::string_view name);

/// How one key of a rate limit stands, by the store's clock.
struct rate_key_state {
  std::string key;
  /// Starts it may make now (0 while blocked or drained).
  int64_t available = 0;
  /// Milliseconds until a handler's back-pressure stops blocking it; 0: not
  /// blocked.
  int64_t blocked_ms = 0;
};

/// A rate limit as stored, with the keys that drew from it lately (those
/// whose bucket is not full, or that are blocked).
struct rate_limit_state {
  rate_limit limit;
  std::vector<rate_key_state> keys;
};

/// What `db_adapter::consume_rate` decided.
struct rate_decision {
  /// The cost was taken from the key's bucket.
  bool admitted = false;
  /// When not admitted: milliseconds until the same request would be.
  int64_t wait_ms = 0;
};

/// The limit `limits` set for `key`: its own, else the per-key one; 0 when
/// neither is set.
int limit_of_key(const std::vector<concurrency_limit>& limits,
                 const std::string& key);

/// The problem with `limits` (an `invalid_argument` error), or none: a
/// limit below 1, a key limit without a valid key, another kind with one,
/// or one limit given twice.
caf::error check_limits(const std::vector<concurrency_limit>& limits);

} // namespace bg_jobs
