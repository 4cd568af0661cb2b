// Rate limits on every store: what a claim of a queue with a rate limit
// admits (a key's burst at once, then one start per emission interval),
// per key and by cost; what code outside jobs takes; a handler's
// back-pressure; and bad input, refused with nothing written.
#include <algorithm>
#include <atomic>
#include <map>
#include <thread>

#include <doctest/doctest.h>

#include "adapters/stores.hpp"
#include "support/expect.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

using test::error_of;
using test::require_ok;
using test::value_of;

const std::string queue = "q";

rate_limit api(int64_t allowed, std::chrono::milliseconds period,
               int64_t burst) {
  return {"api", allowed, period, burst};
}

reserve_params rated(int limit, std::string owner = "node/q/1") {
  reserve_params p{{"work"}, limit, std::move(owner), queue};
  p.limited = true;
  p.rate_limit = "api";
  return p;
}

std::vector<job> claim(db_adapter& db, int limit,
                       std::string owner = "node/q/1") {
  return value_of(db.reserve_jobs(rated(limit, std::move(owner))));
}

void enqueue(db_adapter& db, const std::string& key, int n,
             int64_t cost = 1) {
  for (int i = 0; i < n; ++i)
    value_of(db.enqueue_job(job_request{"work", {{"i", i}}}.with_rate(key, cost)));
}

/// How many of `jobs` each payload key came from: jobs are enqueued with
/// their rate key in the payload for this.
std::map<std::string, int> by_key(const std::vector<job>& jobs) {
  std::map<std::string, int> out;
  for (auto& j : jobs)
    ++out[j.payload.value("k", std::string{})];
  return out;
}

void enqueue_keyed(db_adapter& db, const std::string& key, int n) {
  for (int i = 0; i < n; ++i)
    value_of(db.enqueue_job(
        job_request{"work", {{"k", key}, {"i", i}}}.with_rate(key)));
}

} // namespace

TEST_SUITE("rate limits") {

  TEST_CASE_TEMPLATE("a rate limit admits its burst at once, then one start "
                     "per emission interval",
                     S, BG_JOBS_STORES) {
    S store;
    auto db = store.fresh();
    // 10 per second: one start every 100 ms, 3 at once.
    require_ok(db->set_rate_limit(api(10, 1000ms, 3)));
    enqueue(*db, "", 20);
    auto t0 = std::chrono::steady_clock::now();
    // One claim counts at one instant: exactly the burst.
    CHECK(claim(*db, 20).size() == 3);
    size_t total = 3;
    while (std::chrono::steady_clock::now() - t0 < 450ms)
      total += claim(*db, 20, "node/q/2").size();
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    // At most the burst plus one start per 100 ms since the first claim
    // (one more for the clocks' rounding).
    CHECK(total <= 3 + static_cast<size_t>(elapsed.count() / 100) + 1);
    // And starts keep coming as the bucket refills.
    CHECK(test::eventually([&] {
      total += claim(*db, 20, "node/q/3").size();
      return total >= 6;
    }));
  }

  TEST_CASE_TEMPLATE("each rate key has a bucket of its own", S,
                     BG_JOBS_STORES) {
    S store;
    auto db = store.fresh();
    // One start per 10 s after a burst of 2: nothing refills meanwhile.
    require_ok(db->set_rate_limit(api(1, 10s, 2)));
    enqueue_keyed(*db, "a", 5);
    enqueue_keyed(*db, "b", 5);
    enqueue_keyed(*db, "", 5);
    auto got = claim(*db, 20);
    CHECK(by_key(got) ==
          std::map<std::string, int>{{"", 2}, {"a", 2}, {"b", 2}});
    CHECK(claim(*db, 20, "node/q/2").empty());
    // The state shows the drained keys.
    auto st = value_of(db->rate_state("api", 10));
    REQUIRE(st);
    CHECK(st->limit.allowed == 1);
    CHECK(st->limit.burst == 2);
    CHECK(st->keys.size() == 3);
    for (auto& k : st->keys) {
      CHECK(k.available == 0);
      CHECK(k.blocked_ms == 0);
    }
    // The queue knows how long until the first held job may go.
    auto wait = value_of(db->rate_wait(rated(20)));
    REQUIRE(wait);
    CHECK(*wait > 8000);
    CHECK(*wait <= 10000);
  }

  TEST_CASE_TEMPLATE("a job's cost counts against its key's bucket, in claim "
                     "order",
                     S, BG_JOBS_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_rate_limit(api(1, 10s, 5)));
    enqueue(*db, "a", 1, 3);
    enqueue(*db, "a", 1, 3);
    enqueue(*db, "a", 1, 1);
    // 3 fits; 3 more does not, and the cheap one behind it waits its turn.
    auto got = claim(*db, 10);
    REQUIRE(got.size() == 1);
    // Two starts are left, for code outside jobs too.
    auto d = value_of(db->consume_rate("api", "a", 2));
    CHECK(d.admitted);
    d = value_of(db->consume_rate("api", "a", 1));
    CHECK_FALSE(d.admitted);
    CHECK(d.wait_ms > 8000);
    CHECK(d.wait_ms <= 10000);
    CHECK(claim(*db, 10).empty());
  }

  TEST_CASE_TEMPLATE("what code outside jobs takes, claims do not get", S,
                     BG_JOBS_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_rate_limit(api(1, 10s, 3)));
    enqueue(*db, "a", 3);
    enqueue(*db, "b", 3);
    CHECK(value_of(db->consume_rate("api", "a", 3)).admitted);
    auto got = claim(*db, 10);
    CHECK(got.size() == 3); // b's burst, none of a's
    auto other = value_of(db->consume_rate("api", "b", 1));
    CHECK_FALSE(other.admitted);
    CHECK(other.wait_ms > 0);
  }

  TEST_CASE_TEMPLATE("a blocked key starts nothing until the block ends, and the "
                     "others go on",
                     S, BG_JOBS_STORES) {
    S store;
    auto db = store.fresh();
    // 100 at once, then one start per 10 s.
    require_ok(db->set_rate_limit(api(100, 1000s, 100)));
    enqueue_keyed(*db, "a", 3);
    enqueue_keyed(*db, "b", 3);
    require_ok(db->block_rate_key("api", "a", 60000));
    CHECK(by_key(claim(*db, 10)) == std::map<std::string, int>{{"b", 3}});
    auto wait = value_of(db->rate_wait(rated(10)));
    REQUIRE(wait);
    CHECK(*wait > 50000);
    CHECK(*wait <= 60000);
    // A shorter block does not shorten it.
    require_ok(db->block_rate_key("api", "a", 10));
    auto st = value_of(db->rate_state("api", 10));
    REQUIRE(st);
    // Blocked first; b drew 3 of its 100.
    REQUIRE(st->keys.size() == 2);
    CHECK(st->keys[0].key == "a");
    CHECK(st->keys[0].blocked_ms > 50000);
    CHECK(st->keys[0].available == 0);
    CHECK(st->keys[1].key == "b");
    CHECK(st->keys[1].blocked_ms == 0);
    CHECK(st->keys[1].available >= 97);
  }

  TEST_CASE_TEMPLATE("a handler's back-pressure blocks its job's key and "
                     "uses no attempt",
                     S, BG_JOBS_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_rate_limit(api(1000, 1000ms, 1)));
    enqueue_keyed(*db, "a", 2);
    enqueue_keyed(*db, "b", 1);
    auto first = claim(*db, 1);
    REQUIRE(first.size() == 1);
    REQUIRE(first[0].attempts == 1);
    completion c;
    c.what = completion::kind::snooze;
    c.job_id = first[0].id;
    c.reserved_by = first[0].reserved_by;
    c.available_at = clock::system()->now();
    c.rate_limit = "api";
    c.block_ms = 60000;
    CHECK(value_of(db->complete_jobs({c})) == std::vector<bool>{true});
    auto back = value_of(db->get_job(first[0].id));
    CHECK(back.attempts == 0);
    CHECK_FALSE(back.reserved_by);
    // Only b's job goes, now and later.
    auto got = claim(*db, 10);
    CHECK(by_key(got) == std::map<std::string, int>{{"b", 1}});
    CHECK(claim(*db, 10).empty());
    // A late second report of the same attempt changes nothing.
    CHECK(value_of(db->complete_jobs({c})) == std::vector<bool>{false});
  }

  TEST_CASE_TEMPLATE("bad rate limits, keys and costs are refused and change "
                     "nothing",
                     S, BG_JOBS_STORES) {
    S store;
    auto db = store.fresh();
    for (auto bad : {rate_limit{"", 1, 1000ms, 1},
                     rate_limit{"a b", 1, 1000ms, 1},
                     rate_limit{std::string(64, 'x'), 1, 1000ms, 1},
                     rate_limit{"api", 0, 1000ms, 1},
                     rate_limit{"api", -5, 1000ms, 1},
                     rate_limit{"api", 1, 0ms, 1},
                     rate_limit{"api", 1, -1000ms, 1},
                     rate_limit{"api", 1, std::chrono::hours{24 * 31}, 1},
                     rate_limit{"api", 1, 1000ms, -1},
                     rate_limit{"api", 1, 1000ms, 1'000'001}}) {
      CAPTURE(bad.name);
      CHECK(error_of(db->set_rate_limit(bad)) == errc::invalid_argument);
    }
    CHECK_FALSE(value_of(db->rate_state("api", 10)));
    CHECK(error_of(db->consume_rate("api", "a", 1)) ==
          errc::invalid_argument); // no such limit
    require_ok(db->set_rate_limit(api(10, 1000ms, 5)));
    for (int64_t cost : {0, -1, 6})
      CHECK(error_of(db->consume_rate("api", "a", cost)) ==
            errc::invalid_argument);
    for (auto key : {std::string{"\xff\xfe"}, std::string(256, 'k'),
                     std::string{"a\nb"}}) {
      CHECK(error_of(db->consume_rate("api", key, 1)) ==
            errc::invalid_argument);
      CHECK(error_of(db->block_rate_key("api", key, 10)) ==
            errc::invalid_argument);
      CHECK(error_of(db->enqueue_job(job_request{"work"}.with_rate(key))) ==
            errc::invalid_argument);
    }
    CHECK(error_of(db->block_rate_key("api", "a", -1)) ==
          errc::invalid_argument);
    for (int64_t cost : {int64_t{0}, int64_t{-3}, max_rate_cost + 1})
      CHECK(error_of(db->enqueue_job(job_request{"work"}.with_rate("a", cost))) ==
            errc::invalid_argument);
    CHECK(value_of(db->stats()).pending() == 0);
    // Nothing was taken from any key.
    auto st = value_of(db->rate_state("api", 10));
    REQUIRE(st);
    CHECK(st->keys.empty());
  }

  TEST_CASE_TEMPLATE("claimers on separate connections never start more than "
                     "the rate allows",
                     S, BG_JOBS_STORES) {
    S store;
    auto db = store.fresh();
    // 20 per second after a burst of 5: one start per 50 ms.
    require_ok(db->set_rate_limit(api(20, 1000ms, 5)));
    enqueue(*db, "", 200);
    std::atomic<size_t> total{0};
    std::atomic<bool> failed{false};
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> claimers;
    for (int t = 0; t < 4; ++t)
      claimers.emplace_back([&, t] {
        auto own = store.connect();
        auto owner = "node/q/" + std::to_string(t);
        while (std::chrono::steady_clock::now() - t0 < 600ms) {
          auto got = own->reserve_jobs(rated(10, owner));
          if (got)
            total += got->size();
          else if (code_of(got.error()) != errc::database_locked)
            failed = true;
        }
      });
    for (auto& c : claimers)
      c.join();
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    CHECK_FALSE(failed);
    CHECK(total >= 5);
    CHECK(total <= 5 + static_cast<size_t>(elapsed.count() / 50) + 1);
  }
}
