// Concurrency limits per key, per queue total, on every store: what a
// limited claim admits, that a saturated key blocks nothing else, and that
// concurrent claimers on separate connections never exceed a limit.
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <doctest/doctest.h>

#include "adapters/stores.hpp"
#include "bg_jobs/core/clock.hpp"
#include "bg_jobs/core/workflow.hpp"
#include "support/expect.hpp"
#include "support/store_reads.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

using test::error_of;
using test::require_ok;
using test::value_of;

const std::string queue = "q";

std::vector<job> claim(db_adapter& db, int limit,
                       std::string owner = "node/q/1") {
  reserve_params p{{"work"}, limit, std::move(owner), queue};
  p.limited = true;
  return value_of(db.reserve_jobs(p));
}

job_request keyed(std::string key, std::string second = {}) {
  return std::move(
      job_request{"work"}.with_concurrency_key(std::move(key),
                                               std::move(second)));
}

void enqueue(db_adapter& db, const job_request& r, int n = 1) {
  for (int i = 0; i < n; ++i)
    value_of(db.enqueue_job(r));
}

std::map<std::string, int> per_key(const std::vector<job>& jobs) {
  std::map<std::string, int> out;
  for (auto& j : jobs) {
    if (!j.concurrency_key.empty())
      ++out[j.concurrency_key];
    if (!j.second_concurrency_key.empty())
      ++out[j.second_concurrency_key];
  }
  return out;
}

void succeed(db_adapter& db, const job& j) {
  completion c;
  c.job_id = j.id;
  c.reserved_by = j.reserved_by;
  auto applied = value_of(db.complete_jobs({c}));
  REQUIRE(applied == std::vector<bool>{true});
}

concurrency_limit per_key_limit(int n) {
  return {limit_kind::per_key, "", n};
}

concurrency_limit key_limit(std::string key, int n) {
  return {limit_kind::key, std::move(key), n};
}

} // namespace

TEST_SUITE("limits") {

  TEST_CASE_TEMPLATE("a per-key limit bounds every claim until a job ends", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {per_key_limit(2)}));
    enqueue(*db, keyed("a"), 5);
    enqueue(*db, keyed("b"), 5);
    auto first = claim(*db, 10);
    CHECK(per_key(first) == std::map<std::string, int>{{"a", 2}, {"b", 2}});
    CHECK(claim(*db, 10, "node/q/2").empty());
    auto a = std::find_if(first.begin(), first.end(), [](const job& j) {
      return j.concurrency_key == "a";
    });
    succeed(*db, *a);
    auto next = claim(*db, 10, "node/q/2");
    CHECK(per_key(next) == std::map<std::string, int>{{"a", 1}});
  }

  TEST_CASE_TEMPLATE("a completion frees its slot for the claim it comes "
                     "with",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {per_key_limit(1)}));
    enqueue(*db, keyed("a"), 3);
    auto first = claim(*db, 5);
    REQUIRE(first.size() == 1);
    completion done;
    done.job_id = first[0].id;
    done.reserved_by = first[0].reserved_by;
    reserve_params p{{"work"}, 5, "node/q/1", queue};
    p.limited = true;
    auto both = value_of(db->complete_and_reserve({done}, p));
    CHECK(both.applied == std::vector<bool>{true});
    REQUIRE(both.reserved.size() == 1);
    CHECK(both.reserved[0].id != first[0].id);
    // A late success of the first job, rescued meanwhile, frees nothing.
    auto again = value_of(db->complete_and_reserve({done}, p));
    CHECK(again.applied == std::vector<bool>{false});
    CHECK(again.reserved.empty());
  }

  TEST_CASE_TEMPLATE("jobs without a key are not limited by the key limits", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {per_key_limit(1)}));
    enqueue(*db, job_request{"work"}, 4);
    enqueue(*db, keyed("a"), 3);
    auto got = claim(*db, 10);
    CHECK(got.size() == 5);
    CHECK(per_key(got) == std::map<std::string, int>{{"a", 1}});
  }

  TEST_CASE_TEMPLATE("a key's own limit overrides the per-key limit", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {per_key_limit(1), key_limit("big", 3)}));
    enqueue(*db, keyed("big"), 5);
    enqueue(*db, keyed("small"), 5);
    auto got = claim(*db, 10);
    CHECK(per_key(got) ==
          std::map<std::string, int>{{"big", 3}, {"small", 1}});
  }

  TEST_CASE_TEMPLATE("a saturated key does not hold back the keys behind it", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {per_key_limit(2)}));
    // The hot key's 500 jobs come first, more than a claim looks at.
    std::vector<job_request> batch(500, keyed("hot"));
    value_of(db->enqueue_jobs(batch));
    for (int k = 0; k < 20; ++k)
      enqueue(*db, keyed("k" + std::to_string(k)), 2);
    std::vector<job> got;
    for (int i = 0; i < 3; ++i)
      for (auto& j : claim(*db, 30, "node/q/" + std::to_string(i)))
        got.push_back(j);
    auto counts = per_key(got);
    CHECK(counts["hot"] == 2);
    CHECK(got.size() == 42); // every other key's two jobs
  }

  TEST_CASE_TEMPLATE("a claim serves the first job of every key before "
                     "anyone's second",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {per_key_limit(5)}));
    for (auto key : {"a", "b", "c"})
      enqueue(*db, keyed(key), 4);
    auto got = claim(*db, 3);
    CHECK(per_key(got) ==
          std::map<std::string, int>{{"a", 1}, {"b", 1}, {"c", 1}});
    got = claim(*db, 4);
    CHECK(per_key(got) ==
          std::map<std::string, int>{{"a", 2}, {"b", 1}, {"c", 1}});
  }

  TEST_CASE_TEMPLATE("a job with two keys runs only when both have room", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(
        db->set_limits(queue, {per_key_limit(5), key_limit("shared", 1)}));
    enqueue(*db, keyed("t1", "shared"));
    enqueue(*db, keyed("t2", "shared"));
    enqueue(*db, keyed("shared")); // the shared key as a first key
    enqueue(*db, keyed("t3"));
    auto got = claim(*db, 10);
    CHECK(got.size() == 2);
    CHECK(per_key(got) ==
          std::map<std::string, int>{{"shared", 1}, {"t1", 1}, {"t3", 1}});
    CHECK(claim(*db, 10, "node/q/2").empty());
    succeed(*db, *std::find_if(got.begin(), got.end(), [](const job& j) {
      return j.concurrency_key == "t1";
    }));
    auto next = claim(*db, 10, "node/q/2");
    REQUIRE(next.size() == 1);
    CHECK(next[0].concurrency_key == "t2");
  }

  TEST_CASE_TEMPLATE("the queue's total caps claims of every owner", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {{limit_kind::total, "", 3}}));
    enqueue(*db, job_request{"work"}, 10);
    CHECK(claim(*db, 2, "a/q/1").size() == 2);
    CHECK(claim(*db, 5, "b/q/1").size() == 1);
    CHECK(claim(*db, 5, "c/q/1").empty());
  }

  TEST_CASE_TEMPLATE("a limit lowered below what runs admits nothing until "
                     "the running jobs end",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {per_key_limit(3)}));
    enqueue(*db, keyed("a"), 6);
    auto running = claim(*db, 10);
    REQUIRE(running.size() == 3);
    require_ok(db->set_limit(queue, per_key_limit(1)));
    CHECK(claim(*db, 10).empty());
    succeed(*db, running[0]);
    CHECK(claim(*db, 10).empty());
    succeed(*db, running[1]);
    CHECK(claim(*db, 10).empty());
    succeed(*db, running[2]);
    CHECK(claim(*db, 10).size() == 1);
  }

  TEST_CASE_TEMPLATE("retries and delayed jobs hold no slot", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(
        *parse_iso8601("2025-01-01T00:00:00Z"));
    auto db = store.fresh(clk);
    require_ok(db->set_limits(queue, {per_key_limit(1)}));
    value_of(db->enqueue_job(keyed("a").available_in(1h)));
    enqueue(*db, keyed("a"), 2);
    auto first = claim(*db, 5);
    REQUIRE(first.size() == 1);
    completion retry;
    retry.what = completion::kind::retry;
    retry.job_id = first[0].id;
    retry.reserved_by = first[0].reserved_by;
    retry.error = "later";
    retry.available_at = clk->now() + 10min;
    REQUIRE(value_of(db->complete_jobs({retry})) == std::vector<bool>{true});
    auto second = claim(*db, 5);
    REQUIRE(second.size() == 1);
    CHECK(second[0].id != first[0].id);
  }

  TEST_CASE_TEMPLATE("a rescued job's late result frees no slot", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {per_key_limit(1)}));
    enqueue(*db, keyed("a"), 2);
    auto first = claim(*db, 5, "dead/q/1");
    REQUIRE(first.size() == 1);
    // Its node is presumed dead: the job is released and claimed again.
    REQUIRE(value_of(db->release_jobs_reserved_by("dead/q/1")).size() == 1);
    auto again = claim(*db, 5, "live/q/1");
    REQUIRE(again.size() == 1);
    CHECK(again[0].id == first[0].id);
    // The first owner finishes late: nothing applies, nothing is freed.
    completion late;
    late.job_id = first[0].id;
    late.reserved_by = first[0].reserved_by;
    CHECK(value_of(db->complete_jobs({late})) == std::vector<bool>{false});
    CHECK(claim(*db, 5, "other/q/1").empty());
    succeed(*db, again[0]);
    CHECK(claim(*db, 5, "other/q/1").size() == 1);
  }

  TEST_CASE_TEMPLATE("a failed job retried by hand keeps its keys", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {per_key_limit(1)}));
    enqueue(*db, keyed("a", "b"));
    auto first = claim(*db, 5);
    REQUIRE(first.size() == 1);
    completion fail;
    fail.what = completion::kind::failed;
    fail.job_id = first[0].id;
    fail.reserved_by = first[0].reserved_by;
    fail.error = "boom";
    REQUIRE(value_of(db->complete_jobs({fail})) == std::vector<bool>{true});
    auto failed = value_of(db->get_job(first[0].id));
    CHECK(failed.concurrency_key == "a");
    CHECK(failed.second_concurrency_key == "b");
    value_of(db->retry_job(first[0].id));
    auto again = claim(*db, 5);
    REQUIRE(again.size() == 1);
    CHECK(again[0].concurrency_key == "a");
    CHECK(again[0].second_concurrency_key == "b");
  }

  TEST_CASE_TEMPLATE("claimers on separate connections never exceed a key's "
                     "limit",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto setup = store.fresh();
    require_ok(setup->set_limits(queue, {per_key_limit(1)}));
    std::vector<job_request> batch;
    for (int i = 0; i < 300; ++i)
      batch.push_back(keyed("k" + std::to_string(i % 6)));
    value_of(setup->enqueue_jobs(batch));
    std::mutex mtx;
    std::map<std::string, int> holding;
    int worst = 0;
    std::atomic<int> done{0};
    std::atomic<int> failures{0};
    auto claimer = [&](int n) {
      auto db = store.connect();
      auto owner = "node" + std::to_string(n) + "/q/1";
      auto deadline = std::chrono::steady_clock::now() + 120s;
      while (done < 300 && std::chrono::steady_clock::now() < deadline) {
        reserve_params p{{"work"}, 3, owner, queue};
        p.limited = true;
        auto got = db->reserve_jobs(p);
        if (!got) {
          // A lock timeout or a serialization failure: the claim is tried
          // again, as a queue does.
          ++failures;
          continue;
        }
        if (got->empty()) {
          std::this_thread::sleep_for(1ms); // nothing ready: poll again
          continue;
        }
        {
          std::lock_guard<std::mutex> guard{mtx};
          for (auto& j : *got)
            worst = std::max(worst, ++holding[j.concurrency_key]);
        }
        std::this_thread::sleep_for(1ms); // the work
        std::vector<completion> cs;
        {
          std::lock_guard<std::mutex> guard{mtx};
          for (auto& j : *got) {
            --holding[j.concurrency_key];
            completion c;
            c.job_id = j.id;
            c.reserved_by = j.reserved_by;
            cs.push_back(c);
          }
        }
        auto applied = db->complete_jobs(cs);
        if (applied)
          done += static_cast<int>(
              std::count(applied->begin(), applied->end(), true));
      }
    };
    std::vector<std::thread> threads;
    for (int n = 0; n < 4; ++n)
      threads.emplace_back(claimer, n);
    for (auto& t : threads)
      t.join();
    CHECK(worst == 1);
    CHECK(done == 300);
    CHECK(failures < 300);
  }

  TEST_CASE_TEMPLATE("limits are replaced, changed and removed as stored", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(
        queue, {per_key_limit(2), key_limit("x", 4), {limit_kind::total, "", 9}}));
    auto stored = value_of(db->stored_limits(queue));
    CHECK(stored == std::vector<concurrency_limit>{
                        per_key_limit(2), {limit_kind::total, "", 9},
                        key_limit("x", 4)});
    require_ok(db->set_limit(queue, key_limit("x", 5)));
    require_ok(db->set_limit(queue, {limit_kind::total, "", 0}));
    stored = value_of(db->stored_limits(queue));
    CHECK(stored ==
          std::vector<concurrency_limit>{per_key_limit(2), key_limit("x", 5)});
    require_ok(db->set_limits(queue, {}));
    CHECK(value_of(db->stored_limits(queue)).empty());
    CHECK(value_of(db->stored_limits("other")).empty());
  }

  TEST_CASE_TEMPLATE("bad limits and bad keys are refused and change nothing",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {per_key_limit(2)}));
    const std::vector<std::vector<concurrency_limit>> bad = {
        {per_key_limit(0)},
        {per_key_limit(-3)},
        {key_limit("", 1)},
        {key_limit(std::string(256, 'k'), 1)},
        {key_limit("bad\xff", 1)},
        {key_limit("ctl\x01", 1)},
        {{limit_kind::per_key, "x", 1}},
        {per_key_limit(1), per_key_limit(2)},
        {key_limit("a", 1), key_limit("a", 2)},
    };
    for (auto& limits : bad) {
      CHECK(error_of(db->set_limits(queue, limits)) == errc::invalid_argument);
      // One limit at a time; 0 asks set_limit to remove one.
      if (limits.size() == 1 && limits.front().max_running != 0)
        CHECK(error_of(db->set_limit(queue, limits.front())) ==
              errc::invalid_argument);
    }
    CHECK(error_of(db->set_limits("", {per_key_limit(1)})) ==
          errc::invalid_argument);
    CHECK(value_of(db->stored_limits(queue)) ==
          std::vector<concurrency_limit>{per_key_limit(2)});
    for (auto& r : {keyed(std::string(256, 'k')), keyed("a\xc3"),
                    keyed("a", "a"), keyed("", "b"), keyed("nl\n")}) {
      CHECK(error_of(db->enqueue_job(r)) == errc::invalid_argument);
      CHECK(error_of(db->enqueue_jobs({job_request{"work"}, r})) ==
            errc::invalid_argument);
    }
    CHECK(value_of(test::all_in(*db, job_state::waiting)).empty());
    // The longest key is fine.
    value_of(db->enqueue_job(keyed(std::string(255, 'k'))));
  }
  TEST_CASE_TEMPLATE("the keys in use show what runs and waits against "
                     "each key's limit, the most waiting first",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {per_key_limit(2), key_limit("vip", 5)}));
    enqueue(*db, keyed("a"), 4);
    enqueue(*db, keyed("vip", "shared"), 3);
    enqueue(*db, keyed("b"), 1);
    // Delayed: not waiting yet. Another name: not this queue's.
    value_of(db->enqueue_job(keyed("c").available_in(1h)));
    value_of(db->enqueue_job(job_request{"other"}.with_concurrency_key("d")));
    auto taken = claim(*db, 3);
    auto keys = value_of(db->keys_in_use(queue, {"work"}, 10));
    std::map<std::string, key_usage> by_key;
    for (auto& k : keys)
      by_key[k.key] = k;
    CHECK(by_key.count("c") == 0);
    CHECK(by_key.count("d") == 0);
    REQUIRE(by_key.size() == 4);
    auto held = per_key(taken);
    for (auto& [key, u] : by_key) {
      INFO(key);
      CHECK(u.running == held[key]);
    }
    CHECK(by_key["a"].running + by_key["a"].waiting == 4);
    CHECK(by_key["a"].max_running == 2);
    CHECK(by_key["vip"].max_running == 5);
    CHECK(by_key["shared"].max_running == 2);
    CHECK(by_key["vip"].running + by_key["vip"].waiting == 3);
    CHECK(by_key["b"].running + by_key["b"].waiting == 1);
    CHECK(by_key["a"].full() == (held["a"] == 2));
    CHECK_FALSE(by_key["vip"].full());
    for (size_t i = 1; i < keys.size(); ++i)
      CHECK(keys[i - 1].waiting >= keys[i].waiting);
    CHECK(value_of(db->keys_in_use(queue, {"work"}, 2)).size() == 2);
    CHECK(value_of(db->keys_in_use(queue, {"nothing"}, 10)).empty());
  }
  TEST_CASE_TEMPLATE("a sequence runs a key's jobs one at a time in the "
                     "order they were enqueued",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {{limit_kind::sequence, "", 1}}));
    std::vector<int64_t> a;
    for (int i = 0; i < 3; ++i)
      a.push_back(value_of(db->enqueue_job(keyed("a").with_priority(5))).id);
    // Enqueued later with a better priority: it still waits its turn.
    a.push_back(value_of(db->enqueue_job(keyed("a").with_priority(0))).id);
    auto b = value_of(db->enqueue_job(keyed("b"))).id;
    auto plain = value_of(db->enqueue_job(job_request{"work"})).id;
    auto first = claim(*db, 10);
    std::set<int64_t> got;
    for (auto& j : first)
      got.insert(j.id);
    CHECK(got == std::set<int64_t>{a[0], b, plain});
    CHECK(claim(*db, 10, "node/q/2").empty());
    for (size_t i = 1; i < a.size(); ++i) {
      auto head = std::find_if(first.begin(), first.end(), [](const job& j) {
        return j.concurrency_key == "a";
      });
      REQUIRE(head != first.end());
      succeed(*db, *head);
      first = claim(*db, 10, "node/q/" + std::to_string(i + 2));
      REQUIRE(first.size() == 1);
      CHECK(first[0].id == a[i]);
    }
  }

  TEST_CASE_TEMPLATE("in a sequence an older job that arrives while a newer "
                     "one of its key runs waits for it",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    // A workflow's task keeps the id it was given when the workflow was
    // enqueued, and arrives in the jobs table only when its parent is done:
    // here after a newer job of its key has started.
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {{limit_kind::sequence, "", 1}}));
    workflow w{"late"};
    w.add("parent", job_request{"work"});
    w.add("older", keyed("k"), {"parent"});
    auto ids = value_of(db->enqueue_workflow(w));
    auto newer = value_of(db->enqueue_job(keyed("k"))).id;
    REQUIRE(ids.tasks.at("older") < newer);
    auto first = claim(*db, 10);
    REQUIRE(first.size() == 2);
    auto is_newer = [&](const job& j) { return j.id == newer; };
    auto running_at = std::find_if(first.begin(), first.end(), is_newer);
    REQUIRE(running_at != first.end());
    auto running = *running_at;
    succeed(*db, *std::find_if_not(first.begin(), first.end(), is_newer));
    CHECK(value_of(db->get_job(ids.tasks.at("older"))).state ==
          job_state::waiting);
    // The older task is the key's oldest job now, but the newer one runs:
    // nothing else of the key goes until it ends.
    CHECK(claim(*db, 10, "node/q/2").empty());
    succeed(*db, running);
    auto next = claim(*db, 10, "node/q/3");
    REQUIRE(next.size() == 1);
    CHECK(next[0].id == ids.tasks.at("older"));
  }

  TEST_CASE_TEMPLATE("a failed head blocks its key, and only its key, until "
                     "it is retried, deleted or the key unblocked",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {{limit_kind::sequence, "", 1}}));
    std::vector<int64_t> a;
    for (int i = 0; i < 3; ++i)
      a.push_back(value_of(db->enqueue_job(keyed("a"))).id);
    auto b1 = value_of(db->enqueue_job(keyed("b"))).id;
    auto b2 = value_of(db->enqueue_job(keyed("b"))).id;
    auto first = claim(*db, 10);
    REQUIRE(first.size() == 2);
    auto head_of = [&](const std::string& k) {
      return *std::find_if(first.begin(), first.end(),
                           [&](const job& j) { return j.concurrency_key == k; });
    };
    require_ok(db->move_job_to_failed(head_of("a"), "broken"));
    succeed(*db, head_of("b"));
    // b goes on; a is held by its failed head.
    auto next = claim(*db, 10);
    REQUIRE(next.size() == 1);
    CHECK(next[0].id == b2);
    auto blocked = value_of(db->blocked_keys(queue, {"work"}));
    REQUIRE(blocked.size() == 1);
    CHECK(blocked[0].key == "a");
    CHECK(blocked[0].failed_job == a[0]);
    CHECK(blocked[0].waiting == 2);
    CHECK(value_of(db->blocked_keys("other", {"work"})).empty());
    // Retried, the failed head runs again first.
    value_of(db->retry_job(a[0]));
    next = claim(*db, 10);
    REQUIRE(next.size() == 1);
    CHECK(next[0].id == a[0]);
    // It fails again; an operator unblocks the key: the next one goes, and
    // the failed job stays failed.
    require_ok(db->move_job_to_failed(next[0], "broken again"));
    CHECK(claim(*db, 10).empty());
    CHECK(value_of(db->unblock_key({"work"}, "a")) == 1);
    CHECK(value_of(db->blocked_keys(queue, {"work"})).empty());
    CHECK(value_of(db->get_job(a[0])).state == job_state::failed);
    next = claim(*db, 10);
    REQUIRE(next.size() == 1);
    CHECK(next[0].id == a[1]);
    // Deleted: a failed head holds nothing either.
    require_ok(db->move_job_to_failed(next[0], "broken"));
    CHECK(claim(*db, 10).empty());
    require_ok(db->delete_job(a[1]));
    next = claim(*db, 10);
    REQUIRE(next.size() == 1);
    CHECK(next[0].id == a[2]);
    (void)b1;
  }

  TEST_CASE_TEMPLATE("a queue made a sequence after its jobs were enqueued "
                     "and claimed runs them in order, and a blocked key "
                     "counts every waiting job",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    // SQLite indexes a key's jobs only once a sequence's claim has seen
    // them: jobs from before the sequence, and those enqueued or retried
    // since its last claim, are held to it all the same.
    S store;
    auto db = store.fresh();
    require_ok(db->set_limits(queue, {per_key_limit(10)}));
    auto b = value_of(db->enqueue_job(keyed("b").with_priority(5))).id;
    std::vector<int64_t> a;
    for (int i = 0; i < 3; ++i)
      a.push_back(value_of(db->enqueue_job(keyed("a").with_priority(5))).id);
    // The newest of its key, and first in claim order.
    auto a_urgent =
        value_of(db->enqueue_job(keyed("a").with_priority(0))).id;
    auto before = claim(*db, 1);
    REQUIRE(before.size() == 1);
    CHECK(before[0].id == a_urgent);
    REQUIRE(value_of(db->release_jobs_reserved_by("node/q/1"))
                .size() == 1);
    require_ok(db->set_limits(queue, {{limit_kind::sequence, "", 1}}));
    auto first = claim(*db, 10, "node/q/2");
    std::set<int64_t> got;
    for (auto& j : first)
      got.insert(j.id);
    CHECK(got == std::set<int64_t>{a[0], b});
    auto head = std::find_if(first.begin(), first.end(),
                             [&](const job& j) { return j.id == a[0]; });
    REQUIRE(head != first.end());
    require_ok(db->move_job_to_failed(*head, "broken"));
    // Enqueued after the sequence's last claim.
    value_of(db->enqueue_job(keyed("a")));
    auto blocked = value_of(db->blocked_keys(queue, {"work"}));
    REQUIRE(blocked.size() == 1);
    CHECK(blocked[0].key == "a");
    CHECK(blocked[0].waiting == 4);
    CHECK(claim(*db, 10, "node/q/3").empty());
    blocked = value_of(db->blocked_keys(queue, {"work"}));
    REQUIRE(blocked.size() == 1);
    CHECK(blocked[0].waiting == 4);
    CHECK(value_of(db->unblock_key({"work"}, "a")) == 1);
    auto next = claim(*db, 10, "node/q/4");
    REQUIRE(next.size() == 1);
    CHECK(next[0].id == a[1]);
  }

  TEST_CASE_TEMPLATE("a sequence that skips failed jobs lets the next go, and "
                     "a delayed head holds its key",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    require_ok(
        db->set_limits(queue, {{limit_kind::sequence_skip_failed, "", 1}}));
    auto a1 = value_of(db->enqueue_job(keyed("a"))).id;
    auto a2 = value_of(db->enqueue_job(keyed("a"))).id;
    auto later = value_of(db->enqueue_job(keyed("c").available_in(1h))).id;
    auto c2 = value_of(db->enqueue_job(keyed("c"))).id;
    auto first = claim(*db, 10);
    REQUIRE(first.size() == 1);
    CHECK(first[0].id == a1);
    require_ok(db->move_job_to_failed(first[0], "broken"));
    CHECK(value_of(db->blocked_keys(queue, {"work"})).empty());
    auto next = claim(*db, 10);
    REQUIRE(next.size() == 1);
    CHECK(next[0].id == a2);
    (void)later;
    (void)c2;
  }

  TEST_CASE_TEMPLATE("bad sequence declarations are refused", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    CHECK(error_of(db->set_limits(queue, {{limit_kind::sequence, "", 2}})) ==
          errc::invalid_argument);
    CHECK(error_of(db->set_limits(queue, {{limit_kind::sequence, "k", 1}})) ==
          errc::invalid_argument);
    CHECK(error_of(db->set_limits(
              queue, {{limit_kind::sequence, "", 1},
                      {limit_kind::sequence_skip_failed, "", 1}})) ==
          errc::invalid_argument);
    CHECK(value_of(db->stored_limits(queue)).empty());
  }
}
