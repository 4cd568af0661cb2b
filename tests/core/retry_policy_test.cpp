// The retry policy: the pure rules that turn the end of an attempt into
// the completion a queue persists.
#include <doctest/doctest.h>

#include "bg_jobs/core/detail/retry_policy.hpp"
#include "bg_jobs/core/timestamp.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

const timestamp now = *parse_iso8601("2025-01-01T00:00:00Z");

job attempt(int n) {
  job j;
  j.id = 7;
  j.name = "j";
  j.attempts = n;
  return j;
}

} // namespace

TEST_SUITE("retry policy") {

  TEST_CASE("each outcome becomes its completion") {
    retry_policy policy{{2, backoff::constant(10s)}};
    std::minstd_rand rng{1};
    using k = completion::kind;
    struct row {
      int attempts;
      outcome result;
      k what;
      event_kind report;
      std::chrono::milliseconds wait;
      std::string error;
    };
    const row table[] = {
        {1, outcome::success(), k::succeeded, event_kind::job_succeeded, 0ms,
         ""},
        {1, outcome::failure("x"), k::retry, event_kind::job_exception, 10s, "x"},
        {2, outcome::failure("x"), k::retry, event_kind::job_exception, 10s, "x"},
        {3, outcome::failure("x"), k::failed, event_kind::job_failed, 0ms, "x"},
        {3, outcome::snooze(5s), k::snooze, event_kind::job_snoozed, 5s, ""},
        {1, outcome::cancel("no"), k::cancelled, event_kind::job_cancelled,
         0ms, "no"},
    };
    for (auto& r : table) {
      CAPTURE(r.attempts);
      CAPTURE(static_cast<int>(r.what));
      auto d =
          policy.on_outcome(attempt(r.attempts), r.result, "n/q/1", now, rng);
      CHECK(d.change.what == r.what);
      CHECK(d.report == r.report);
      CHECK(d.change.job_id == 7);
      CHECK(d.change.reserved_by == "n/q/1");
      CHECK(d.change.error == r.error);
      if (r.what == k::retry || r.what == k::snooze)
        CHECK(d.change.available_at == now + r.wait);
    }
  }

  TEST_CASE("exponential backoff doubles within its jitter and its cap") {
    retry_policy policy{{20, backoff::exponential(1s, 1min, 0.1)}};
    std::minstd_rand rng{42};
    const std::pair<int, double> expected[] = {
        {1, 1000}, {2, 2000}, {3, 4000}, {6, 32000}, {7, 60000}, {12, 60000}};
    for (auto [n, ms] : expected) {
      for (int i = 0; i < 200; ++i) {
        auto d =
            policy.on_outcome(attempt(n), outcome::failure("x"), "o", now, rng);
        auto wait = (d.change.available_at - now).count();
        CAPTURE(n);
        CHECK(wait >= static_cast<int64_t>(ms * 0.9) - 1);
        CHECK(wait <= static_cast<int64_t>(ms * 1.1) + 1);
      }
    }
  }

  TEST_CASE("a release counts the attempt only for a crash") {
    retry_policy policy{{1, backoff::immediate()}};
    using k = completion::kind;
    auto crash = policy.on_release(attempt(1), "executor died", true, "o", now);
    CHECK(crash.change.what == k::retry);
    CHECK(crash.report == event_kind::job_released);
    CHECK(crash.change.available_at == now);
    auto last = policy.on_release(attempt(2), "executor died", true, "o", now);
    CHECK(last.change.what == k::failed);
    CHECK(last.report == event_kind::job_failed);
    auto stop = policy.on_release(attempt(2), "shutdown", false, "o", now);
    CHECK(stop.change.what == k::snooze);
    CHECK(stop.change.error == "shutdown");
  }

  TEST_CASE("a job reserved past its attempts is given up") {
    retry_policy policy{{1, backoff::immediate()}};
    CHECK_FALSE(policy.exhausted(attempt(2)));
    auto j = attempt(3);
    j.last_error = "boom";
    REQUIRE(policy.exhausted(j));
    auto d = policy.on_exhausted(j, "o");
    CHECK(d.change.what == completion::kind::failed);
    CHECK(d.change.error == "gave up after 2 attempts: boom");
  }

} // TEST_SUITE
