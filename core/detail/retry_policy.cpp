#include "bg_jobs/core/detail/retry_policy.hpp"

#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/core/parse.hpp"

#include <algorithm>

namespace bg_jobs {

namespace {

decision make(const job& j, completion::kind what, event_kind report,
              const std::string& owner) {
  decision d;
  d.change.what = what;
  d.change.job_id = j.id;
  d.change.reserved_by = owner;
  d.report = report;
  return d;
}

} // namespace

decision retry_policy::on_outcome(const job& j, const outcome& o,
                                  const std::string& owner, timestamp now,
                                  std::minstd_rand& rng) const {
  using k = completion::kind;
  switch (o.what()) {
  case outcome::kind::success:
    if (!o.output().is_null()) {
      auto text = o.output().dump(-1, ' ', false,
                                  nlohmann::json::error_handler_t::replace);
      if (text.size() > max_output_size || exceeds_payload_depth(text))
        return on_outcome(
            j,
            outcome::failure("the output is " + std::to_string(text.size()) +
                             " bytes of JSON; at most " +
                             std::to_string(max_output_size) +
                             " bytes nested at most " +
                             std::to_string(max_payload_depth) +
                             " deep are kept"),
            owner, now, rng);
      auto d = make(j, k::succeeded, event_kind::job_succeeded, owner);
      d.change.output = std::move(text);
      return d;
    }
    return make(j, k::succeeded, event_kind::job_succeeded, owner);
  case outcome::kind::committed: {
    auto d = make(j, k::succeeded, event_kind::job_succeeded, owner);
    d.change.committed = true;
    return d;
  }
  case outcome::kind::failure:
  case outcome::kind::discard: {
    auto retry = o.what() == outcome::kind::failure &&
                 j.attempts <= settings_.max_retries;
    auto d =
        make(j, retry ? k::retry : k::failed,
             retry ? event_kind::job_exception : event_kind::job_failed, owner);
    d.change.error = stored_text(o.message());
    d.message = d.change.error;
    if (retry)
      d.change.available_at = now + settings_.backoff.delay(j.attempts, rng);
    return d;
  }
  case outcome::kind::snooze:
  case outcome::kind::rate_limited: {
    auto d = make(j, k::snooze, event_kind::job_snoozed, owner);
    auto delay = std::max(o.delay(), std::chrono::milliseconds{0});
    d.change.available_at = now + delay;
    if (o.what() == outcome::kind::rate_limited) {
      d.change.block_ms = delay.count();
      d.message = "rate limited for " + std::to_string(delay.count()) + " ms";
    }
    return d;
  }
  case outcome::kind::cancel: {
    auto d = make(j, k::cancelled, event_kind::job_cancelled, owner);
    d.change.error =
        o.message().empty() ? "cancelled" : stored_text(o.message());
    d.message = d.change.error;
    return d;
  }
  }
  return make(j, k::succeeded, event_kind::job_succeeded, owner);
}

decision retry_policy::on_release(const job& j, const std::string& why,
                                  bool count_attempt, const std::string& owner,
                                  timestamp now) const {
  using k = completion::kind;
  auto what = !count_attempt                        ? k::snooze
              : j.attempts <= settings_.max_retries ? k::retry
                                                    : k::failed;
  auto d = make(j, what,
                what == k::failed ? event_kind::job_failed
                                  : event_kind::job_released,
                owner);
  d.change.available_at = now;
  d.change.error = stored_text(why);
  d.message = why;
  return d;
}

decision retry_policy::on_exhausted(const job& j,
                                    const std::string& owner) const {
  auto d = make(j, completion::kind::failed, event_kind::job_failed, owner);
  d.change.error = "gave up after " + std::to_string(j.attempts - 1) +
                   " attempts" +
                   (j.last_error ? ": " + *j.last_error : std::string{});
  d.message = d.change.error;
  return d;
}

} // namespace bg_jobs
