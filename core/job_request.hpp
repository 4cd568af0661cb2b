#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "bg_jobs/core/job.hpp"
#include "bg_jobs/core/timestamp.hpp"

namespace bg_jobs {

/// The longest job name accepted, in bytes.
constexpr size_t max_job_name_length = 255;

/// The largest payload accepted, in bytes of serialized JSON.
constexpr size_t max_payload_size = 1024 * 1024;

/// The deepest nesting of arrays and objects a payload may have.
constexpr size_t max_payload_depth = 100;

/// Why `name` cannot name a job, a worker or a queue; empty when it can. A
/// name is 1 to `max_job_name_length` bytes of UTF-8 without control
/// characters (NUL among them).
std::string name_problem(std::string_view name);

/// `name`, with every byte outside printable ASCII written as `\xNN` and
/// cut at 64 bytes, for messages.
std::string printable(std::string_view name);

/// Whether the JSON text `text` nests arrays and objects deeper than
/// `max_payload_depth`; scans without recursion and without parsing.
bool exceeds_payload_depth(std::string_view text);

/// The most urgent priority: claims take lower numbers first.
constexpr int min_priority = 0;

/// The least urgent priority.
constexpr int max_priority = 9;

/// The longest concurrency key, in bytes.
constexpr size_t max_concurrency_key_length = 255;

/// Why `key` cannot be a concurrency key, or empty when it can.
std::string concurrency_key_problem(std::string_view key);

/// The largest metadata object accepted (`job_request::with_meta`), in
/// bytes of serialized JSON.
constexpr size_t max_meta_size = 4096;

/// The most tags a job may carry, and the longest tag in bytes.
constexpr size_t max_tags = 16;
constexpr size_t max_tag_length = 64;

/// The longest `tracestate` accepted, in bytes (the W3C limit is 512).
constexpr size_t max_tracestate_length = 512;

/// Why `tag` cannot be a tag, or empty when it can: 1 to `max_tag_length`
/// bytes of UTF-8 without control characters or commas.
std::string tag_problem(std::string_view tag);

/// Why `traceparent` is not a W3C trace context `traceparent` header
/// value, or empty when it is: `VV-TTTT...-PPPP...-FF`, lowercase hex, a
/// version other than `ff` (a later version may carry more after the
/// flags, after a `-`), a trace id of 32 and a parent id of 16 hex digits,
/// neither all zeros.
std::string traceparent_problem(std::string_view traceparent);

/// Why `tracestate` is not a W3C `tracestate` value, or empty when it is:
/// at most 32 comma-separated `key=value` members, `max_tracestate_length`
/// bytes of printable ASCII in all.
std::string tracestate_problem(std::string_view tracestate);

/// What an enqueue does to the waiting job that holds its unique key. A job
/// that has started is never changed: the request is then stored as a new
/// job, which takes the key over (the running one goes on).
enum class unique_conflict {
  /// Keeps the waiting job as it is; the request is dropped.
  keep,
  /// Debounce: the waiting job takes the request's payload and time (at
  /// most `unique_options::max_wait` after the job was first enqueued).
  debounce,
  /// Throttle: the waiting job keeps its time and takes the payload.
  throttle,
  /// The request's payload is merged into the waiting job's (a JSON merge
  /// patch, RFC 7396); its time is kept.
  merge,
};

/// How a unique job keeps duplicates out (`job_request::with_unique`).
struct unique_options {
  /// The key that makes two requests equal; by default the job name and
  /// the payload (a 128-bit digest of its canonical text). At most
  /// `max_job_name_length` bytes when given.
  std::optional<std::string> key;
  /// How long the first job keeps the key, from its enqueue; none: for as
  /// long as the job counts.
  std::optional<std::chrono::milliseconds> period;
  /// Whether a succeeded job still counts (within the period); by default
  /// only waiting and running jobs do.
  bool include_succeeded = false;
  /// What a request does to the waiting job that holds the key.
  unique_conflict on_conflict = unique_conflict::keep;
  /// With `debounce`: the latest a job may be pushed to, from its first
  /// enqueue (none: no bound).
  std::optional<std::chrono::milliseconds> max_wait;
};

/// What an application asks to run: a job name, a JSON payload and when the
/// job becomes available (now, at a UTC time, or after a delay).
class job_request {
public:
  struct now_t {
    bool operator==(const now_t&) const = default;
  };
  using availability =
      std::variant<now_t, timestamp, std::chrono::milliseconds>;

  /// An empty request (for deserialization); it fails validation.
  job_request() : payload_(nlohmann::json::object()) {}

  explicit job_request(std::string name,
                       nlohmann::json payload = nlohmann::json::object())
      : name_(std::move(name)), payload_(std::move(payload)) {}

  /// Creates a request from a payload given as JSON text; invalid JSON, or
  /// JSON nested deeper than `max_payload_depth`, is an
  /// `errc::invalid_payload` error naming the failure.
  static caf::expected<job_request> parse(std::string name,
                                          std::string_view payload_text);

  /// Makes the job available at the UTC time `t`.
  job_request& available_at(timestamp t) {
    availability_ = t;
    return *this;
  }

  /// Makes the job available `delay` after it is enqueued.
  job_request& available_in(std::chrono::milliseconds delay) {
    availability_ = delay;
    return *this;
  }

  /// Makes the job unique: while an equal job counts (see
  /// `unique_options`), enqueuing this request stores nothing and returns
  /// that job with `conflict` set. The key doubles as an idempotency key: a
  /// caller whose enqueue failed with `connection_lost` enqueues again and
  /// gets the one job.
  job_request& with_unique(unique_options u = {}) {
    unique_ = std::move(u);
    return *this;
  }

  const std::optional<unique_options>& unique() const { return unique_; }

  /// Sets the priority, `min_priority` (0, the most urgent and the
  /// default) to `max_priority` (9). Claims take jobs by priority, then by
  /// availability, then by id; out of range is `invalid_argument` at
  /// enqueue.
  job_request& with_priority(int p) {
    priority_ = p;
    return *this;
  }

  int priority() const { return priority_; }

  /// Limits the job by the concurrency key `key` (e.g. `"tenant:42"`): in
  /// a queue that declares key limits (`queue_spec::with_key_limit`), no
  /// more of the key's jobs run at once, across every node, than its
  /// limit. A second key (`second`, e.g. a shared partner's) must have room
  /// too. Keys are 1 to `max_concurrency_key_length` bytes of UTF-8
  /// without control characters; `invalid_argument` at enqueue otherwise.
  job_request& with_concurrency_key(std::string key, std::string second = {}) {
    concurrency_key_ = std::move(key);
    second_key_ = std::move(second);
    return *this;
  }

  /// The concurrency key, empty when none.
  const std::string& concurrency_key() const { return concurrency_key_; }

  /// The second concurrency key, empty when none.
  const std::string& second_concurrency_key() const { return second_key_; }

  /// Admits the job against its queue's rate limit
  /// (`queue_spec::with_rate_limit`) under the rate key `key` (a tenant, an
  /// account; "" shares one bucket), costing `cost` starts (1 to
  /// `max_rate_cost`). Keys are 0 to `max_concurrency_key_length` bytes of
  /// UTF-8 without control characters; `invalid_argument` at enqueue
  /// otherwise, and for a cost above the limit's burst when the enqueuing
  /// node runs the queue.
  job_request& with_rate(std::string key, int64_t cost = 1) {
    rate_key_ = std::move(key);
    rate_cost_ = cost;
    return *this;
  }

  /// Discards the job if no attempt of it has started by `at`: no claim
  /// takes it after that, and the upkeep records it as cancelled ("expired").
  /// Must lie after the time the job becomes available; `invalid_argument`
  /// at enqueue otherwise.
  job_request& expires_at(timestamp at) {
    expiry_ = at;
    return *this;
  }

  /// As `expires_at(now + d)` at enqueue; `d` must be positive.
  job_request& expires_in(std::chrono::milliseconds d) {
    expiry_ = d;
    return *this;
  }

  /// Attaches metadata: a JSON object of at most `max_meta_size` bytes,
  /// stored with the job, shown by `get`, the CLI and the dashboard, and
  /// handed to the handler (`job::meta`). Not an object, or too large, is
  /// `invalid_argument` at enqueue.
  job_request& with_meta(nlohmann::json meta) {
    meta_ = std::move(meta);
    return *this;
  }

  const nlohmann::json& meta() const { return meta_; }

  /// Adds the metadata entry `key` (in `meta`) as a secret: with a
  /// node's keys (`builder::with_encryption`) its value is encrypted
  /// before it reaches the store and decrypted only for the handler; a
  /// node without keys refuses the request.
  job_request& with_secret_meta(const std::string& key, nlohmann::json value) {
    if (!meta_.is_object())
      meta_ = nlohmann::json::object();
    meta_[key] = std::move(value);
    secret_meta_.push_back(key);
    return *this;
  }

  /// The metadata entries added as secrets.
  const std::vector<std::string>& secret_meta() const { return secret_meta_; }

  /// Encrypts the payload (with a node's keys, `builder::with_encryption`):
  /// the store, the command line and the dashboard see an envelope; the
  /// handler sees the payload. A node without keys refuses the request.
  /// A unique request keeps its key from the plain payload; a merging one
  /// (`unique_conflict::merge`) cannot be encrypted.
  job_request& encrypted(bool on = true) {
    encrypt_ = on;
    return *this;
  }

  bool is_encrypted() const { return encrypt_; }

  /// Replaces the payload (a node encrypting it does).
  job_request& with_payload(nlohmann::json payload) {
    payload_ = std::move(payload);
    return *this;
  }

  /// Tags the job (at most `max_tags`, each as `tag_problem` allows; a
  /// repeated tag is kept once). Listings filter by tag.
  job_request& with_tags(std::vector<std::string> tags) {
    tags_ = std::move(tags);
    return *this;
  }

  const std::vector<std::string>& tags() const { return tags_; }

  /// Carries the W3C trace context of the code that enqueues: stored with
  /// the job, handed to its handler (`job::trace`) on every attempt, in
  /// every event of the job and printed by the logger listener. A
  /// malformed value (see `traceparent_problem`, `tracestate_problem`), or
  /// a `tracestate` without a `traceparent`, is `invalid_argument` at
  /// enqueue. Without one, a node's trace source gives it
  /// (`builder::with_trace_source`).
  job_request& with_trace(std::string traceparent,
                          std::string tracestate = {}) {
    trace_ = {std::move(traceparent), std::move(tracestate)};
    return *this;
  }

  const trace_context& trace() const { return trace_; }

  /// The expiry as given: none, a time, or a delay from the enqueue.
  const std::optional<std::variant<timestamp, std::chrono::milliseconds>>&
  expiry() const {
    return expiry_;
  }

  /// When a job enqueued at `now` expires, if it does.
  std::optional<timestamp> resolve_expires_at(timestamp now) const;

  /// The rate key ("" by default).
  const std::string& rate_key() const { return rate_key_; }

  /// What a start of the job costs against its queue's rate limit (1).
  int64_t rate_cost() const { return rate_cost_; }

  /// The key stored for a unique request (see `unique_options::key`).
  std::string unique_key() const;

  const std::string& name() const { return name_; }
  const nlohmann::json& payload() const { return payload_; }
  const availability& when() const { return availability_; }

  /// Returns the time the job becomes available when enqueued at `now`.
  timestamp resolve_available_at(timestamp now) const;

  /// Checks name, payload and availability; on success returns the payload
  /// serialized as the JSON text that is stored. Payloads may not nest
  /// deeper than `max_payload_depth` or hold NaN or infinity.
  caf::expected<std::string> validate() const;

  /// `validate()`, and the job enqueued at `now` becomes available within
  /// the years 1970 to 9999.
  caf::expected<std::string> validate(timestamp now) const;

private:
  std::string name_;
  nlohmann::json payload_;
  availability availability_;
  std::optional<unique_options> unique_;
  int priority_ = min_priority;
  std::string concurrency_key_;
  std::string second_key_;
  std::string rate_key_;
  int64_t rate_cost_ = 1;
  std::optional<std::variant<timestamp, std::chrono::milliseconds>> expiry_;
  nlohmann::json meta_ = nlohmann::json::object();
  std::vector<std::string> tags_;
  trace_context trace_;
  std::vector<std::string> secret_meta_;
  bool encrypt_ = false;
};

} // namespace bg_jobs
