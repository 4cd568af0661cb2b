// The adapter conformance suite: every case runs against every store in
// BG_JOBS_CONFORMANCE_STORES, so that all adapters keep one contract.
#include <algorithm>
#include <atomic>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "adapters/stores.hpp"
#include "bg_jobs/core/clock.hpp"
#include "support/expect.hpp"
#include "support/store_reads.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

const timestamp t0 = *parse_iso8601("2024-09-29T10:30:00.123Z");

std::shared_ptr<manual_clock> pinned() {
  return std::make_shared<manual_clock>(t0);
}

using test::require_ok;
using test::value_of;

std::vector<job> reserve(db_adapter& db, std::vector<std::string> names,
                         int limit, std::string owner = "node/q/1") {
  return value_of(
      db.reserve_jobs({std::move(names), limit, std::move(owner), ""}));
}

/// Releases one job's reservation, as a rescue does.
void release_one(db_adapter& db, int64_t id, const std::string& owner = "node/q/1") {
  std::vector<int64_t> keep;
  for (auto& j : value_of(db.get_running_jobs_of_owner(owner)))
    if (j.id != id)
      keep.push_back(j.id);
  value_of(db.release_unheld(owner, keep));
}

template <class Jobs>
std::vector<int64_t> ids_of(const Jobs& jobs) {
  std::vector<int64_t> ids;
  for (auto& j : jobs)
    ids.push_back(j.id);
  return ids;
}

} // namespace

TEST_SUITE("conformance") {

  TEST_CASE_TEMPLATE("enqueue stores a job and returns it as stored", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh(pinned());
    auto j = value_of(db->enqueue_job(job_request{"test-job", {{"n", 1}}}));
    CHECK(j.id > 0);
    CHECK(j.name == "test-job");
    CHECK(j.payload == nlohmann::json{{"n", 1}});
    CHECK(j.attempts == 0);
    CHECK(j.created_at == t0);
    CHECK(j.available_at == t0);
    CHECK_FALSE(j.reserved_at);
    CHECK_FALSE(j.reserved_by);
    auto stored = value_of(test::enqueued(*db, "test-job"));
    REQUIRE(stored.size() == 1);
    CHECK(test::as_job(stored[0]) == j);
  }

  TEST_CASE_TEMPLATE("ids are unique integers that grow", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto a = value_of(db->enqueue_job(job_request{"a"}));
    auto b = value_of(db->enqueue_job(job_request{"a"}));
    CHECK(b.id > a.id);
    require_ok(db->move_job_to_succeeded(b));
    auto c = value_of(db->enqueue_job(job_request{"a"}));
    CHECK(c.id > b.id);
    // With every job gone (the greatest id last), single and bulk enqueues
    // (past 64 jobs, multi-row statements) still take new ids.
    require_ok(db->move_job_to_succeeded(a));
    require_ok(db->move_job_to_failed(c, "x"));
    std::vector<job_request> many(100, job_request{"a"});
    auto ids = value_of(db->enqueue_jobs(many));
    REQUIRE(ids.size() == 100);
    CHECK(ids.front() > c.id);
    CHECK(std::adjacent_find(ids.begin(), ids.end(), [](auto x, auto y) {
            return y <= x;
          }) == ids.end());
    auto stored = value_of(test::enqueued(*db, "a"));
    CHECK(stored.size() == 100);
    CHECK(ids_of(stored) == ids);
    auto d = value_of(db->enqueue_job(job_request{"a"}));
    CHECK(d.id > ids.back());
  }

  TEST_CASE_TEMPLATE("reserve respects the limit", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    for (int i = 0; i < 5; ++i)
      value_of(db->enqueue_job(job_request{"test-job"}));
    CHECK(reserve(*db, {"test-job"}, 2).size() == 2);
    CHECK(reserve(*db, {"test-job"}, 2).size() == 2);
    CHECK(reserve(*db, {"test-job"}, 2).size() == 1);
    CHECK(reserve(*db, {"test-job"}, 2).empty());
  }

  TEST_CASE_TEMPLATE("reserve returns the job with its reservation", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    auto j = value_of(db->enqueue_job(job_request{"test-job", "payload"}));
    clk->advance(5s);
    auto got = reserve(*db, {"test-job"}, 3, "default_queue");
    REQUIRE(got.size() == 1);
    CHECK(got[0].id == j.id);
    CHECK(got[0].payload == "payload");
    CHECK(got[0].created_at == t0);
    CHECK(got[0].available_at == t0);
    CHECK(got[0].reserved_at == t0 + 5s);
    CHECK(got[0].reserved_by == "default_queue");
    CHECK(got[0].attempts == 1);
    auto running = value_of(test::running(*db));
    REQUIRE(running.size() == 1);
    CHECK(test::as_job(running[0]) == got[0]);
  }

  TEST_CASE_TEMPLATE("reserve filters by job name", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto a = value_of(db->enqueue_job(job_request{"a"}));
    auto b = value_of(db->enqueue_job(job_request{"b"}));
    value_of(db->enqueue_job(job_request{"c"}));
    CHECK(reserve(*db, {"job_name"}, 3).empty());
    CHECK(reserve(*db, {}, 3).empty());
    auto got = reserve(*db, {"b", "a"}, 10);
    CHECK(ids_of(got) == std::vector<int64_t>{a.id, b.id});
    CHECK(value_of(test::enqueued(*db, "c")).size() == 1);
  }

  TEST_CASE_TEMPLATE("reserve on an empty table returns nothing", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    CHECK(reserve(*db, {"job_name"}, 3).empty());
  }

  TEST_CASE_TEMPLATE("reserve takes available jobs by available_at then id", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    auto late = value_of(db->enqueue_job(job_request{"j"}.available_in(30s)));
    auto second = value_of(db->enqueue_job(job_request{"j"}.available_in(10s)));
    auto third = value_of(db->enqueue_job(job_request{"j"}.available_in(10s)));
    auto first =
        value_of(db->enqueue_job(job_request{"j"}.available_at(t0 - 1h)));
    auto future = value_of(db->enqueue_job(job_request{"j"}.available_in(1h)));
    clk->advance(30s);
    auto got = reserve(*db, {"j"}, 10);
    CHECK(ids_of(got) ==
          std::vector<int64_t>{first.id, second.id, third.id, late.id});
    auto pending = value_of(test::enqueued(*db, "j"));
    REQUIRE(pending.size() == 1);
    CHECK(pending[0].id == future.id);
  }

  TEST_CASE_TEMPLATE("a delayed job becomes reservable at its time", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    auto j =
        value_of(db->enqueue_job(job_request{"test_job"}.available_in(1s)));
    CHECK(j.available_at == t0 + 1s);
    CHECK(reserve(*db, {"test_job"}, 1).empty());
    clk->advance(999ms);
    CHECK(reserve(*db, {"test_job"}, 1).empty());
    clk->advance(1ms);
    CHECK(ids_of(reserve(*db, {"test_job"}, 1)) == std::vector<int64_t>{j.id});
  }

  TEST_CASE_TEMPLATE("next_due says when the earliest waiting job of the "
                     "names comes due", S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    reserve_params q{{"a", "b"}, 10, "node/q/1", ""};
    auto due = [&] { return value_of(db->next_due(q, clk->now())); };
    CHECK(due() == std::nullopt);
    // Ready jobs and jobs of other names do not count.
    value_of(db->enqueue_job(job_request{"a"}));
    value_of(db->enqueue_job(job_request{"c"}.available_in(1s)));
    CHECK(due() == std::nullopt);
    // The earliest over every priority: a less urgent job due sooner.
    value_of(db->enqueue_job(job_request{"a"}.available_in(9s)));
    CHECK(due() == std::optional<int64_t>{9000});
    auto soon = value_of(db->enqueue_job(
        job_request{"b"}.available_in(4s).with_priority(max_priority)));
    CHECK(due() == std::optional<int64_t>{4000});
    clk->advance(1500ms);
    CHECK(due() == std::optional<int64_t>{2500});
    // A reserved job does not count; once due, neither does it.
    clk->advance(2500ms);
    CHECK(due() == std::optional<int64_t>{5000});
    auto got = ids_of(reserve(*db, {"a", "b"}, 10));
    CHECK(std::count(got.begin(), got.end(), soon.id) == 1);
    CHECK(due() == std::optional<int64_t>{5000});
    clk->advance(5000ms);
    CHECK(due() == std::nullopt);
    // One that came due since the claim looked is due at once.
    auto looked = clk->now();
    value_of(db->enqueue_job(job_request{"b"}.available_in(10ms)));
    clk->advance(20ms);
    CHECK(value_of(db->next_due(q, looked)) == std::optional<int64_t>{1});
    CHECK(due() == std::nullopt);
    // No names: none.
    CHECK(value_of(db->next_due({{}, 10, "node/q/1", ""}, looked)) ==
          std::nullopt);
  }

  TEST_CASE_TEMPLATE("moving to succeeded keeps every field and leaves jobs", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    auto j = value_of(
        db->enqueue_job(job_request{"test-job", {{"x", 1}}}.available_in(2s)));
    clk->advance(3s);
    auto r = reserve(*db, {"test-job"}, 1);
    REQUIRE(r.size() == 1);
    clk->advance(1s);
    require_ok(db->move_job_to_succeeded(r[0]));
    CHECK(value_of(test::enqueued(*db, "test-job")).empty());
    CHECK(value_of(test::running(*db)).empty());
    auto done = value_of(test::succeeded(*db, 10));
    REQUIRE(done.size() == 1);
    CHECK(done[0].id == j.id);
    CHECK(done[0].name == "test-job");
    CHECK(done[0].payload == nlohmann::json{{"x", 1}});
    CHECK(done[0].attempts == 1);
    CHECK(done[0].created_at == t0);
    CHECK(done[0].available_at == t0 + 2s);
    CHECK(done[0].finished_at == t0 + 4s);
  }

  TEST_CASE_TEMPLATE("moving to failed keeps every field and the exception", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    auto j = value_of(
        db->enqueue_job(job_request{"test-job", "p"}.available_in(2s)));
    clk->advance(2s);
    auto r = reserve(*db, {"test-job"}, 1);
    REQUIRE(r.size() == 1);
    clk->advance(1s);
    require_ok(db->move_job_to_failed(r[0], "test exception"));
    CHECK(value_of(db->stats()).pending() == 0);
    auto failed = value_of(test::failed(*db, 10));
    REQUIRE(failed.size() == 1);
    CHECK(failed[0].id == j.id);
    CHECK(failed[0].payload == "p");
    CHECK(failed[0].attempts == 1);
    CHECK(failed[0].error == "test exception");
    CHECK(failed[0].created_at == t0);
    CHECK(failed[0].available_at == t0 + 2s);
    CHECK(failed[0].finished_at == t0 + 3s);
  }

  TEST_CASE_TEMPLATE("an unreserved job can be moved directly", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto j = value_of(db->enqueue_job(job_request{"test-job"}));
    require_ok(db->move_job_to_succeeded(j));
    CHECK(value_of(test::succeeded(*db, 1)).size() == 1);
  }

  TEST_CASE_TEMPLATE("history lists most recent first and honours the limit", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    std::vector<int64_t> ids;
    for (int i = 0; i < 3; ++i) {
      auto j = value_of(db->enqueue_job(job_request{"j"}));
      clk->advance(1s);
      require_ok(db->move_job_to_succeeded(j));
      auto k = value_of(db->enqueue_job(job_request{"k"}));
      require_ok(db->move_job_to_failed(k, "err " + std::to_string(i)));
      ids.push_back(j.id);
    }
    auto ok = value_of(test::succeeded(*db, 2));
    REQUIRE(ok.size() == 2);
    CHECK(ok[0].id == ids[2]);
    CHECK(ok[1].id == ids[1]);
    auto failed = value_of(test::failed(*db, 1));
    REQUIRE(failed.size() == 1);
    CHECK(failed[0].error == "err 2");
  }

  TEST_CASE_TEMPLATE("attempts count every reservation across retries", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    value_of(db->enqueue_job(job_request{"j"}));
    for (int attempt = 1; attempt <= 3; ++attempt) {
      auto r = reserve(*db, {"j"}, 1);
      REQUIRE(r.size() == 1);
      CHECK(r[0].attempts == attempt);
      completion c;
      c.what = completion::kind::retry;
      c.job_id = r[0].id;
      c.reserved_by = r[0].reserved_by;
      c.error = "boom " + std::to_string(attempt);
      c.available_at = clk->now() + 10s;
      CHECK(value_of(db->complete_jobs({c})) == std::vector<bool>{true});
      CHECK(reserve(*db, {"j"}, 1).empty());
      clk->advance(10s);
    }
    auto pending = value_of(test::enqueued(*db, "j"));
    REQUIRE(pending.size() == 1);
    CHECK(pending[0].attempts == 3);
    CHECK(pending[0].error == "boom 3");
    CHECK_FALSE(pending[0].reserved_by);
  }

  TEST_CASE_TEMPLATE("a snooze does not use up an attempt", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    value_of(db->enqueue_job(job_request{"j"}));
    auto r = reserve(*db, {"j"}, 1);
    completion c;
    c.what = completion::kind::snooze;
    c.job_id = r[0].id;
    c.reserved_by = r[0].reserved_by;
    c.available_at = clk->now() + 5s;
    CHECK(value_of(db->complete_jobs({c})) == std::vector<bool>{true});
    auto pending = value_of(test::enqueued(*db, "j"));
    REQUIRE(pending.size() == 1);
    CHECK(pending[0].attempts == 0);
    CHECK(pending[0].available_at == t0 + 5s);
  }

  TEST_CASE_TEMPLATE("completion applies only while the reservation is ours", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    value_of(db->enqueue_job(job_request{"j"}));
    auto old = reserve(*db, {"j"}, 1, "node-a/q/1");
    REQUIRE(old.size() == 1);
    value_of(db->release_jobs_reserved_by("node-a/q/1"));
    auto now_held = reserve(*db, {"j"}, 1, "node-b/q/1");
    REQUIRE(now_held.size() == 1);
    auto late = db->move_job_to_succeeded(old[0]);
    REQUIRE_FALSE(late);
    CHECK(code_of(late.error()) == errc::reservation_lost);
    completion c;
    c.what = completion::kind::failed;
    c.job_id = old[0].id;
    c.reserved_by = old[0].reserved_by;
    c.error = "late";
    CHECK(value_of(db->complete_jobs({c})) == std::vector<bool>{false});
    auto running = value_of(test::running(*db));
    REQUIRE(running.size() == 1);
    CHECK(running[0].reserved_by == "node-b/q/1");
    CHECK(value_of(test::succeeded(*db, 10)).empty());
    CHECK(value_of(test::failed(*db, 10)).empty());
    require_ok(db->move_job_to_succeeded(now_held[0]));
  }

  TEST_CASE_TEMPLATE("complete_jobs persists a batch of mixed outcomes", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    for (int i = 0; i < 4; ++i)
      value_of(db->enqueue_job(job_request{"j", {{"i", i}}}));
    auto r = reserve(*db, {"j"}, 4);
    REQUIRE(r.size() == 4);
    std::vector<completion> cs(4);
    auto kinds = {completion::kind::succeeded, completion::kind::failed,
                  completion::kind::retry, completion::kind::succeeded};
    size_t i = 0;
    for (auto k : kinds) {
      cs[i].what = k;
      cs[i].job_id = r[i].id;
      cs[i].reserved_by = r[i].reserved_by;
      cs[i].error = "e";
      cs[i].available_at = clk->now();
      ++i;
    }
    cs[3].reserved_by = "someone else";
    CHECK(value_of(db->complete_jobs(cs)) ==
          std::vector<bool>{true, true, true, false});
    auto st = value_of(db->stats());
    CHECK(st.succeeded == 1);
    CHECK(st.failed == 1);
    CHECK(st.available == 1);
    CHECK(st.reserved == 1);
  }

  TEST_CASE_TEMPLATE("a batch of successes applies each that holds its "
                     "reservation, once, with history and without",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    for (bool history : {true, false}) {
      CAPTURE(history);
      S store;
      store.succeeded_history = history;
      auto clk = pinned();
      auto db = store.fresh(clk);
      for (int i = 0; i < 6; ++i)
        value_of(db->enqueue_job(job_request{"j", {{"i", i}}}));
      auto r = reserve(*db, {"j"}, 6);
      REQUIRE(r.size() == 6);
      // Job 3 is asked to cancel while it runs: its success ends cancelled.
      value_of(db->cancel_job(r[3].id, "stop"));
      std::vector<completion> cs;
      for (size_t i : {0, 1, 2, 3, 0, 4, 5}) {
        completion c;
        c.job_id = r[i].id;
        c.reserved_by = r[i].reserved_by;
        c.available_at = clk->now();
        cs.push_back(c);
      }
      cs[2].reserved_by = "someone else";
      cs[5].output = R"({"x":1})";
      CHECK(value_of(db->complete_jobs(cs)) ==
            std::vector<bool>{true, true, false, true, false, true, true});
      for (size_t i : {0, 1, 4, 5})
        if (history)
          CHECK(value_of(db->get_job(r[i].id)).state == job_state::succeeded);
        else
          CHECK(test::error_of(db->get_job(r[i].id)) == errc::job_not_found);
      CHECK(value_of(db->get_job(r[2].id)).state == job_state::running);
      CHECK(value_of(db->get_job(r[3].id)).state == job_state::cancelled);
      auto st = value_of(db->stats());
      CHECK(st.succeeded == (history ? 4 : 0));
      CHECK(st.reserved == 1);
      CHECK(st.available == 0);
    }
  }

  TEST_CASE_TEMPLATE("release_jobs_reserved_by releases only that owner's jobs",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    for (int i = 0; i < 6; ++i)
      value_of(db->enqueue_job(job_request{"j"}));
    auto mine = reserve(*db, {"j"}, 3, "node/q/1");
    auto theirs = reserve(*db, {"j"}, 2, "node/q/10");
    auto released = value_of(db->release_jobs_reserved_by("node/q/1"));
    CHECK(ids_of(released) == ids_of(mine));
    for (auto& j : released)
      CHECK_FALSE(j.reserved_by);
    auto still = value_of(db->get_running_jobs_of_owner("node/q/10"));
    CHECK(ids_of(still) == ids_of(theirs));
    CHECK(value_of(test::enqueued(*db, "j")).size() == 4);
    CHECK(value_of(db->release_jobs_reserved_by("nobody")).empty());
  }

  TEST_CASE_TEMPLATE("release_jobs_of_node releases only that node's jobs", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    for (int i = 0; i < 4; ++i)
      value_of(db->enqueue_job(job_request{"j"}));
    auto a = reserve(*db, {"j"}, 1, "node_1/q/1");
    auto b = reserve(*db, {"j"}, 1, "node_1/other/7");
    auto c = reserve(*db, {"j"}, 1, "node_10/q/1");
    auto d = reserve(*db, {"j"}, 1, "node_%/q/1");
    auto released = value_of(db->release_jobs_of_node("node_1"));
    CHECK(ids_of(released) == std::vector<int64_t>{a[0].id, b[0].id});
    auto running = value_of(test::running(*db));
    CHECK(ids_of(running) == std::vector<int64_t>{c[0].id, d[0].id});
  }

  TEST_CASE_TEMPLATE("running jobs can be listed by owner", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    value_of(db->enqueue_job(job_request{"process_order", "\"test-payload\""}));
    value_of(db->enqueue_job(job_request{"process_order"}));
    auto r = reserve(*db, {"process_order"}, 1, "test_queue");
    REQUIRE(r.size() == 1);
    auto by = value_of(db->get_running_jobs_of_owner("test_queue"));
    REQUIRE(by.size() == 1);
    CHECK(by[0] == r[0]);
    CHECK(by[0].reserved_at == t0);
    CHECK(value_of(db->get_running_jobs_of_owner("other")).empty());
    CHECK(value_of(test::enqueued(*db, "process_order")).size() == 1);
  }

  TEST_CASE_TEMPLATE("the cancels asked for are read by id, for the owner "
                     "that holds the jobs",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    for (int i = 0; i < 4; ++i)
      value_of(db->enqueue_job(job_request{"j"}));
    auto held = reserve(*db, {"j"}, 3, "node/q/1");
    REQUIRE(held.size() == 3);
    value_of(db->cancel_job(held[2].id, "and this"));
    value_of(db->cancel_job(held[0].id, "stop it"));
    std::vector<int64_t> ids{held[2].id, held[1].id, held[0].id};
    auto asked = value_of(db->cancels_asked("node/q/1", ids));
    REQUIRE(asked.size() == 2);
    CHECK(asked[0] == std::make_pair(held[0].id, std::string{"stop it"}));
    CHECK(asked[1] == std::make_pair(held[2].id, std::string{"and this"}));
    // Only the ids asked about, and only while their owner holds them.
    CHECK(value_of(db->cancels_asked("node/q/1", {held[1].id})).empty());
    CHECK(value_of(db->cancels_asked("node/q/1", {held[2].id})).size() == 1);
    CHECK(value_of(db->cancels_asked("node/q/2", ids)).empty());
    CHECK(value_of(db->cancels_asked("node/q/1", {})).empty());
    release_one(*db, held[0].id);
    asked = value_of(db->cancels_asked("node/q/1", ids));
    REQUIRE(asked.size() == 1);
    CHECK(asked[0].first == held[2].id);
    // An id of no job, or of one not reserved, is passed over.
    CHECK(
        value_of(db->cancels_asked("node/q/1", {held[0].id, 1 << 30})).empty());
  }

  TEST_CASE_TEMPLATE("enqueued jobs include future ones of that name only", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto now = value_of(db->enqueue_job(job_request{"a"}));
    auto later = value_of(db->enqueue_job(job_request{"a"}.available_in(1h)));
    value_of(db->enqueue_job(job_request{"b"}));
    CHECK(ids_of(value_of(test::enqueued(*db, "a"))) ==
          std::vector<int64_t>{now.id, later.id});
  }

  TEST_CASE_TEMPLATE("migrations are versioned and idempotent", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.connect();
    require_ok(db->migrate_down());
    CHECK(value_of(db->schema_version()) == 0);
    auto missing = db->check_schema();
    REQUIRE_FALSE(missing);
    CHECK(code_of(missing.error()) == errc::schema_missing);
    auto no_table = db->enqueue_job(job_request{"j"});
    REQUIRE_FALSE(no_table);
    CHECK(code_of(no_table.error()) == errc::schema_missing);
    require_ok(db->migrate_up());
    value_of(db->enqueue_job(job_request{"j"}));
    require_ok(db->migrate_up());
    CHECK(value_of(db->schema_version()) == db_adapter::schema_version_current);
    require_ok(db->check_schema());
    CHECK(value_of(test::enqueued(*db, "j")).size() == 1);
    require_ok(db->migrate_down());
    require_ok(db->migrate_down());
    CHECK(value_of(db->schema_version()) == 0);
    require_ok(db->migrate_up());
    CHECK(value_of(test::enqueued(*db, "j")).empty());
  }

  TEST_CASE_TEMPLATE("two connections reserving at once never share a job", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    constexpr int n = 300;
    std::vector<job_request> reqs;
    for (int i = 0; i < n; ++i)
      reqs.emplace_back("j", nlohmann::json{{"i", i}});
    value_of(db->enqueue_jobs(reqs));
    std::vector<int64_t> got[2];
    std::atomic<int> errors{0};
    auto claimer = [&](int k) {
      auto conn = store.connect();
      std::string owner = "node/q/" + std::to_string(k);
      for (;;) {
        auto r = conn->reserve_jobs({{"j"}, 7, owner, ""});
        if (!r) {
          ++errors;
          return;
        }
        if (r->empty())
          return;
        for (auto& j : *r)
          got[k].push_back(j.id);
      }
    };
    std::thread a{claimer, 0};
    std::thread b{claimer, 1};
    a.join();
    b.join();
    CHECK(errors == 0);
    std::set<int64_t> all(got[0].begin(), got[0].end());
    all.insert(got[1].begin(), got[1].end());
    CHECK(got[0].size() + got[1].size() == n);
    CHECK(all.size() == n);
  }

  TEST_CASE_TEMPLATE("a move leaves jobs in the same transaction", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    constexpr int n = 200;
    value_of(db->enqueue_jobs(std::vector<job_request>(n, job_request{"j"})));
    std::atomic<bool> done{false};
    std::atomic<int> observations{0};
    std::atomic<int> inconsistent{0};
    std::thread watcher{[&] {
      auto conn = store.connect();
      while (!done) {
        if (auto st = conn->stats()) {
          ++observations;
          if (st->total() != n)
            ++inconsistent;
        }
      }
    }};
    auto r = reserve(*db, {"j"}, n);
    // The moves start once the watcher is looking.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (observations == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    for (size_t i = 0; i < r.size(); ++i) {
      auto res = i % 2 == 0 ? db->move_job_to_succeeded(r[i])
                            : db->move_job_to_failed(r[i], "e");
      REQUIRE_MESSAGE(res, bg_jobs::test::why(res));
    }
    done = true;
    watcher.join();
    CHECK(observations > 0);
    CHECK(inconsistent == 0);
    auto st = value_of(db->stats());
    CHECK(st.succeeded == n / 2);
    CHECK(st.failed == n / 2);
    CHECK(st.pending() + st.reserved == 0);
  }

  TEST_CASE_TEMPLATE("bulk enqueue stores all jobs or none", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    std::vector<job_request> reqs{job_request{"a", 1}, job_request{"b", 2},
                                  job_request{"c", 3}};
    auto ids = value_of(db->enqueue_jobs(reqs));
    REQUIRE(ids.size() == 3);
    CHECK(ids[0] < ids[1]);
    CHECK(ids[1] < ids[2]);
    CHECK(value_of(test::enqueued(*db, "b")).front().payload == 2);
    reqs.emplace_back("");
    auto bad = db->enqueue_jobs(reqs);
    REQUIRE_FALSE(bad);
    CHECK(code_of(bad.error()) == errc::invalid_job_name);
    CHECK(value_of(db->stats()).pending() == 3);
  }

  TEST_CASE_TEMPLATE("bulk enqueue returns each request's id in order", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    value_of(db->enqueue_job(job_request{"other"}));
    std::vector<job_request> reqs;
    for (int i = 0; i < 150; ++i)
      reqs.emplace_back("j", nlohmann::json{{"seq", i}});
    auto ids = value_of(db->enqueue_jobs(reqs));
    REQUIRE(ids.size() == 150);
    std::map<int64_t, int> seq_of;
    for (auto& j : value_of(test::enqueued(*db, "j")))
      seq_of[j.id] = static_cast<int>(j.payload["seq"]);
    REQUIRE(seq_of.size() == 150);
    for (size_t i = 0; i < ids.size(); ++i) {
      CAPTURE(i);
      CHECK(seq_of[ids[i]] == static_cast<int>(i));
    }
  }

  TEST_CASE_TEMPLATE("names and payloads round-trip unchanged", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    std::vector<std::string> names{
        "'; DROP TABLE jobs; --", "naïve 名前 🚀", "quote\"d",
        "per%cent_und\\er",       "two  spaces",  "?1 $1 :name @x"};
    nlohmann::json payload = {
        {"text", "Robert'); DROP TABLE jobs_succeeded;--"},
        {"unicode", "Zürich – 東京 – 🙂"},
        {"quotes", "\"double\" and 'single'"},
        {"escapes", "back\\slash\u0001ctl"},
        {"nested",
         {{"list", {1, 2.5, nullptr, true}},
          {"empty", nlohmann::json::object()}}}};
    for (auto& name : names)
      value_of(db->enqueue_job(job_request{name, payload}));
    for (auto& name : names) {
      auto r = reserve(*db, {name}, 5);
      REQUIRE(r.size() == 1);
      CHECK(r[0].name == name);
      CHECK(r[0].payload == payload);
      require_ok(db->move_job_to_failed(r[0], name));
    }
    for (auto& f : value_of(test::failed(*db, 100))) {
      CHECK(f.error == f.name);
      CHECK(f.payload == payload);
    }
    CHECK(value_of(db->stats()).failed == static_cast<int64_t>(names.size()));
  }

  TEST_CASE_TEMPLATE("stats count every state", S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    value_of(db->enqueue_job(job_request{"j"}));
    value_of(db->enqueue_job(job_request{"j"}));
    value_of(db->enqueue_job(job_request{"j"}.available_in(1h)));
    auto r = reserve(*db, {"j"}, 1);
    auto st = value_of(db->stats());
    CHECK(st.available == 1);
    CHECK(st.scheduled == 1);
    CHECK(st.reserved == 1);
    CHECK(st.succeeded == 0);
    CHECK(st.failed == 0);
  }

  TEST_CASE_TEMPLATE("bad input is refused and writes nothing", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto code = [](const auto& x) {
      REQUIRE_FALSE(x);
      return code_of(x.error());
    };
    CHECK(code(db->enqueue_job(job_request{""})) == errc::invalid_job_name);
    CHECK(code(db->enqueue_job(job_request{std::string(
              max_job_name_length + 1, 'x')})) == errc::invalid_job_name);
    CHECK(code(db->enqueue_job(job_request{"j"}.available_in(-1ms))) ==
          errc::invalid_argument);
    auto year_10000 = std::chrono::sys_days{std::chrono::year{10000} / 1 / 1};
    CHECK(code(db->enqueue_job(job_request{"j"}.available_at(timestamp{
              year_10000.time_since_epoch()}))) == errc::invalid_argument);
    CHECK(code(db->enqueue_job(
              job_request{"j", std::string(max_payload_size, 'x')})) ==
          errc::invalid_payload);
    CHECK(code(db->enqueue_job(job_request{"j", std::string("\xff\xfe")})) ==
          errc::invalid_payload);
    CHECK(code(db->reserve_jobs({{"j"}, 0, "o", ""})) ==
          errc::invalid_argument);
    CHECK(code(db->reserve_jobs({{"j"}, -3, "o", ""})) ==
          errc::invalid_argument);
    job_query none;
    none.state = job_state::succeeded;
    none.limit = 0;
    CHECK(code(db->list_jobs(none)) == errc::invalid_argument);
    CHECK(value_of(db->stats()).total() == 0);
  }

  TEST_CASE_TEMPLATE("hostile input is refused with a clear error and "
                     "writes nothing",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh(pinned());
    auto refused = [](const auto& x, errc expected, const char* words) {
      REQUIRE_FALSE(x);
      CHECK(code_of(x.error()) == expected);
      INFO(describe(x.error()));
      CHECK(describe(x.error()).find(words) != std::string::npos);
    };
    // Names: a NUL byte, bytes that are not UTF-8, a control character.
    refused(db->enqueue_job(job_request{std::string("bi\0nul", 6)}),
            errc::invalid_job_name, "control character");
    refused(db->enqueue_job(job_request{"bad\xff"}), errc::invalid_job_name,
            "not valid UTF-8");
    refused(db->enqueue_job(job_request{"new\nline"}), errc::invalid_job_name,
            "control character");
    // A 200 KB payload nested 100,000 deep, as text and built in C++.
    std::string deep(100000, '[');
    deep += std::string(100000, ']');
    refused(job_request::parse("j", deep), errc::invalid_payload,
            "deeper than 100");
    nlohmann::json nested = nlohmann::json::array();
    for (int i = 0; i < 200; ++i)
      nested = nlohmann::json::array({std::move(nested)});
    refused(db->enqueue_job(job_request{"j", nested}), errc::invalid_payload,
            "deeper than 100");
    refused(db->enqueue_jobs({job_request{"j"}, job_request{"j", nested}}),
            errc::invalid_payload, "request 1");
    // Numbers JSON cannot hold.
    refused(db->enqueue_job(job_request{
                "j", {{"x", std::numeric_limits<double>::quiet_NaN()}}}),
            errc::invalid_payload, "NaN");
    refused(db->enqueue_job(job_request{
                "j", {{"x", std::numeric_limits<double>::infinity()}}}),
            errc::invalid_payload, "infinity");
    // Delays past the year 9999, or so long they would overflow.
    refused(db->enqueue_job(job_request{"j"}.available_in(
                std::chrono::hours{24 * 365 * 9000})),
            errc::invalid_argument, "9999");
    refused(db->enqueue_job(job_request{"j"}.available_in(
                std::chrono::milliseconds::max())),
            errc::invalid_argument, "9999");
    CHECK(value_of(db->stats()).total() == 0);
    // Nesting within the limit is fine.
    nlohmann::json ok = nlohmann::json::array();
    for (int i = 0; i < 98; ++i)
      ok = nlohmann::json::array({std::move(ok)});
    value_of(db->enqueue_job(job_request{"j", ok}));
    CHECK(reserve(*db, {"j"}, 1).front().payload == ok);
  }

  TEST_CASE_TEMPLATE("a scheduled occurrence is enqueued once", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    CHECK_FALSE(value_of(db->last_scheduled_run("tick")));
    scheduled_params p{job_request{"tick", {{"k", 1}}}, t0 + 1min,
                       std::nullopt};
    auto first = value_of(db->enqueue_scheduled(p));
    REQUIRE(first);
    CHECK(first->available_at == t0 + 1min);
    CHECK(first->payload == nlohmann::json{{"k", 1}});
    // Another node that saw no occurrence yet loses the race.
    CHECK_FALSE(value_of(db->enqueue_scheduled(p)));
    auto run = value_of(db->last_scheduled_run("tick"));
    REQUIRE(run);
    CHECK(run->scheduled_at == t0 + 1min);
    CHECK(run->job_id == first->id);
    CHECK(run->pending);
    CHECK_FALSE(run->finished_at);
    // The next occurrence needs the latest one as its previous.
    scheduled_params next{job_request{"tick"}, t0 + 2min, t0};
    CHECK_FALSE(value_of(db->enqueue_scheduled(next)));
    next.previous = t0 + 1min;
    auto second = value_of(db->enqueue_scheduled(next));
    REQUIRE(second);
    CHECK(value_of(test::enqueued(*db, "tick")).size() == 2);
    clk->advance(2min);
    auto r = reserve(*db, {"tick"}, 5);
    REQUIRE(r.size() == 2);
    clk->advance(3s);
    require_ok(db->move_job_to_succeeded(r[1]));
    run = value_of(db->last_scheduled_run("tick"));
    REQUIRE(run);
    CHECK(run->job_id == second->id);
    CHECK_FALSE(run->pending);
    CHECK(run->finished_at == t0 + 2min + 3s);
    CHECK_FALSE(value_of(db->last_scheduled_run("other")));
  }

  TEST_CASE_TEMPLATE("racing schedulers enqueue an occurrence once", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    std::atomic<int> won{0};
    std::atomic<int> errors{0};
    auto race = [&] {
      auto conn = store.connect();
      for (int i = 0; i < 20; ++i) {
        auto last = conn->last_scheduled_run("tick");
        if (!last) {
          ++errors;
          return;
        }
        std::optional<timestamp> previous;
        if (*last)
          previous = (*last)->scheduled_at;
        auto at = previous ? *previous + 1s : t0;
        auto r = conn->enqueue_scheduled({job_request{"tick"}, at, previous});
        if (!r)
          ++errors;
        else if (*r)
          ++won;
      }
    };
    std::thread a{race};
    std::thread b{race};
    a.join();
    b.join();
    CHECK(errors == 0);
    auto jobs = value_of(test::enqueued(*db, "tick"));
    CHECK(static_cast<int>(jobs.size()) == won.load());
    std::set<timestamp> times;
    for (auto& j : jobs)
      times.insert(j.available_at);
    CHECK(times.size() == jobs.size());
    CHECK(won >= 20);
  }

  TEST_CASE_TEMPLATE("a lease has one holder until it expires or is given "
                     "up",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    auto other = store.connect(clk);
    CHECK(value_of(db->hold_lease("upkeep", "a", 20s)));
    CHECK_FALSE(value_of(other->hold_lease("upkeep", "b", 20s)));
    // Another lease is another row.
    CHECK(value_of(other->hold_lease("other", "b", 20s)));
    clk->advance(15s);
    // Renewed by its holder: 20 s from now.
    CHECK(value_of(db->hold_lease("upkeep", "a", 20s)));
    clk->advance(15s);
    CHECK_FALSE(value_of(other->hold_lease("upkeep", "b", 20s)));
    clk->advance(6s);
    // Expired: taken over.
    CHECK(value_of(other->hold_lease("upkeep", "b", 20s)));
    CHECK_FALSE(value_of(db->hold_lease("upkeep", "a", 20s)));
    // Only the holder gives it up.
    require_ok(db->release_lease("upkeep", "a"));
    CHECK_FALSE(value_of(db->hold_lease("upkeep", "a", 20s)));
    require_ok(other->release_lease("upkeep", "b"));
    CHECK(value_of(db->hold_lease("upkeep", "a", 20s)));
  }

  TEST_CASE_TEMPLATE("recorded actions are taken once, oldest first", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto other = store.connect();
    std::vector<event> es;
    for (int i = 1; i <= 3; ++i) {
      event e{event_kind::job_cancelled};
      e.queue = "q";
      e.message = "reason " + std::to_string(i) + " \"quoted\"\n";
      job j;
      j.id = 40 + i;
      j.name = "j";
      e.job = j;
      es.push_back(e);
    }
    event paused{event_kind::queue_paused};
    paused.queue = "q";
    es.push_back(paused);
    require_ok(db->record_actions(es));
    auto first = value_of(other->take_actions(2));
    REQUIRE(first.size() == 2);
    CHECK(first[0].kind == "bg_jobs.job.cancel");
    CHECK(first[0].job_id == 41);
    CHECK(first[0].job_name == "j");
    CHECK(first[0].queue == "q");
    CHECK(first[0].message == "reason 1 \"quoted\"\n");
    CHECK(first[1].job_id == 42);
    CHECK(first[0].id < first[1].id);
    auto rest = value_of(db->take_actions(10));
    REQUIRE(rest.size() == 2);
    CHECK(rest[0].job_id == 43);
    CHECK(rest[1].kind == "bg_jobs.queue.pause");
    CHECK(rest[1].job_id == 0);
    CHECK(value_of(other->take_actions(10)).empty());
  }

  TEST_CASE_TEMPLATE("many callers at once take each recorded action once", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    std::vector<event> es;
    for (int i = 1; i <= 200; ++i) {
      event e{event_kind::job_retried};
      job j;
      j.id = i;
      j.name = "j";
      e.job = j;
      es.push_back(e);
    }
    require_ok(db->record_actions(es));
    std::vector<std::unique_ptr<db_adapter>> dbs;
    for (int i = 0; i < 4; ++i)
      dbs.push_back(store.connect());
    std::mutex mtx;
    std::multiset<int64_t> seen;
    std::atomic<int> errors{0};
    std::vector<std::thread> takers;
    for (int i = 0; i < 4; ++i)
      takers.emplace_back([&, i] {
        for (;;) {
          auto taken = dbs[i]->take_actions(7);
          if (!taken) {
            // SQLite: another writer held the lock past the busy timeout.
            ++errors;
            return;
          }
          if (taken->empty())
            return;
          std::lock_guard<std::mutex> guard{mtx};
          for (auto& a : *taken)
            seen.insert(a.job_id);
        }
      });
    for (auto& t : takers)
      t.join();
    CHECK(errors == 0);
    CHECK(seen.size() == 200);
    CHECK(std::set<int64_t>(seen.begin(), seen.end()).size() == 200);
  }

  TEST_CASE_TEMPLATE("one of many callers at once takes a free lease", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    store.fresh();
    std::vector<std::unique_ptr<db_adapter>> dbs;
    for (int i = 0; i < 6; ++i)
      dbs.push_back(store.connect());
    std::atomic<int> holders{0};
    std::atomic<int> errors{0};
    std::vector<std::thread> callers;
    for (int i = 0; i < 6; ++i)
      callers.emplace_back([&, i] {
        auto held = dbs[i]->hold_lease("upkeep", "n" + std::to_string(i), 60s);
        if (!held)
          ++errors;
        else if (*held)
          ++holders;
      });
    for (auto& t : callers)
      t.join();
    CHECK(errors == 0);
    CHECK(holders == 1);
  }

  TEST_CASE_TEMPLATE("jobs of a node without a heartbeat are rescued", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    for (int i = 0; i < 4; ++i)
      value_of(db->enqueue_job(job_request{"j"}));
    require_ok(db->heartbeat("alive"));
    require_ok(db->heartbeat("dead"));
    auto alive = reserve(*db, {"j"}, 1, "alive/q/1");
    auto dead = reserve(*db, {"j"}, 2, "dead/q/1");
    auto never = reserve(*db, {"j"}, 1, "ghost/q/1");
    // Within the lease nothing is rescued.
    clk->advance(20s);
    require_ok(db->heartbeat("alive"));
    CHECK(value_of(db->rescue_jobs(30s)).empty());
    clk->advance(20s);
    require_ok(db->heartbeat("alive"));
    auto rescued = value_of(db->rescue_jobs(30s));
    std::vector<int64_t> want{dead[0].id, dead[1].id, never[0].id};
    std::sort(want.begin(), want.end());
    auto got = ids_of(rescued);
    std::sort(got.begin(), got.end());
    CHECK(got == want);
    for (auto& j : rescued) {
      CHECK_FALSE(j.reserved_by);
      REQUIRE(j.last_error);
      CHECK(j.last_error->find("rescued from") != std::string::npos);
    }
    auto running = value_of(test::running(*db));
    CHECK(ids_of(running) == std::vector<int64_t>{alive[0].id});
    // A late completion by the presumed-dead node does not apply.
    auto late = db->move_job_to_succeeded(dead[0]);
    REQUIRE_FALSE(late);
    CHECK(code_of(late.error()) == errc::reservation_lost);
    CHECK(value_of(db->stats()).available == 3);
  }

  TEST_CASE_TEMPLATE("pruning keeps history within age and count", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    for (int i = 0; i < 6; ++i) {
      auto j = value_of(db->enqueue_job(job_request{"j"}));
      require_ok(db->move_job_to_succeeded(j));
      auto k = value_of(db->enqueue_job(job_request{"k"}));
      require_ok(db->move_job_to_failed(k, "e"));
      clk->advance(1h);
    }
    prune_params p;
    p.succeeded_max_age = std::chrono::hours{3};
    p.failed_max_age = std::chrono::hours{24};
    p.max_succeeded = 100;
    p.max_failed = 2;
    p.batch = 2;
    // Now is t0 + 6 h: three succeeded jobs are older than 3 h, and four
    // failed jobs are beyond the newest two; each call deletes at most two
    // rows per rule.
    CHECK(value_of(db->prune_jobs(p)) == 4);
    CHECK(value_of(db->prune_jobs(p)) == 3);
    CHECK(value_of(db->prune_jobs(p)) == 0);
    auto st = value_of(db->stats());
    CHECK(st.succeeded == 3);
    CHECK(st.failed == 2);
    auto newest = value_of(test::failed(*db, 10));
    REQUIRE(newest.size() == 2);
    CHECK(newest[0].finished_at == t0 + 5h);
  }

  TEST_CASE_TEMPLATE("complete_and_reserve persists outcomes then claims", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh(pinned());
    for (int i = 0; i < 4; ++i)
      value_of(db->enqueue_job(job_request{"j"}));
    auto held = reserve(*db, {"j"}, 2, "node/q/1");
    REQUIRE(held.size() == 2);
    completion done;
    done.job_id = held[0].id;
    done.reserved_by = "node/q/1";
    completion stale = done;
    stale.job_id = held[1].id;
    stale.reserved_by = "node/q/other";
    auto r = value_of(
        db->complete_and_reserve({done, stale}, {{"j"}, 10, "node/q/1", ""}));
    CHECK(r.applied == std::vector<bool>{true, false});
    CHECK_FALSE(r.reserve_error);
    CHECK(r.reserved.size() == 2);
    auto st = value_of(db->stats());
    CHECK(st.succeeded == 1);
    CHECK(st.reserved == 3);
    // With nothing to complete it is a plain reserve.
    auto none =
        value_of(db->complete_and_reserve({}, {{"j"}, 10, "node/q/1", ""}));
    CHECK(none.applied.empty());
    CHECK(none.reserved.empty());
  }

  TEST_CASE_TEMPLATE("an outcome of a rescued job that its owner claims "
                     "again is not recorded as a cancel",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    // The job ran, its success was not written (a lost connection), it was
    // rescued; the claim that carries the late success takes it anew. On
    // PostgreSQL both happen in one statement.
    S store;
    auto db = store.fresh(pinned());
    auto j = value_of(db->enqueue_job(job_request{"j"}));
    // (A claim that comes up short: the next one scans from the start.)
    auto first = reserve(*db, {"j"}, 2, "node/q/1");
    REQUIRE(first.size() == 1);
    release_one(*db, j.id); // as a rescue does
    completion late;
    late.job_id = j.id;
    late.reserved_by = "node/q/1";
    auto r =
        value_of(db->complete_and_reserve({late}, {{"j"}, 10, "node/q/1", ""}));
    CHECK(r.applied == std::vector<bool>{false});
    REQUIRE(r.reserved.size() == 1);
    CHECK(r.reserved[0].id == j.id);
    auto rec = value_of(db->get_job(j.id));
    CHECK(rec.state == job_state::running);
    // Through complete_jobs as well: a failure that does not apply to a
    // waiting job leaves it waiting.
    auto k = value_of(db->enqueue_job(job_request{"k"}));
    completion gone;
    gone.what = completion::kind::failed;
    gone.job_id = k.id;
    gone.reserved_by = "node/q/1";
    gone.error = "late";
    CHECK(value_of(db->complete_jobs({gone})) == std::vector<bool>{false});
    CHECK(value_of(db->get_job(k.id)).state == job_state::waiting);
  }

  TEST_CASE_TEMPLATE("a claim after one that got all it asked for still "
                     "finds a more urgent job and a released one",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    // PostgreSQL starts such a claim's index scan after the last job the
    // previous one took; what sorts before that is found by the full scan
    // a short claim falls back to.
    S store;
    auto db = store.fresh(pinned());
    for (int i = 0; i < 6; ++i)
      value_of(db->enqueue_job(job_request{"j"}.with_priority(5)));
    auto first = reserve(*db, {"j"}, 3);
    REQUIRE(first.size() == 3);
    auto urgent = value_of(db->enqueue_job(job_request{"j"}.with_priority(0)));
    release_one(*db, first[0].id);
    auto next = reserve(*db, {"j"}, 10);
    REQUIRE(next.size() == 5);
    CHECK(next[0].id == urgent.id);
    CHECK(next[1].id == first[0].id);
    auto ids = ids_of(next);
    CHECK(std::set<int64_t>(ids.begin(), ids.end()).size() == 5);
    auto st = value_of(db->stats());
    CHECK(st.reserved == 7);
    CHECK(st.pending() == 0);
    // Through complete_and_reserve as well.
    completion done;
    done.job_id = next[0].id;
    done.reserved_by = "node/q/1";
    auto again = value_of(db->enqueue_job(job_request{"j"}.with_priority(0)));
    auto r =
        value_of(db->complete_and_reserve({done}, {{"j"}, 10, "node/q/1", ""}));
    REQUIRE(r.reserved.size() == 1);
    CHECK(r.reserved[0].id == again.id);
  }

  TEST_CASE_TEMPLATE("complete_and_reserve records a batch of successes, "
                     "ends the one asked to cancel cancelled, and claims",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh(pinned());
    for (int i = 0; i < 6; ++i)
      value_of(db->enqueue_job(job_request{"j"}));
    auto held = reserve(*db, {"j"}, 3, "node/q/1");
    REQUIRE(held.size() == 3);
    value_of(db->cancel_job(held[1].id, "stop it"));
    std::vector<completion> done;
    for (auto& j : held) {
      completion c;
      c.job_id = j.id;
      c.reserved_by = "node/q/1";
      done.push_back(c);
    }
    auto r =
        value_of(db->complete_and_reserve(done, {{"j"}, 2, "node/q/1", ""}));
    CHECK(r.applied == std::vector<bool>{true, true, true});
    CHECK_FALSE(r.reserve_error);
    REQUIRE(r.reserved.size() == 2);
    CHECK(r.reserved[0].id < r.reserved[1].id);
    CHECK(r.reserved[0].attempts == 1);
    CHECK(r.reserved[0].reserved_by == "node/q/1");
    CHECK(value_of(db->get_job(held[0].id)).state == job_state::succeeded);
    auto cancelled = value_of(db->get_job(held[1].id));
    CHECK(cancelled.state == job_state::cancelled);
    CHECK(cancelled.error == "stop it");
    auto st = value_of(db->stats());
    CHECK(st.succeeded == 2);
    CHECK(st.cancelled == 1);
    CHECK(st.reserved == 2);
    CHECK(st.available == 1);
  }

  TEST_CASE_TEMPLATE("complete_and_reserve reports a reserve that fails after "
                     "the completions",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh(pinned());
    auto j = value_of(db->enqueue_job(job_request{"j"}));
    value_of(db->enqueue_job(job_request{"j"}));
    auto held = reserve(*db, {"j"}, 1, "node/q/1");
    REQUIRE(held.size() == 1);
    CHECK(held[0].id == j.id);
    store.fail_reserves();
    completion done;
    done.job_id = j.id;
    done.reserved_by = "node/q/1";
    auto r =
        value_of(db->complete_and_reserve({done}, {{"j"}, 10, "node/q/1", ""}));
    CHECK(r.applied == std::vector<bool>{true});
    REQUIRE(r.reserve_error);
    CHECK(describe(r.reserve_error).find("injected reserve failure") !=
          std::string::npos);
    CHECK(r.reserved.empty());
    // The completion was persisted; the other job still waits.
    auto st = value_of(db->stats());
    CHECK(st.succeeded == 1);
    CHECK(st.available == 1);
    CHECK(st.reserved == 0);
    // Without completions the failure is the call's own error.
    auto alone = db->complete_and_reserve({}, {{"j"}, 10, "node/q/1", ""});
    CHECK_FALSE(alone);
  }

  TEST_CASE_TEMPLATE("complete_and_reserve refuses bad reserve arguments "
                     "before writing",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh(pinned());
    value_of(db->enqueue_job(job_request{"j"}));
    auto held = reserve(*db, {"j"}, 1, "node/q/1");
    completion done;
    done.job_id = held[0].id;
    done.reserved_by = "node/q/1";
    auto zero = db->complete_and_reserve({done}, {{"j"}, 0, "node/q/1", ""});
    REQUIRE_FALSE(zero);
    CHECK(code_of(zero.error()) == errc::invalid_argument);
    auto nobody = db->complete_and_reserve({done}, {{"j"}, 1, "", ""});
    REQUIRE_FALSE(nobody);
    CHECK(code_of(nobody.error()) == errc::invalid_argument);
    CHECK(value_of(db->stats()).reserved == 1);
    CHECK(value_of(db->stats()).succeeded == 0);
  }

  TEST_CASE_TEMPLATE("release_unheld gives back what the owner does not hold",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh(pinned());
    for (int i = 0; i < 3; ++i)
      value_of(db->enqueue_job(job_request{"j"}));
    value_of(db->enqueue_job(job_request{"k"}));
    auto mine = reserve(*db, {"j"}, 3, "node/q/1");
    auto theirs = reserve(*db, {"k"}, 1, "node/q/2");
    REQUIRE(mine.size() == 3);
    auto released = value_of(db->release_unheld("node/q/1", {mine[1].id}));
    CHECK(ids_of(released) == std::vector<int64_t>{mine[0].id, mine[2].id});
    for (auto& j : released) {
      CHECK_FALSE(j.reserved_by);
      CHECK(j.attempts == 0);
    }
    auto running = value_of(test::running(*db));
    std::set<int64_t> still;
    for (auto& j : running)
      still.insert(j.id);
    CHECK(still == std::set<int64_t>{mine[1].id, theirs[0].id});
    CHECK(value_of(db->release_unheld("node/q/1", {mine[1].id})).empty());
  }

  TEST_CASE_TEMPLATE("the claim statement is served by the claim index", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    value_of(
        db->enqueue_jobs(std::vector<job_request>(2000, job_request{"j"})));
    auto plan = test::explain_claim(*db, {{"j"}, 10, "node/q/1", ""});
    INFO(plan);
    CHECK(plan.find("jobs_claim_idx") != std::string::npos);
  }

  TEST_CASE_TEMPLATE("an enqueue by another process wakes a listener", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    REQUIRE(db->caps().supports_listen_notify);
    // The first call starts listening.
    value_of(db->await_wakeups(0ms));
    auto pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // The child: a connection of its own, one enqueue, no doctest; it
      // may not outlive 30 s.
      alarm(30);
      auto conn = store.factory()();
      bool ok = conn && (*conn)->enqueue_job(job_request{"woken"});
      _exit(ok ? 0 : 1);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    std::vector<std::string> names;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (names.empty() && std::chrono::steady_clock::now() < deadline)
      names = value_of(db->await_wakeups(100ms));
    REQUIRE_FALSE(names.empty());
    // PostgreSQL names the job; the SQLite WAL watch says "some job".
    CHECK((names.front() == "woken" || names.front() == "*"));
  }

  TEST_CASE_TEMPLATE("a wait for wake-ups ends when its interrupt is "
                     "signalled from another thread",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    value_of(db->await_wakeups(0ms));
    int fd = eventfd(0, EFD_CLOEXEC);
    REQUIRE(fd >= 0);
    std::atomic<bool> signalled{false};
    std::thread other{[&] {
      std::this_thread::sleep_for(50ms);
      signalled = true;
      uint64_t one = 1;
      CHECK(write(fd, &one, sizeof(one)) == sizeof(one));
    }};
    // It returns once the other thread signalled, with no names, long
    // before its timeout.
    auto t0 = std::chrono::steady_clock::now();
    auto names = value_of(db->await_wakeups(30s, fd));
    CHECK(signalled);
    CHECK(std::chrono::steady_clock::now() - t0 < 20s);
    CHECK(names.empty());
    other.join();
    close(fd);
  }

  TEST_CASE_TEMPLATE("a unique job keeps its duplicates out", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    auto req = job_request{"mail", {{"to", "ada"}}}.with_unique();
    auto first = value_of(db->enqueue_job(req));
    CHECK_FALSE(first.conflict);
    auto again = value_of(db->enqueue_job(req));
    CHECK(again.conflict);
    CHECK(again.id == first.id);
    CHECK(again.payload == first.payload);
    // Another payload is another job; so is a plain request.
    auto other = value_of(
        db->enqueue_job(job_request{"mail", {{"to", "bob"}}}.with_unique()));
    CHECK_FALSE(other.conflict);
    CHECK(value_of(db->enqueue_job(job_request{"mail", {{"to", "ada"}}}))
              .conflict == false);
    CHECK(value_of(db->stats()).available == 3);
    // Running still counts; once it succeeded the key is free again.
    auto held = reserve(*db, {"mail"}, 1);
    REQUIRE(held.front().id == first.id);
    CHECK(value_of(db->enqueue_job(req)).conflict);
    require_ok(db->move_job_to_succeeded(held.front()));
    auto after = value_of(db->enqueue_job(req));
    CHECK_FALSE(after.conflict);
    CHECK(after.id != first.id);
  }

  TEST_CASE_TEMPLATE("a unique key can be given, expire, and count succeeded "
                     "jobs",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = pinned();
    auto db = store.fresh(clk);
    unique_options u;
    u.key = "report-2024-09";
    u.period = 1h;
    u.include_succeeded = true;
    auto a = value_of(db->enqueue_job(job_request{"report", 1}.with_unique(u)));
    // The key, not the payload, makes them equal.
    auto b = value_of(db->enqueue_job(job_request{"report", 2}.with_unique(u)));
    CHECK(b.conflict);
    CHECK(b.id == a.id);
    auto held = reserve(*db, {"report"}, 1);
    require_ok(db->move_job_to_succeeded(held.front()));
    // Succeeded still counts within the period...
    auto c = value_of(db->enqueue_job(job_request{"report", 3}.with_unique(u)));
    CHECK(c.conflict);
    CHECK(c.id == a.id);
    // ...and not after it.
    clk->advance(1h);
    auto d = value_of(db->enqueue_job(job_request{"report", 4}.with_unique(u)));
    CHECK_FALSE(d.conflict);
    CHECK(d.payload == 4);
  }

  TEST_CASE_TEMPLATE("bulk enqueue applies uniqueness per request", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh(pinned());
    auto u = job_request{"u", 1}.with_unique();
    auto ids = value_of(
        db->enqueue_jobs({u, job_request{"plain"}, u, job_request{"plain"}}));
    REQUIRE(ids.size() == 4);
    CHECK(ids[0] == ids[2]);
    CHECK(ids[1] != ids[3]);
    CHECK(value_of(db->stats()).available == 3);
    // A bad request among them stores none.
    unique_options empty;
    empty.key = "";
    auto bad = db->enqueue_jobs(
        {job_request{"x"}.with_unique(), job_request{"y"}.with_unique(empty)});
    REQUIRE_FALSE(bad);
    CHECK(code_of(bad.error()) == errc::invalid_argument);
    CHECK(value_of(db->stats()).available == 3);
  }

  TEST_CASE_TEMPLATE("bad unique settings are refused and write nothing", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    unique_options empty;
    empty.key = "";
    unique_options negative;
    negative.period = -1s;
    unique_options zero;
    zero.period = 0ms;
    unique_options too_long;
    too_long.key = std::string(max_job_name_length + 1, 'k');
    for (auto& u : {empty, negative, zero, too_long}) {
      auto r = db->enqueue_job(job_request{"j"}.with_unique(u));
      REQUIRE_FALSE(r);
      CHECK(code_of(r.error()) == errc::invalid_argument);
    }
    CHECK(value_of(db->stats()).total() == 0);
  }

  TEST_CASE_TEMPLATE("100 concurrent enqueues of one unique job from two "
                     "processes store one",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    std::vector<pid_t> children;
    for (int p = 0; p < 2; ++p) {
      auto pid = fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        // Ten threads, each with a connection of its own, five enqueues
        // each; no doctest in the child, which may not outlive 30 s.
        alarm(30);
        std::atomic<int> failures{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < 10; ++t)
          threads.emplace_back([&] {
            auto conn = store.factory()();
            if (!conn) {
              ++failures;
              return;
            }
            for (int i = 0; i < 5; ++i)
              if (!(*conn)->enqueue_job(
                      job_request{"once", {{"k", 1}}}.with_unique()))
                ++failures;
          });
        for (auto& t : threads)
          t.join();
        _exit(failures == 0 ? 0 : 1);
      }
      children.push_back(pid);
    }
    for (auto pid : children) {
      int status = 0;
      REQUIRE(waitpid(pid, &status, 0) == pid);
      REQUIRE(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);
    }
    CHECK(value_of(db->stats()).available == 1);
    CHECK(value_of(test::enqueued(*db, "once")).size() == 1);
  }

  TEST_CASE_TEMPLATE("delete_job removes a waiting job or a history row", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh(pinned());
    auto waiting = value_of(db->enqueue_job(job_request{"j"}));
    auto running = value_of(db->enqueue_job(job_request{"k"}));
    auto done = value_of(db->enqueue_job(job_request{"m"}));
    auto held = reserve(*db, {"k", "m"}, 2);
    REQUIRE(held.size() == 2);
    require_ok(db->move_job_to_succeeded(held[1]));
    require_ok(db->delete_job(waiting.id));
    require_ok(db->delete_job(done.id));
    auto busy = db->delete_job(running.id);
    REQUIRE_FALSE(busy);
    CHECK(code_of(busy.error()) == errc::invalid_state);
    auto gone = db->delete_job(waiting.id);
    REQUIRE_FALSE(gone);
    CHECK(code_of(gone.error()) == errc::job_not_found);
    auto st = value_of(db->stats());
    CHECK(st.reserved == 1);
    CHECK(st.total() == 1);
  }

} // TEST_SUITE
