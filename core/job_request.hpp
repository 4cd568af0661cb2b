#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "bg_jobs/core/timestamp.hpp"

namespace bg_jobs {

/// The longest job name accepted, in bytes.
constexpr size_t max_job_name_length = 255;

/// The largest payload accepted, in bytes of serialized JSON.
constexpr size_t max_payload_size = 1024 * 1024;

/// What an application asks to run: a job name, a JSON payload and when the
/// job becomes available (now, at a UTC time, or after a delay).
class job_request {
public:
  struct now_t {
    bool operator==(const now_t&) const = default;
  };
  using availability =
      std::variant<now_t, timestamp, std::chrono::milliseconds>;

  explicit job_request(std::string name,
                       nlohmann::json payload = nlohmann::json::object())
      : name_(std::move(name)), payload_(std::move(payload)) {}

  /// Creates a request from a payload given as JSON text; invalid JSON is an
  /// `errc::invalid_payload` error naming the parse failure.
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

  const std::string& name() const { return name_; }
  const nlohmann::json& payload() const { return payload_; }
  const availability& when() const { return availability_; }

  /// Returns the time the job becomes available when enqueued at `now`.
  timestamp resolve_available_at(timestamp now) const;

  /// Checks name, payload and availability; on success returns the payload
  /// serialized as the JSON text that is stored.
  caf::expected<std::string> validate() const;

private:
  std::string name_;
  nlohmann::json payload_;
  availability availability_;
};

} // namespace bg_jobs
