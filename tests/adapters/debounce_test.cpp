// Unique requests that change the waiting job holding their key, on every
// store: debounce, throttle and merge, a started job never changed, and
// bad requests refused with nothing written.
#include <algorithm>
#include <atomic>
#include <set>
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

  TEST_CASE_TEMPLATE("a job not started by its expiry is never claimed, and "
                     "is recorded as expired",
                     S, BG_JOBS_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    auto a = value_of(db->enqueue_job(job_request{"work", {{"n", "a"}}}
                                          .expires_in(10s)));
    auto b = value_of(db->enqueue_job(job_request{"work", {{"n", "b"}}}
                                          .expires_at(t0 + 5s)));
    auto c = value_of(db->enqueue_job(job_request{"work", {{"n", "c"}}}));
    // Nothing has expired yet: the upkeep finds nothing.
    CHECK(value_of(db->discard_expired(100)).empty());
    clk->advance(6s);
    auto got = claim(*db);
    std::set<int64_t> ids;
    for (auto& j : got)
      ids.insert(j.id);
    CHECK(ids == std::set<int64_t>{a.id, c.id});
    // The upkeep records b; a and c run (a running job is never discarded).
    auto expired = value_of(db->discard_expired(100));
    REQUIRE(expired.size() == 1);
    CHECK(expired[0].id == b.id);
    auto rec = value_of(db->get_job(b.id));
    CHECK(rec.state == job_state::cancelled);
    CHECK(rec.error == std::optional<std::string>{"expired"});
    CHECK(rec.attempts == 0);
    // a fails and is retried after its expiry: the retry never starts.
    auto ja = *std::find_if(got.begin(), got.end(),
                            [&](const job& j) { return j.id == a.id; });
    completion retry;
    retry.what = completion::kind::retry;
    retry.job_id = a.id;
    retry.reserved_by = ja.reserved_by;
    retry.error = "boom";
    retry.available_at = t0 + 8s;
    CHECK(value_of(db->complete_jobs({retry})) == std::vector<bool>{true});
    clk->advance(5s); // t0 + 11 s
    CHECK(claim(*db).empty());
    expired = value_of(db->discard_expired(100));
    REQUIRE(expired.size() == 1);
    CHECK(expired[0].id == a.id);
    CHECK(value_of(db->get_job(a.id)).state == job_state::cancelled);
    // c, running, is left alone and succeeds.
    auto jc = *std::find_if(got.begin(), got.end(),
                            [&](const job& j) { return j.id == c.id; });
    completion done;
    done.job_id = c.id;
    done.reserved_by = jc.reserved_by;
    CHECK(value_of(db->complete_jobs({done})) == std::vector<bool>{true});
  }

  TEST_CASE_TEMPLATE("the claim of a limited queue passes over expired jobs",
                     S, BG_JOBS_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    require_ok(db->set_limits("q", {{limit_kind::per_key, "", 5}}));
    value_of(db->enqueue_job(job_request{"work", {{"n", 1}}}
                                 .with_concurrency_key("k")
                                 .expires_in(1s)));
    auto kept = value_of(db->enqueue_job(
        job_request{"work", {{"n", 2}}}.with_concurrency_key("k")));
    clk->advance(2s);
    reserve_params p{{"work"}, 10, "node/q/1", "q"};
    p.limited = true;
    auto got = value_of(db->reserve_jobs(p));
    REQUIRE(got.size() == 1);
    CHECK(got[0].id == kept.id);
  }

  TEST_CASE_TEMPLATE("a bad expiry is refused and writes nothing", S,
                     BG_JOBS_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    for (auto bad :
         {job_request{"work"}.expires_in(0ms),
          job_request{"work"}.expires_in(-5s),
          job_request{"work"}.expires_at(t0 - 1s),
          job_request{"work"}.expires_at(t0),
          job_request{"work"}.available_in(10s).expires_in(5s),
          job_request{"work"}.available_at(t0 + 10s).expires_at(t0 + 10s),
          job_request{"work"}.expires_at(from_unix_ms(-1000))}) {
      CHECK(error_of(db->enqueue_job(bad)) == errc::invalid_argument);
      CHECK(error_of(db->enqueue_jobs({job_request{"work"}, bad})) ==
            errc::invalid_argument);
    }
    CHECK(value_of(db->stats()).pending() == 0);
  }
} // TEST_SUITE
