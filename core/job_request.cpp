#include "bg_jobs/core/job_request.hpp"

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

namespace {

// The latest time a job may be scheduled for: the end of year 9999.
const timestamp latest_available_at =
    std::chrono::sys_days{std::chrono::year{10000} / 1 / 1} -
    std::chrono::milliseconds{1};

} // namespace

caf::expected<job_request> job_request::parse(std::string name,
                                              std::string_view payload_text) {
  try {
    return job_request{std::move(name), nlohmann::json::parse(payload_text)};
  } catch (const nlohmann::json::exception& e) {
    return make_error(errc::invalid_payload,
                      "payload is not valid JSON: " + std::string{e.what()});
  }
}

timestamp job_request::resolve_available_at(timestamp now) const {
  if (auto t = std::get_if<timestamp>(&availability_))
    return *t;
  if (auto d = std::get_if<std::chrono::milliseconds>(&availability_))
    return now + *d;
  return now;
}

caf::expected<std::string> job_request::validate() const {
  if (name_.empty())
    return make_error(errc::invalid_job_name, "job name is empty");
  if (name_.size() > max_job_name_length)
    return make_error(errc::invalid_job_name,
                      "job name is " + std::to_string(name_.size()) +
                          " bytes long; the limit is " +
                          std::to_string(max_job_name_length));
  if (auto d = std::get_if<std::chrono::milliseconds>(&availability_);
      d && d->count() < 0)
    return make_error(errc::invalid_argument,
                      "delay is negative: " + std::to_string(d->count()) +
                          " ms");
  if (auto t = std::get_if<timestamp>(&availability_);
      t && (*t > latest_available_at || t->time_since_epoch().count() < 0))
    return make_error(errc::invalid_argument,
                      "available_at must lie between 1970 and 9999");
  std::string text;
  try {
    text = payload_.dump();
  } catch (const nlohmann::json::exception& e) {
    return make_error(errc::invalid_payload,
                      "payload cannot be serialized: " + std::string{e.what()});
  }
  if (text.size() > max_payload_size)
    return make_error(errc::invalid_payload,
                      "payload is " + std::to_string(text.size()) +
                          " bytes; the limit is " +
                          std::to_string(max_payload_size));
  return text;
}

} // namespace bg_jobs
