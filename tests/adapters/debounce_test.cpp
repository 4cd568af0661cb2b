// Unique requests that change the waiting job holding their key, on every
// store: debounce, throttle and merge, a started job never changed, and
// bad requests refused with nothing written.
#include <atomic>
#include <thread>

#include <doctest/doctest.h>

#include "adapters/stores.hpp"
#include "bg_jobs/core/clock.hpp"
#include "support/expect.hpp"
#include "support/store_reads.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

using test::error_of;
using test::require_ok;
using test::value_of;

const timestamp t0 = from_unix_ms(1'800'000'000'000);

job_request request(nlohmann::json payload, unique_conflict mode,
                    std::chrono::milliseconds delay = 0ms,
                    std::optional<std::chrono::milliseconds> max_wait = {}) {
  unique_options u;
  u.key = "k";
  u.on_conflict = mode;
  u.max_wait = max_wait;
  return std::move(job_request{"work", std::move(payload)}
                       .available_in(delay)
                       .with_unique(u));
}

std::vector<job> claim(db_adapter& db) {
  return value_of(db.reserve_jobs({{"work"}, 10, "node/q/1", "q"}));
}

} // namespace

TEST_SUITE("flow control") {

  TEST_CASE_TEMPLATE("a debounced request replaces the waiting job's payload "
                     "and time, never past its maximum wait",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    auto first = value_of(db->enqueue_job(
        request({{"n", 1}}, unique_conflict::debounce, 500ms, 2s)));
    CHECK_FALSE(first.conflict);
    CHECK(first.available_at == t0 + 500ms);
    clk->advance(400ms);
    auto second = value_of(db->enqueue_job(
        request({{"n", 2}}, unique_conflict::debounce, 500ms, 2s)));
    CHECK(second.conflict);
    CHECK(second.id == first.id);
    CHECK(second.payload == nlohmann::json{{"n", 2}});
    CHECK(second.available_at == t0 + 900ms);
    // Pushed again and again: never past the first enqueue plus 2 s.
    clk->advance(1400ms);
    auto third = value_of(db->enqueue_job(
        request({{"n", 3}}, unique_conflict::debounce, 500ms, 2s)));
    CHECK(third.available_at == t0 + 2s);
    auto stored = value_of(db->get_job(first.id));
    CHECK(stored.payload == nlohmann::json{{"n", 3}});
    CHECK(stored.available_at == t0 + 2s);
    CHECK(value_of(test::all_in(*db, job_state::scheduled)).size() == 1);
  }

  TEST_CASE_TEMPLATE("throttle keeps the time, merge patches the payload, "
                     "keep changes nothing",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    auto first = value_of(db->enqueue_job(
        request({{"a", 1}, {"b", 1}}, unique_conflict::throttle, 1s)));
    clk->advance(300ms);
    auto t = value_of(db->enqueue_job(
        request({{"a", 2}}, unique_conflict::throttle, 1s)));
    CHECK(t.conflict);
    CHECK(t.available_at == t0 + 1s);
    CHECK(t.payload == nlohmann::json{{"a", 2}});
    auto m = value_of(db->enqueue_job(
        request({{"b", 5}, {"c", nullptr}}, unique_conflict::merge, 3s)));
    CHECK(m.available_at == t0 + 1s);
    CHECK(m.payload == nlohmann::json{{"a", 2}, {"b", 5}});
    auto k = value_of(
        db->enqueue_job(request({{"z", 1}}, unique_conflict::keep, 5s)));
    CHECK(k.conflict);
    CHECK(value_of(db->get_job(first.id)).payload ==
          nlohmann::json{{"a", 2}, {"b", 5}});
  }

  TEST_CASE_TEMPLATE("a started job is never replaced: the request becomes a "
                     "new job that takes the key over",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto first = value_of(
        db->enqueue_job(request({{"n", 1}}, unique_conflict::debounce)));
    auto running = claim(*db);
    REQUIRE(running.size() == 1);
    auto second = value_of(
        db->enqueue_job(request({{"n", 2}}, unique_conflict::debounce)));
    CHECK_FALSE(second.conflict);
    CHECK(second.id != first.id);
    CHECK(value_of(db->get_job(first.id)).payload ==
          nlohmann::json{{"n", 1}});
    // The new job now holds the key: the next request changes it.
    auto third = value_of(
        db->enqueue_job(request({{"n", 3}}, unique_conflict::debounce)));
    CHECK(third.conflict);
    CHECK(third.id == second.id);
    CHECK(value_of(db->get_job(second.id)).payload ==
          nlohmann::json{{"n", 3}});
  }

  TEST_CASE_TEMPLATE("bad unique requests are refused and write nothing", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    // A maximum wait without a debounce, or not positive.
    CHECK(error_of(db->enqueue_job(
              request({{"n", 1}}, unique_conflict::throttle, 0ms, 1s))) ==
          errc::invalid_argument);
    CHECK(error_of(db->enqueue_job(
              request({{"n", 1}}, unique_conflict::debounce, 0ms, 0ms))) ==
          errc::invalid_argument);
    // A merge of a payload that is not an object.
    CHECK(error_of(db->enqueue_job(
              request(nlohmann::json::array({1}), unique_conflict::merge))) ==
          errc::invalid_argument);
    CHECK(value_of(db->stats()).total() == 0);
    // A merge that would grow the payload past its limit changes nothing.
    auto first = value_of(db->enqueue_job(request(
        {{"a", std::string(700 * 1024, 'a')}}, unique_conflict::merge)));
    CHECK(error_of(db->enqueue_job(
              request({{"b", std::string(700 * 1024, 'b')}},
                      unique_conflict::merge))) == errc::invalid_payload);
    CHECK(value_of(db->get_job(first.id)).payload.size() == 1);
  }


  TEST_CASE_TEMPLATE("concurrent merges of one key on separate connections "
                     "lose no patch",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto setup = store.fresh();
    auto first = value_of(setup->enqueue_job(
        request({{"start", true}}, unique_conflict::merge, 1h)));
    std::atomic<int> failures{0};
    auto merger = [&](int t) {
      auto db = store.connect();
      for (int i = 0; i < 40; ++i) {
        auto field = "t" + std::to_string(t) + "_" + std::to_string(i);
        // A busy store may refuse a try (a lock timeout): tried again.
        for (int attempt = 0; attempt < 50; ++attempt) {
          auto r = db->enqueue_job(
              request({{field, i}}, unique_conflict::merge, 1h));
          if (r) {
            CHECK(r->id == first.id);
            break;
          }
          ++failures;
        }
      }
    };
    std::thread a{merger, 0}, b{merger, 1};
    a.join();
    b.join();
    auto merged = value_of(setup->get_job(first.id)).payload;
    CHECK(merged.size() == 81);
    MESSAGE(failures.load() << " tries refused and tried again");
  }
} // TEST_SUITE
