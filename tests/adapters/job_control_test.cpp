// Conformance cases of job control: priorities, cancel, retry, pauses and
// inspection. Every case runs against every store in BG_JOBS_STORES.
#include <set>

#include <doctest/doctest.h>

#include "adapters/stores.hpp"
#include "bg_jobs/core/clock.hpp"
#include "support/expect.hpp"
#include "support/store_reads.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

const timestamp t0 = *parse_iso8601("2024-09-29T10:30:00.123Z");

using test::error_of;
using test::require_ok;
using test::value_of;

std::vector<job> reserve(db_adapter& db, std::vector<std::string> names,
                         int limit, std::string queue = "") {
  return value_of(
      db.reserve_jobs({std::move(names), limit, "node/q/1", std::move(queue)}));
}

completion done(const job& j, completion::kind k, std::string error = {}) {
  completion c;
  c.what = k;
  c.job_id = j.id;
  c.reserved_by = j.reserved_by;
  c.error = std::move(error);
  c.available_at = j.available_at;
  return c;
}

std::vector<int64_t> ids_of(const job_page& page) {
  std::vector<int64_t> ids;
  for (auto& r : page.jobs)
    ids.push_back(r.id);
  return ids;
}

} // namespace

TEST_SUITE("conformance") {

  TEST_CASE_TEMPLATE("claims take priority, then availability, then id", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    auto low = value_of(db->enqueue_job(job_request{"j"}.with_priority(5)));
    auto old = value_of(db->enqueue_job(
        job_request{"j"}.available_at(t0 - 1h).with_priority(3)));
    auto urgent = value_of(db->enqueue_job(job_request{"j"}.with_priority(0)));
    auto later = value_of(db->enqueue_job(job_request{"j"}.with_priority(3)));
    CHECK(urgent.priority == 0);
    CHECK(low.priority == 5);
    auto ids = value_of(db->enqueue_jobs({job_request{"j"}.with_priority(9),
                                          job_request{"j"}.with_priority(1)}));
    auto got = reserve(*db, {"j"}, 10);
    REQUIRE(got.size() == 6);
    std::vector<int64_t> order;
    for (auto& j : got)
      order.push_back(j.id);
    CHECK(order == std::vector<int64_t>{urgent.id, ids[1], old.id, later.id,
                                        low.id, ids[0]});
    CHECK(got[0].priority == 0);
    CHECK(got[5].priority == 9);
  }

  TEST_CASE_TEMPLATE("a priority out of range is refused and writes nothing", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    CHECK(error_of(db->enqueue_job(job_request{"j"}.with_priority(10))) ==
          errc::invalid_argument);
    CHECK(error_of(db->enqueue_job(job_request{"j"}.with_priority(-1))) ==
          errc::invalid_argument);
    CHECK(error_of(db->enqueue_jobs(
              {job_request{"j"}, job_request{"j"}.with_priority(42)})) ==
          errc::invalid_argument);
    CHECK(value_of(db->stats()).total() == 0);
  }

  TEST_CASE_TEMPLATE("priorities survive history and scheduled occurrences", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    value_of(db->enqueue_job(job_request{"j"}.with_priority(4)));
    auto got = reserve(*db, {"j"}, 1);
    require_ok(db->move_job_to_succeeded(got.at(0)));
    CHECK(value_of(test::succeeded(*db, 1)).at(0).priority == 4);
    scheduled_params p{job_request{"tick"}.with_priority(7), t0, std::nullopt};
    auto occ = value_of(db->enqueue_scheduled(p));
    REQUIRE(occ);
    CHECK(occ->priority == 7);
    CHECK(value_of(db->get_job(occ->id)).priority == 7);
  }

  TEST_CASE_TEMPLATE("the claim with priorities is served by the claim index",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    std::vector<job_request> many;
    for (int i = 0; i < 2000; ++i)
      many.push_back(job_request{"j"}.with_priority(i % 10));
    value_of(db->enqueue_jobs(many));
    auto plan = test::explain_claim(*db, {{"j"}, 10, "node/q/1", "q"});
    INFO(plan);
    CHECK(plan.find("jobs_claim_idx") != std::string::npos);
  }

  TEST_CASE_TEMPLATE("cancel moves a waiting job to history with its reason", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh(std::make_shared<manual_clock>(t0));
    auto j = value_of(db->enqueue_job(job_request{"j", {{"n", 1}}}));
    auto rec = value_of(db->cancel_job(j.id, "not needed"));
    CHECK(rec.state == job_state::cancelled);
    CHECK(rec.error == "not needed");
    CHECK(rec.finished_at == t0);
    CHECK(rec.payload == nlohmann::json{{"n", 1}});
    CHECK(reserve(*db, {"j"}, 10).empty());
    auto st = value_of(db->stats());
    CHECK(st.cancelled == 1);
    CHECK(st.failed == 0);
    CHECK(st.total() == 1);
    auto failed = value_of(test::failed(*db, 10));
    REQUIRE(failed.size() == 1);
    CHECK(failed[0].state == job_state::cancelled);
    // Cancelling it again is not a change.
    CHECK(error_of(db->cancel_job(j.id, "again")) == errc::invalid_state);
    CHECK(value_of(db->get_job(j.id)).error == "not needed");
  }

  TEST_CASE_TEMPLATE("cancel marks a running job, which ends cancelled "
                     "whatever its outcome",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    value_of(db->enqueue_jobs({job_request{"j"}, job_request{"j"},
                               job_request{"j"}, job_request{"j"}}));
    auto got = reserve(*db, {"j"}, 4);
    REQUIRE(got.size() == 4);
    for (auto& j : got) {
      auto rec = value_of(db->cancel_job(j.id, "stop " + std::to_string(j.id)));
      CHECK(rec.state == job_state::running);
      CHECK(rec.cancel_reason == "stop " + std::to_string(j.id));
    }
    auto running = value_of(test::running(*db));
    REQUIRE(running.size() == 4);
    CHECK(running[0].cancel_reason == "stop " + std::to_string(got[0].id));
    // Success (alone: the batched path), then retry, snooze and failure.
    CHECK(value_of(
              db->complete_jobs({done(got[0], completion::kind::succeeded)})) ==
          std::vector<bool>{true});
    auto rest = value_of(
        db->complete_jobs({done(got[1], completion::kind::retry, "boom"),
                           done(got[2], completion::kind::snooze),
                           done(got[3], completion::kind::failed, "bad")}));
    CHECK(rest == std::vector<bool>{true, true, true});
    auto st = value_of(db->stats());
    CHECK(st.cancelled == 4);
    CHECK(st.total() == 4);
    for (auto& j : got) {
      auto rec = value_of(db->get_job(j.id));
      CHECK(rec.state == job_state::cancelled);
      CHECK(rec.error == "stop " + std::to_string(j.id));
    }
  }

  TEST_CASE_TEMPLATE("a lost reservation stays lost under a cancel", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    value_of(db->enqueue_job(job_request{"j"}));
    auto got = reserve(*db, {"j"}, 1);
    value_of(db->cancel_job(got.at(0).id, "stop"));
    std::vector<int64_t> none;
    value_of(db->release_unheld("node/q/1", none));
    auto stale = done(got[0], completion::kind::succeeded);
    CHECK(value_of(db->complete_jobs({stale})) == std::vector<bool>{false});
    CHECK(value_of(db->stats()).available == 1);
  }

  TEST_CASE_TEMPLATE("a handler's cancel is recorded as cancelled", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    value_of(db->enqueue_job(job_request{"j"}));
    auto got = reserve(*db, {"j"}, 1);
    CHECK(value_of(db->complete_jobs(
              {done(got.at(0), completion::kind::cancelled, "gave up")})) ==
          std::vector<bool>{true});
    auto rec = value_of(db->get_job(got[0].id));
    CHECK(rec.state == job_state::cancelled);
    CHECK(rec.error == "gave up");
  }

  TEST_CASE_TEMPLATE("cancel of a finished or unknown job is an error", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    value_of(db->enqueue_job(job_request{"j"}));
    auto got = reserve(*db, {"j"}, 1);
    require_ok(db->move_job_to_succeeded(got.at(0)));
    CHECK(error_of(db->cancel_job(got[0].id, "late")) == errc::invalid_state);
    CHECK(value_of(db->get_job(got[0].id)).state == job_state::succeeded);
    CHECK(error_of(db->cancel_job(987654, "")) == errc::job_not_found);
    CHECK(error_of(db->get_job(987654)) == errc::job_not_found);
    CHECK(error_of(db->retry_job(987654)) == errc::job_not_found);
  }

  TEST_CASE_TEMPLATE("retry runs a failed job again, keeping its errors", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    auto j = value_of(db->enqueue_job(job_request{"j", {{"k", "v"}}}));
    auto first = reserve(*db, {"j"}, 1).at(0);
    CHECK(value_of(db->complete_jobs(
              {done(first, completion::kind::retry, "first")})) ==
          std::vector<bool>{true});
    auto second = reserve(*db, {"j"}, 1).at(0);
    require_ok(db->move_job_to_failed(second, "second"));
    auto failed = value_of(db->get_job(j.id));
    CHECK(failed.state == job_state::failed);
    CHECK(failed.attempts == 2);
    REQUIRE(failed.errors.size() == 2);
    CHECK(failed.errors[0]["error"] == "first");
    CHECK(failed.errors[1]["error"] == "second");
    CHECK(failed.errors[1]["attempt"] == 2);
    clk->advance(1min);
    auto back = value_of(db->retry_job(j.id));
    CHECK(back.id == j.id);
    CHECK(back.state == job_state::waiting);
    CHECK(back.attempts == 0);
    CHECK(back.available_at == t0 + 1min);
    CHECK(back.error == "second");
    CHECK(back.errors.size() == 2);
    CHECK(back.payload == nlohmann::json{{"k", "v"}});
    auto again = reserve(*db, {"j"}, 1);
    REQUIRE(again.size() == 1);
    CHECK(again[0].attempts == 1);
    // A running, then a succeeded job cannot be retried.
    CHECK(error_of(db->retry_job(j.id)) == errc::invalid_state);
    require_ok(db->move_job_to_succeeded(again[0]));
    CHECK(error_of(db->retry_job(j.id)) == errc::invalid_state);
  }

  TEST_CASE_TEMPLATE("a job that failed twice and then succeeded keeps both "
                     "errors, whichever way its success is written",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    std::vector<int64_t> ids;
    for (int i = 0; i < 4; ++i)
      ids.push_back(value_of(db->enqueue_job(job_request{"j"})).id);
    for (auto attempt : {"first", "second"}) {
      auto got = reserve(*db, {"j"}, 4);
      REQUIRE(got.size() == 4);
      std::vector<completion> retries;
      for (auto& g : got)
        retries.push_back(done(g, completion::kind::retry, attempt));
      CHECK(value_of(db->complete_jobs(retries)) ==
            std::vector<bool>(4, true));
    }
    auto got = reserve(*db, {"j"}, 4);
    REQUIRE(got.size() == 4);
    // One alone, two together, one carried by the next claim.
    CHECK(value_of(db->complete_jobs(
              {done(got[0], completion::kind::succeeded)})) ==
          std::vector<bool>{true});
    CHECK(value_of(db->complete_jobs(
              {done(got[1], completion::kind::succeeded),
               done(got[2], completion::kind::succeeded)})) ==
          std::vector<bool>{true, true});
    auto r = value_of(db->complete_and_reserve(
        {done(got[3], completion::kind::succeeded)},
        {{"j"}, 1, "node/q/1", ""}));
    CHECK(r.applied == std::vector<bool>{true});
    for (auto id : ids) {
      auto rec = value_of(db->get_job(id));
      CHECK(rec.state == job_state::succeeded);
      REQUIRE(rec.errors.size() == 2);
      CHECK(rec.errors[0]["error"] == "first");
      CHECK(rec.errors[0]["attempt"] == 1);
      CHECK(rec.errors[1]["error"] == "second");
      CHECK(rec.errors[1]["attempt"] == 2);
    }
    job_query q;
    q.state = job_state::succeeded;
    auto page = value_of(db->list_jobs(q));
    REQUIRE(page.jobs.size() == 4);
    for (auto& rec : page.jobs)
      CHECK(rec.errors.size() == 2);
  }

  TEST_CASE_TEMPLATE("retry of a waiting job is refused, a cancelled one "
                     "runs again",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto a = value_of(db->enqueue_job(job_request{"j"}));
    CHECK(error_of(db->retry_job(a.id)) == errc::invalid_state);
    value_of(db->cancel_job(a.id, "oops"));
    auto back = value_of(db->retry_job(a.id));
    CHECK(back.state == job_state::waiting);
    CHECK(value_of(db->stats()).cancelled == 0);
    CHECK(reserve(*db, {"j"}, 1).size() == 1);
  }

  TEST_CASE_TEMPLATE("retry_failed retries every failed job of one name", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    value_of(db->enqueue_jobs({job_request{"a"}, job_request{"a"},
                               job_request{"a"}, job_request{"b"}}));
    auto got = reserve(*db, {"a", "b"}, 4);
    REQUIRE(got.size() == 4);
    require_ok(db->move_job_to_failed(got[0], "x"));
    require_ok(db->move_job_to_failed(got[1], "x"));
    require_ok(db->move_job_to_failed(got[3], "x"));
    value_of(db->complete_jobs({done(got[2], completion::kind::cancelled)}));
    CHECK(value_of(db->retry_failed("a")) == 2);
    auto st = value_of(db->stats());
    CHECK(st.available == 2);
    CHECK(st.failed == 1);    // b's
    CHECK(st.cancelled == 1); // cancelled ones stay
    CHECK(value_of(db->retry_failed("a")) == 0);
    CHECK(error_of(db->retry_failed("")) == errc::invalid_job_name);
  }

  TEST_CASE_TEMPLATE("a paused queue reserves nothing until resumed", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    value_of(db->enqueue_jobs({job_request{"j"}, job_request{"j"}}));
    require_ok(db->pause(pause_kind::queue, "q"));
    require_ok(db->pause(pause_kind::queue, "q")); // twice is harmless
    CHECK(reserve(*db, {"j"}, 10, "q").empty());
    CHECK(value_of(db->complete_and_reserve({}, {{"j"}, 10, "node/q/1", "q"}))
              .reserved.empty());
    // Another queue, or a caller naming none, is not paused.
    CHECK(reserve(*db, {"j"}, 1, "other").size() == 1);
    auto pauses = value_of(db->pauses());
    REQUIRE(pauses.size() == 1);
    CHECK(pauses[0].kind == pause_kind::queue);
    CHECK(pauses[0].name == "q");
    // The pause is stored: a second connection sees it.
    auto other = store.connect();
    CHECK(value_of(other->pauses()).size() == 1);
    CHECK(value_of(other->reserve_jobs({{"j"}, 10, "n2/q/1", "q"})).empty());
    require_ok(db->resume(pause_kind::queue, "q"));
    require_ok(db->resume(pause_kind::queue, "q"));
    CHECK(value_of(db->pauses()).empty());
    CHECK(reserve(*db, {"j"}, 10, "q").size() == 1);
    CHECK(error_of(db->pause(pause_kind::queue, "")) == errc::invalid_argument);
  }

  TEST_CASE_TEMPLATE("a paused schedule enqueues nothing and skips what waits",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh(std::make_shared<manual_clock>(t0));
    scheduled_params p{job_request{"tick"}, t0 + 1min, std::nullopt};
    auto first = value_of(db->enqueue_scheduled(p));
    REQUIRE(first);
    require_ok(db->pause(pause_kind::schedule, "tick"));
    auto rec = value_of(db->get_job(first->id));
    CHECK(rec.state == job_state::cancelled);
    scheduled_params next{job_request{"tick"}, t0 + 2min, t0 + 1min};
    CHECK_FALSE(value_of(db->enqueue_scheduled(next)));
    require_ok(db->resume(pause_kind::schedule, "tick"));
    CHECK(value_of(db->enqueue_scheduled(next)));
  }

  TEST_CASE_TEMPLATE("list_jobs pages through each state by keyset", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    std::vector<job_request> rs;
    for (int i = 0; i < 7; ++i)
      rs.push_back(job_request{i % 2 ? "odd" : "even", {{"i", i}}});
    rs.push_back(job_request{"even"}.available_in(1h));
    auto ids = value_of(db->enqueue_jobs(rs));
    job_query q;
    q.state = job_state::waiting;
    q.newest_first = false;
    q.limit = 3;
    std::vector<int64_t> seen;
    for (int page = 0; page < 5; ++page) {
      auto p = value_of(db->list_jobs(q));
      for (auto id : ids_of(p))
        seen.push_back(id);
      if (p.next.empty())
        break;
      CHECK(p.jobs.size() == 3);
      q.after = p.next;
    }
    CHECK(seen == std::vector<int64_t>(ids.begin(), ids.begin() + 7));
    q = job_query{};
    q.state = job_state::waiting;
    q.names = {"odd"};
    auto odd = value_of(db->list_jobs(q));
    CHECK(ids_of(odd) == std::vector<int64_t>{ids[5], ids[3], ids[1]});
    CHECK(odd.next.empty());
    q = job_query{};
    q.state = job_state::scheduled;
    CHECK(ids_of(value_of(db->list_jobs(q))) == std::vector<int64_t>{ids[7]});
    // Finished ones by the time they finished, newest first.
    auto got = reserve(*db, {"even", "odd"}, 3);
    REQUIRE(got.size() == 3);
    for (auto& j : got) {
      clk->advance(1s);
      require_ok(db->move_job_to_succeeded(j));
    }
    q = job_query{};
    q.state = job_state::succeeded;
    q.limit = 2;
    auto p1 = value_of(db->list_jobs(q));
    CHECK(ids_of(p1) == std::vector<int64_t>{got[2].id, got[1].id});
    REQUIRE_FALSE(p1.next.empty());
    q.after = p1.next;
    auto p2 = value_of(db->list_jobs(q));
    CHECK(ids_of(p2) == std::vector<int64_t>{got[0].id});
    CHECK(p2.next.empty());
    CHECK(p2.jobs[0].finished_at == t0 + 1s);
    q = job_query{};
    q.state = job_state::running;
    CHECK(value_of(db->list_jobs(q)).jobs.empty());
  }

  TEST_CASE_TEMPLATE("list_jobs refuses a bad page position or limit", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    job_query q;
    for (auto bad : {"x", "1.2", "1.2.3.4", "1.2.3x", "'; DROP TABLE jobs"}) {
      q.after = bad;
      CHECK(error_of(db->list_jobs(q)) == errc::invalid_argument);
    }
    q.after.clear();
    q.limit = 0;
    CHECK(error_of(db->list_jobs(q)) == errc::invalid_argument);
    q.limit = 1001;
    CHECK(error_of(db->list_jobs(q)) == errc::invalid_argument);
    q.limit = 10;
    q.names = {std::string{"a\0b", 3}};
    CHECK(error_of(db->list_jobs(q)) == errc::invalid_argument);
  }

  TEST_CASE_TEMPLATE("stats_by_name counts each state and the oldest waiting",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    value_of(db->enqueue_job(job_request{"a"}.available_at(t0 - 5min)));
    value_of(db->enqueue_job(job_request{"a"}));
    value_of(db->enqueue_job(job_request{"a"}.available_in(1h)));
    value_of(db->enqueue_job(job_request{"b"}));
    value_of(db->enqueue_job(job_request{"b"}));
    auto got = reserve(*db, {"b"}, 2);
    require_ok(db->move_job_to_succeeded(got.at(0)));
    require_ok(db->move_job_to_failed(got.at(1), "x"));
    auto a = value_of(db->enqueue_job(job_request{"c"}));
    value_of(db->cancel_job(a.id, ""));
    auto all = value_of(db->stats_by_name());
    REQUIRE(all.size() == 3);
    CHECK(all[0].name == "a");
    CHECK(all[0].counts.available == 2);
    CHECK(all[0].counts.scheduled == 1);
    CHECK(all[0].oldest_waiting == t0 - 5min);
    CHECK(all[1].name == "b");
    CHECK(all[1].counts.succeeded == 1);
    CHECK(all[1].counts.failed == 1);
    CHECK_FALSE(all[1].oldest_waiting);
    CHECK(all[2].counts.cancelled == 1);
    CHECK(all[2].counts.total() == 1);
  }

  TEST_CASE_TEMPLATE("a node name is claimed by one live instance at a time", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(t0);
    auto db = store.fresh(clk);
    node_identity a{"n", "aaaa", "host-1", 100, t0};
    node_identity b{"n", "bbbb", "host-2", 200, t0 + 1s};
    auto alive = [](const node_holder&) { return true; };
    auto dead = [](const node_holder&) { return false; };
    CHECK_FALSE(value_of(db->claim_node(a, 30s, alive)));
    auto held = value_of(db->claim_node(b, 30s, alive));
    REQUIRE(held);
    CHECK(held->who.instance == "aaaa");
    CHECK(held->who.host == "host-1");
    CHECK(held->who.pid == 100);
    CHECK(held->who.started_at == t0);
    // The same instance claims again (a restarted registry); a holder its
    // checker finds dead, or with a stale heartbeat, is taken over.
    CHECK_FALSE(value_of(db->claim_node(a, 30s, alive)));
    CHECK_FALSE(value_of(db->claim_node(b, 30s, dead)));
    clk->advance(31s);
    CHECK_FALSE(value_of(db->claim_node(a, 30s, alive)));
    // Giving the name up needs the holding instance.
    require_ok(db->release_node("n", "bbbb"));
    CHECK(value_of(db->claim_node(b, 30s, alive)));
    require_ok(db->release_node("n", "aaaa"));
    CHECK_FALSE(value_of(db->claim_node(b, 30s, alive)));
    // A heartbeat that lands after its node gave the name up leaves a row
    // that holds nothing.
    require_ok(db->release_node("n", "bbbb"));
    require_ok(db->heartbeat("n"));
    CHECK_FALSE(value_of(db->claim_node(a, 30s, alive)));
  }

} // TEST_SUITE
