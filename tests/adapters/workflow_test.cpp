// Workflows on every store: tasks released when their parents finish, the
// policies of a parent that did not succeed, fan-in exactly once, late
// results of rescued parents, cancelling and retrying a workflow, and bad
// definitions refused with nothing written.
#include <algorithm>
#include <map>
#include <set>

#include <doctest/doctest.h>

#include "adapters/stores.hpp"
#include "bg_jobs/core/clock.hpp"
#include "bg_jobs/core/workflow.hpp"
#include "support/expect.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

using test::error_of;
using test::require_ok;
using test::value_of;

std::vector<job> claim(db_adapter& db, const std::string& owner = "n/q/1",
                       int limit = 100) {
  return value_of(db.reserve_jobs({{"step"}, limit, owner, "q"}));
}

completion ends(const job& j, completion::kind k = completion::kind::succeeded,
                std::string error = {}) {
  completion c;
  c.what = k;
  c.job_id = j.id;
  c.reserved_by = j.reserved_by;
  c.error = std::move(error);
  return c;
}

job_request step(const std::string& what) {
  return job_request{"step", {{"task", what}}};
}

std::string task_of(const job& j) {
  return j.payload.at("task").get<std::string>();
}

std::set<std::string> tasks_of(const std::vector<job>& jobs) {
  std::set<std::string> out;
  for (auto& j : jobs)
    out.insert(task_of(j));
  return out;
}

task_state state_of(const workflow_info& w, const std::string& task) {
  for (auto& t : w.tasks)
    if (t.name == task)
      return t.state;
  FAIL("no task " << task);
  return task_state::blocked;
}

/// Runs every task available now (succeeding, or failing for good those
/// named in `fail`), until none is; returns the tasks in the order run.
std::vector<std::string> run_all(db_adapter& db,
                                 const std::set<std::string>& fail = {}) {
  std::vector<std::string> order;
  for (;;) {
    auto batch = claim(db);
    if (batch.empty())
      return order;
    std::vector<completion> cs;
    for (auto& j : batch) {
      order.push_back(task_of(j));
      cs.push_back(fail.count(task_of(j))
                       ? ends(j, completion::kind::failed, "boom")
                       : ends(j));
    }
    auto applied = value_of(db.complete_jobs(cs));
    CHECK(std::all_of(applied.begin(), applied.end(), [](bool b) { return b; }));
  }
}

workflow diamond(parent_failure policy) {
  workflow w{"diamond"};
  w.add("a", step("a"));
  w.add("b", step("b"), {"a"});
  w.add("c", step("c"), {"a"});
  w.add("d", step("d"), {{"b", parent_failure::cancel}, {"c", policy}});
  return w;
}

} // namespace

TEST_SUITE("workflows") {

  TEST_CASE_TEMPLATE("without succeeded history a success leaves no row "
                     "except a workflow task's, and its workflow goes on",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    store.succeeded_history = false;
    auto db = store.fresh();
    // Plain jobs, through every path that records a success: a batch, one
    // with an output and progress, and one that comes with the next claim.
    for (int i = 0; i < 4; ++i)
      value_of(db->enqueue_job(step("plain")));
    auto held = claim(*db, "n/q/1", 3);
    REQUIRE(held.size() == 3);
    for (auto& j : held)
      REQUIRE(value_of(db->record_progress(j.id, "n/q/1", 1, 0.5, "half")));
    CHECK(store.count_rows("bg_jobs_progress") == 3);
    auto with_output = ends(held[1]);
    with_output.output = R"({"sum": 3})";
    CHECK(value_of(db->complete_jobs({ends(held[0])})) ==
          std::vector<bool>{true});
    CHECK(value_of(db->complete_jobs({with_output})) == std::vector<bool>{true});
    auto next = value_of(
        db->complete_and_reserve({ends(held[2])}, {{"step"}, 10, "n/q/1", "q"}));
    CHECK(next.applied == std::vector<bool>{true});
    REQUIRE(next.reserved.size() == 1);
    // A late success of a job whose reservation is gone changes nothing.
    auto late = ends(next.reserved[0]);
    late.reserved_by = "n/q/gone";
    CHECK(value_of(db->complete_jobs({late})) == std::vector<bool>{false});
    CHECK(value_of(db->get_job(next.reserved[0].id)).state ==
          job_state::running);
    for (auto& j : held)
      CHECK(error_of(db->get_job(j.id)) == errc::job_not_found);
    CHECK(store.count_rows("jobs_succeeded") == 0);
    CHECK(store.count_rows("bg_jobs_outputs") == 0);
    // The progress of those recorded in a batch goes at the next prune
    // at the latest (at once on SQLite).
    value_of(db->prune_jobs(prune_params{}));
    CHECK(store.count_rows("bg_jobs_progress") == 0);
    CHECK(value_of(db->stats()).succeeded == 0);
    value_of(db->complete_jobs({ends(next.reserved[0])}));
    // A workflow's tasks keep their rows: each success releases the next.
    auto ids = value_of(db->enqueue_workflow(diamond(parent_failure::cancel)));
    CHECK(run_all(*db).size() == 4);
    auto w = value_of(db->get_workflow(ids.workflow_id));
    CHECK(w.state == workflow_state::succeeded);
    CHECK(w.succeeded == 4);
    CHECK(store.count_rows("jobs_succeeded") == 4);
    CHECK(store.count_rows("jobs") == 0);
  }

  TEST_CASE_TEMPLATE("a task runs only after all its parents succeeded", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto ids = value_of(db->enqueue_workflow(diamond(parent_failure::cancel)));
    REQUIRE(ids.tasks.size() == 4);
    CHECK(value_of(db->get_job(ids.tasks["d"])).state == job_state::blocked);
    auto first = claim(*db);
    REQUIRE(tasks_of(first) == std::set<std::string>{"a"});
    CHECK(claim(*db).empty());
    value_of(db->complete_jobs({ends(first[0])}));
    auto second = claim(*db);
    CHECK(tasks_of(second) == std::set<std::string>{"b", "c"});
    // One parent of d done: d still waits.
    value_of(db->complete_jobs({ends(second[0])}));
    CHECK(claim(*db).empty());
    auto w = value_of(db->get_workflow(ids.workflow_id));
    CHECK(w.state == workflow_state::running);
    CHECK(w.succeeded == 2);
    CHECK(state_of(w, "d") == task_state::blocked);
    value_of(db->complete_jobs({ends(second[1])}));
    auto last = claim(*db);
    REQUIRE(tasks_of(last) == std::set<std::string>{"d"});
    CHECK(last[0].id == ids.tasks["d"]);
    value_of(db->complete_jobs({ends(last[0])}));
    w = value_of(db->get_workflow(ids.workflow_id));
    CHECK(w.state == workflow_state::succeeded);
    CHECK(w.succeeded == 4);
    CHECK(w.finished_at);
    REQUIRE(w.tasks.size() == 4);
    for (auto& t : w.tasks) {
      CHECK(t.state == task_state::succeeded);
      CHECK(t.job_name == "step");
    }
    auto d = std::find_if(w.tasks.begin(), w.tasks.end(),
                          [](auto& t) { return t.name == "d"; });
    REQUIRE(d->after.size() == 2);
    auto listed = value_of(db->list_workflows({}));
    REQUIRE(listed.size() == 1);
    CHECK(listed[0].id == ids.workflow_id);
    CHECK(listed[0].state == workflow_state::succeeded);
  }

  TEST_CASE_TEMPLATE("a failed parent cancels its child by default, which "
                     "runs with ignore and is held with hold",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    SUBCASE("cancel") {
      auto ids =
          value_of(db->enqueue_workflow(diamond(parent_failure::cancel)));
      auto ran = run_all(*db, {"c"});
      CHECK(std::count(ran.begin(), ran.end(), "d") == 0);
      auto w = value_of(db->get_workflow(ids.workflow_id));
      CHECK(w.state == workflow_state::failed);
      CHECK(w.failed == 1);
      CHECK(w.cancelled == 1);
      CHECK(state_of(w, "d") == task_state::cancelled);
      auto d = value_of(db->get_job(ids.tasks["d"]));
      CHECK(d.state == job_state::cancelled);
      CHECK(d.error.value_or("").find("did not succeed") != std::string::npos);
    }
    SUBCASE("ignore") {
      auto ids =
          value_of(db->enqueue_workflow(diamond(parent_failure::ignore)));
      auto ran = run_all(*db, {"c"});
      CHECK(std::count(ran.begin(), ran.end(), "d") == 1);
      auto w = value_of(db->get_workflow(ids.workflow_id));
      CHECK(w.state == workflow_state::failed);
      CHECK(w.failed == 1);
      CHECK(w.succeeded == 3);
    }
    SUBCASE("hold, then the workflow retried") {
      auto ids = value_of(db->enqueue_workflow(diamond(parent_failure::hold)));
      auto ran = run_all(*db, {"c"});
      CHECK(std::count(ran.begin(), ran.end(), "d") == 0);
      auto w = value_of(db->get_workflow(ids.workflow_id));
      CHECK(w.state == workflow_state::running);
      CHECK(w.held == 1);
      CHECK(w.stuck());
      CHECK(state_of(w, "d") == task_state::held);
      w = value_of(db->retry_workflow(ids.workflow_id));
      CHECK(w.state == workflow_state::running);
      CHECK(state_of(w, "c") == task_state::ready);
      CHECK(state_of(w, "d") == task_state::blocked);
      CHECK(w.succeeded == 2);
      ran = run_all(*db);
      CHECK(ran == std::vector<std::string>{"c", "d"});
      w = value_of(db->get_workflow(ids.workflow_id));
      CHECK(w.state == workflow_state::succeeded);
      CHECK(w.succeeded == 4);
    }
  }

  TEST_CASE_TEMPLATE("a retried workflow runs again only what did not "
                     "succeed, cancelled descendants included",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    workflow w{"chain"};
    w.add("a", step("a"));
    w.add("b", step("b"), {"a"});
    w.add("c", step("c"), {"b"});
    w.add("d", step("d"), {"c"});
    auto ids = value_of(db->enqueue_workflow(w));
    auto ran = run_all(*db, {"b"});
    CHECK(ran == std::vector<std::string>{"a", "b"});
    auto info = value_of(db->get_workflow(ids.workflow_id));
    CHECK(info.state == workflow_state::failed);
    CHECK(info.cancelled == 2);
    CHECK(error_of(db->retry_workflow(ids.workflow_id + 1000)) ==
          errc::job_not_found);
    info = value_of(db->retry_workflow(ids.workflow_id));
    CHECK(info.state == workflow_state::running);
    CHECK(info.failed == 0);
    CHECK(info.cancelled == 0);
    ran = run_all(*db);
    CHECK(ran == std::vector<std::string>{"b", "c", "d"});
    info = value_of(db->get_workflow(ids.workflow_id));
    CHECK(info.state == workflow_state::succeeded);
    CHECK(error_of(db->retry_workflow(ids.workflow_id)) ==
          errc::invalid_state);
  }

  TEST_CASE_TEMPLATE("fifty parents finished in one batch release their "
                     "child once",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    workflow w{"fan-in"};
    std::vector<std::string> parents;
    for (int i = 0; i < 50; ++i) {
      parents.push_back("p" + std::to_string(i));
      w.add(parents.back(), step(parents.back()));
    }
    w.add("join", step("join"), parents);
    auto ids = value_of(db->enqueue_workflow(w));
    auto batch = claim(*db);
    REQUIRE(batch.size() == 50);
    // Half in one transaction, half in the next.
    std::vector<completion> first, second;
    for (size_t i = 0; i < batch.size(); ++i)
      (i % 2 ? first : second).push_back(ends(batch[i]));
    value_of(db->complete_jobs(first));
    CHECK(claim(*db).empty());
    value_of(db->complete_jobs(second));
    auto join = claim(*db);
    REQUIRE(join.size() == 1);
    CHECK(join[0].id == ids.tasks["join"]);
    value_of(db->complete_jobs({ends(join[0])}));
    CHECK(value_of(db->get_workflow(ids.workflow_id)).state ==
          workflow_state::succeeded);
  }

  TEST_CASE_TEMPLATE("a rescued parent's late result releases nothing",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    workflow w{"late"};
    w.add("a", step("a"));
    w.add("b", step("b"), {"a"});
    auto ids = value_of(db->enqueue_workflow(w));
    auto old = claim(*db, "node-a/q/1");
    REQUIRE(old.size() == 1);
    value_of(db->release_jobs_reserved_by("node-a/q/1"));
    auto now_held = claim(*db, "node-b/q/1");
    REQUIRE(now_held.size() == 1);
    // The first holder's late success and failure apply to nothing.
    CHECK(value_of(db->complete_jobs({ends(old[0])})) ==
          std::vector<bool>{false});
    CHECK(value_of(db->complete_jobs({ends(
              old[0], completion::kind::failed, "late")})) ==
          std::vector<bool>{false});
    auto info = value_of(db->get_workflow(ids.workflow_id));
    CHECK(state_of(info, "a") == task_state::ready);
    CHECK(state_of(info, "b") == task_state::blocked);
    CHECK(claim(*db, "node-b/q/1").empty());
    value_of(db->complete_jobs({ends(now_held[0])}));
    auto b = claim(*db, "node-b/q/1");
    REQUIRE(b.size() == 1);
    CHECK(b[0].id == ids.tasks["b"]);
  }

  TEST_CASE_TEMPLATE("a cancelled workflow cancels what has not run and "
                     "ends when its running task does",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    workflow w{"cancel me"};
    w.add("a", step("a"));
    w.add("a2", step("a2"));
    w.add("b", step("b"), {"a"});
    w.add("c", step("c"), {"b"}, parent_failure::ignore);
    auto ids = value_of(db->enqueue_workflow(w));
    auto running = claim(*db, "n/q/1", 1);
    REQUIRE(running.size() == 1);
    REQUIRE(task_of(running[0]) == "a");
    auto info = value_of(db->cancel_workflow(ids.workflow_id, "operator"));
    CHECK(info.state == workflow_state::running);
    CHECK(state_of(info, "a2") == task_state::cancelled);
    CHECK(state_of(info, "b") == task_state::cancelled);
    CHECK(state_of(info, "c") == task_state::cancelled);
    CHECK(value_of(db->get_job(ids.tasks["b"])).error == "operator");
    CHECK(claim(*db).empty());
    // The running task ends cancelled whatever it reports.
    value_of(db->complete_jobs({ends(running[0])}));
    info = value_of(db->get_workflow(ids.workflow_id));
    CHECK(info.state == workflow_state::cancelled);
    CHECK(info.cancelled == 4);
    CHECK(error_of(db->cancel_workflow(ids.workflow_id, "")) ==
          errc::invalid_state);
    CHECK(error_of(db->cancel_workflow(ids.workflow_id + 99, "")) ==
          errc::job_not_found);
  }

  TEST_CASE_TEMPLATE("a deleted or cancelled task ends its children as "
                     "their policy says",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    workflow w{"deletions"};
    w.add("a", step("a"));
    w.add("b", step("b"), {"a"});
    w.add("c", step("c"), {"b"}, parent_failure::ignore);
    w.add("d", step("d"), {"a"});
    auto ids = value_of(db->enqueue_workflow(w));
    // b is blocked: cancelling it lets c go (ignore) once a is done.
    auto cancelled = value_of(db->cancel_job(ids.tasks["b"], "not needed"));
    CHECK(cancelled.state == job_state::cancelled);
    // a waits: deleting it cancels d (cancel policy).
    require_ok(db->delete_job(ids.tasks["a"]));
    CHECK(error_of(db->get_job(ids.tasks["a"])) == errc::job_not_found);
    auto ran = run_all(*db);
    CHECK(ran == std::vector<std::string>{"c"});
    auto info = value_of(db->get_workflow(ids.workflow_id));
    CHECK(state_of(info, "d") == task_state::cancelled);
    CHECK(info.state == workflow_state::failed);
  }

  TEST_CASE_TEMPLATE("a batch calls back once: success when all succeeded, "
                     "finish when all ended, failure at the first failure",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto batch = [](int jobs) {
      workflow w{"batch"};
      for (int i = 0; i < jobs; ++i)
        w.add("j" + std::to_string(i), step("j" + std::to_string(i)));
      w.on_success(step("success"))
          .on_finish(step("finish"))
          .on_failure(step("failure"));
      return w;
    };
    SUBCASE("all succeed") {
      auto ids = value_of(db->enqueue_workflow(batch(5)));
      CHECK(ids.tasks.count("@on_success") == 1);
      auto ran = run_all(*db);
      CHECK(std::count(ran.begin(), ran.end(), "success") == 1);
      CHECK(std::count(ran.begin(), ran.end(), "finish") == 1);
      CHECK(std::count(ran.begin(), ran.end(), "failure") == 0);
      auto w = value_of(db->get_workflow(ids.workflow_id));
      CHECK(w.state == workflow_state::succeeded);
      CHECK(w.total == 5);
      CHECK(w.succeeded == 5);
      CHECK(state_of(w, "@on_failure") == task_state::cancelled);
      CHECK(state_of(w, "@on_success") == task_state::succeeded);
      CHECK(value_of(db->get_job(ids.tasks["@on_failure"])).state ==
            job_state::cancelled);
    }
    SUBCASE("two fail") {
      auto ids = value_of(db->enqueue_workflow(batch(5)));
      auto ran = run_all(*db, {"j1", "j3"});
      CHECK(std::count(ran.begin(), ran.end(), "success") == 0);
      CHECK(std::count(ran.begin(), ran.end(), "finish") == 1);
      CHECK(std::count(ran.begin(), ran.end(), "failure") == 1);
      auto w = value_of(db->get_workflow(ids.workflow_id));
      CHECK(w.state == workflow_state::failed);
      CHECK(state_of(w, "@on_success") == task_state::cancelled);
    }
    SUBCASE("a job that failed an attempt and was retried, then succeeded") {
      auto ids = value_of(db->enqueue_workflow(batch(2)));
      auto first = claim(*db);
      REQUIRE(first.size() == 2);
      auto again = ends(first[0], completion::kind::retry, "try again");
      again.available_at = first[0].available_at;
      value_of(db->complete_jobs({again, ends(first[1])}));
      auto ran = run_all(*db);
      CHECK(std::count(ran.begin(), ran.end(), "success") == 1);
      CHECK(std::count(ran.begin(), ran.end(), "failure") == 0);
      CHECK(value_of(db->get_workflow(ids.workflow_id)).state ==
            workflow_state::succeeded);
    }
  }

  TEST_CASE_TEMPLATE("an open batch grows until closed, then finishes and "
                     "calls back once",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    workflow w{"open"};
    w.add("first", step("first"));
    w.on_finish(step("finish")).keep_open();
    auto ids = value_of(db->enqueue_workflow(w));
    auto ran = run_all(*db);
    CHECK(ran == std::vector<std::string>{"first"});
    auto info = value_of(db->get_workflow(ids.workflow_id));
    CHECK(info.state == workflow_state::running);
    CHECK(info.open);
    workflow more{"more"};
    more.add("second", step("second"));
    more.add("third", step("third"), {"second", "first"});
    auto added = value_of(db->add_tasks(ids.workflow_id, more));
    CHECK(added.tasks.size() == 2);
    ran = run_all(*db);
    CHECK(ran == std::vector<std::string>{"second", "third"});
    CHECK(value_of(db->get_workflow(ids.workflow_id)).state ==
          workflow_state::running);
    info = value_of(db->close_workflow(ids.workflow_id));
    CHECK(info.state == workflow_state::succeeded);
    CHECK(info.total == 3);
    ran = run_all(*db);
    CHECK(ran == std::vector<std::string>{"finish"});
    // Closed and finished: nothing more is added; bad additions refused.
    CHECK(error_of(db->add_tasks(ids.workflow_id, more)) ==
          errc::invalid_state);
    CHECK(error_of(db->close_workflow(ids.workflow_id + 99)) ==
          errc::job_not_found);
    workflow other{"other"};
    other.add("x", step("x"));
    other.keep_open();
    auto open_ids = value_of(db->enqueue_workflow(other));
    workflow dup{"dup"};
    dup.add("x", step("x"));
    CHECK(error_of(db->add_tasks(open_ids.workflow_id, dup)) ==
          errc::invalid_argument);
    workflow ghost{"ghost"};
    ghost.add("y", step("y"), {"nobody"});
    CHECK(error_of(db->add_tasks(open_ids.workflow_id, ghost)) ==
          errc::invalid_argument);
    // Nothing can follow a task that failed; nothing is written.
    auto x = claim(*db);
    REQUIRE(x.size() == 1);
    value_of(db->complete_jobs({ends(x[0], completion::kind::failed, "no")}));
    workflow after_failed{"after"};
    after_failed.add("z", step("z"), {"x"});
    CHECK(error_of(db->add_tasks(open_ids.workflow_id, after_failed)) ==
          errc::invalid_state);
    CHECK(value_of(db->get_workflow(open_ids.workflow_id)).total == 1);
    CHECK(claim(*db).empty());
  }

  TEST_CASE_TEMPLATE("a running task adds tasks to its own workflow, two "
                     "levels deep, and they run before what waits for them",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    workflow w{"fan-out"};
    w.add("split", step("split"));
    auto ids = value_of(db->enqueue_workflow(w));
    auto split = claim(*db);
    REQUIRE(split.size() == 1);
    // While it runs, split adds two parts and a join after them.
    workflow parts{"parts"};
    parts.add("part1", step("part1"), {"split"});
    parts.add("part2", step("part2"), {"split"});
    parts.add("join", step("join"), {"part1", "part2"});
    value_of(db->add_tasks(ids.workflow_id, parts));
    value_of(db->complete_jobs({ends(split[0])}));
    auto level1 = claim(*db);
    REQUIRE(tasks_of(level1) == std::set<std::string>{"part1", "part2"});
    // part1, running, adds a sub-part that join must also wait for: it is
    // added with join's other parents as a new join.
    workflow sub{"sub"};
    sub.add("part1a", step("part1a"), {"part1"});
    sub.add("join2", step("join2"), {"join", "part1a"});
    value_of(db->add_tasks(ids.workflow_id, sub));
    value_of(db->complete_jobs({ends(level1[0]), ends(level1[1])}));
    auto ran = run_all(*db);
    CHECK(std::find(ran.begin(), ran.end(), "join2") - ran.begin() >
          std::find(ran.begin(), ran.end(), "part1a") - ran.begin());
    auto info = value_of(db->get_workflow(ids.workflow_id));
    CHECK(info.state == workflow_state::succeeded);
    CHECK(info.total == 6);
  }

  TEST_CASE_TEMPLATE("pruning keeps an unfinished workflow whole and removes "
                     "a finished one as a unit, outputs included",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(from_unix_ms(1'800'000'000'000));
    auto db = store.fresh(clk);
    workflow w{"keep"};
    w.add("a", step("a"));
    w.add("b", step("b"), {"a"});
    auto open_one = value_of(db->enqueue_workflow(w));
    workflow done{"done"};
    done.add("x", step("x"));
    auto closed = value_of(db->enqueue_workflow(done));
    value_of(db->enqueue_job(step("plain")));
    // a, x and the plain job succeed, with outputs.
    auto batch = claim(*db);
    REQUIRE(batch.size() == 3);
    std::vector<completion> cs;
    for (auto& j : batch) {
      cs.push_back(ends(j));
      cs.back().output = "{\"of\":\"" + task_of(j) + "\"}";
    }
    value_of(db->complete_jobs(cs));
    CHECK(value_of(db->get_job(open_one.tasks["a"])).output ==
          nlohmann::json{{"of", "a"}});
    clk->advance(std::chrono::hours{24 * 30});
    prune_params p;
    p.succeeded_max_age = 1h;
    p.failed_max_age = 1h;
    int64_t pruned = 0;
    for (int i = 0; i < 5; ++i)
      pruned += value_of(db->prune_jobs(p));
    CHECK(pruned == 2); // x (with its workflow) and the plain job
    CHECK(value_of(db->get_job(open_one.tasks["a"])).output ==
          nlohmann::json{{"of", "a"}});
    CHECK(error_of(db->get_workflow(closed.workflow_id)) ==
          errc::job_not_found);
    CHECK(error_of(db->get_job(closed.tasks["x"])) == errc::job_not_found);
    // The unfinished workflow still runs to its end, reading a's output.
    auto b = claim(*db);
    REQUIRE(b.size() == 1);
    CHECK(value_of(db->parent_outputs(b[0].id)) ==
          std::map<std::string, nlohmann::json>{{"a", {{"of", "a"}}}});
    value_of(db->complete_jobs({ends(b[0])}));
    CHECK(value_of(db->get_workflow(open_one.workflow_id)).state ==
          workflow_state::succeeded);
    clk->advance(2h);
    for (int i = 0; i < 5; ++i)
      value_of(db->prune_jobs(p));
    CHECK(error_of(db->get_workflow(open_one.workflow_id)) ==
          errc::job_not_found);
    CHECK(value_of(db->stats()).total() == 0);
  }

  TEST_CASE_TEMPLATE("progress is stored while the attempt holds its "
                     "reservation, kept with the job and pruned with it",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(from_unix_ms(1'800'000'000'000));
    auto db = store.fresh(clk);
    auto x = value_of(db->enqueue_job(step("x")));
    auto y = value_of(db->enqueue_job(step("y")));
    auto first = claim(*db);
    REQUIRE(first.size() == 2);
    REQUIRE(first[0].id == x.id);
    auto owner = *first[0].reserved_by;
    CHECK(value_of(db->record_progress(x.id, owner, 1, 0.25, "a quarter")));
    clk->advance(1s);
    CHECK(value_of(db->record_progress(x.id, owner, 1, 0.5, "half")));
    auto p = value_of(db->get_job(x.id)).progress;
    REQUIRE(p);
    CHECK(*p == job_progress{0.5, "half", 1, clk->now()});
    // Not the reservation's: another holder, another attempt, nothing here.
    CHECK_FALSE(value_of(db->record_progress(x.id, "other/q/1", 1, 0.9, "")));
    CHECK_FALSE(value_of(db->record_progress(x.id, owner, 2, 0.9, "")));
    CHECK_FALSE(value_of(db->record_progress(999999, owner, 1, 0.9, "")));
    CHECK(value_of(db->get_job(x.id)).progress->fraction == 0.5);
    CHECK(value_of(db->get_job(y.id)).progress == std::nullopt);
    // Released (its node died): the late report changes nothing; the last
    // one shows while it waits, and the next attempt's replaces it.
    value_of(db->release_jobs_reserved_by(owner));
    CHECK_FALSE(value_of(db->record_progress(x.id, owner, 1, 0.75, "late")));
    CHECK(value_of(db->get_job(x.id)).progress->text == "half");
    auto again = claim(*db);
    REQUIRE(again.size() == 2);
    REQUIRE(again[0].id == x.id);
    CHECK(value_of(
        db->record_progress(x.id, *again[0].reserved_by, 2, 1.0, "done")));
    CHECK(value_of(db->record_progress(y.id, *again[1].reserved_by,
                                       again[1].attempts, 0.1, "")));
    // Kept with the history row.
    value_of(db->complete_jobs(
        {ends(again[0]), ends(again[1], completion::kind::failed, "boom")}));
    CHECK(*value_of(db->get_job(x.id)).progress ==
          job_progress{1.0, "done", 2, clk->now()});
    CHECK(value_of(db->get_job(y.id)).progress->fraction == 0.1);
    CHECK(store.count_rows("bg_jobs_progress") == 2);
    // A failed job retried keeps its last report; deleted, it is gone.
    value_of(db->retry_job(y.id));
    CHECK(value_of(db->get_job(y.id)).progress->fraction == 0.1);
    require_ok(db->delete_job(y.id));
    CHECK(store.count_rows("bg_jobs_progress") == 1);
    auto z = value_of(db->enqueue_job(step("z")));
    auto zs = claim(*db);
    REQUIRE(zs.size() == 1);
    CHECK(value_of(db->record_progress(z.id, *zs[0].reserved_by, 1, 0.3, "")));
    value_of(db->complete_jobs({ends(zs[0], completion::kind::failed, "no")}));
    CHECK(store.count_rows("bg_jobs_progress") == 2);
    // Pruned with its history row, succeeded or failed.
    clk->advance(std::chrono::hours{24 * 30});
    prune_params pp;
    pp.succeeded_max_age = 1h;
    pp.failed_max_age = 1h;
    for (int i = 0; i < 3; ++i)
      value_of(db->prune_jobs(pp));
    CHECK(error_of(db->get_job(x.id)) == errc::job_not_found);
    CHECK(error_of(db->get_job(z.id)) == errc::job_not_found);
    CHECK(store.count_rows("bg_jobs_progress") == 0);
  }

  TEST_CASE_TEMPLATE("each finish of a workflow is taken once by one of "
                     "two connections and stuck ones are listed",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(from_unix_ms(1'800'000'000'000));
    auto db = store.fresh(clk);
    auto other = store.connect(clk);
    auto held = value_of(db->enqueue_workflow(diamond(parent_failure::hold)));
    std::vector<int64_t> plain;
    for (int i = 0; i < 5; ++i) {
      workflow w{"plain"};
      w.add("x", step("x"));
      plain.push_back(value_of(db->enqueue_workflow(w)).workflow_id);
    }
    auto empty = value_of(db->watch_workflows(100));
    CHECK(empty.finished.empty());
    CHECK(empty.stuck.empty());
    clk->advance(1s);
    run_all(*db, {"c"}); // c fails for good: d is held
    auto first = value_of(db->watch_workflows(3));
    auto second = value_of(other->watch_workflows(100));
    std::vector<int64_t> taken;
    for (auto* w : {&first, &second})
      for (auto& f : w->finished) {
        taken.push_back(f.id);
        CHECK(f.state == workflow_state::succeeded);
        CHECK(f.finished_at == clk->now());
      }
    std::sort(taken.begin(), taken.end());
    CHECK(taken == plain);
    CHECK(first.finished.size() == 3);
    REQUIRE(second.stuck.size() == 1);
    CHECK(second.stuck[0].id == held.workflow_id);
    CHECK(second.stuck[0].held == 1);
    CHECK(value_of(db->watch_workflows(100)).finished.empty());
    // Retried and finished again: taken again, once.
    value_of(db->retry_workflow(held.workflow_id));
    CHECK(value_of(db->watch_workflows(100)).stuck.empty());
    clk->advance(1s);
    run_all(*db);
    auto again = value_of(db->watch_workflows(100));
    REQUIRE(again.finished.size() == 1);
    CHECK(again.finished[0].id == held.workflow_id);
    CHECK(again.finished[0].state == workflow_state::succeeded);
    CHECK(value_of(other->watch_workflows(100)).finished.empty());
  }

  TEST_CASE_TEMPLATE("bad workflows are refused and nothing is written", S,
                     BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto refused = [&](const workflow& w, const char* says,
                       errc code = errc::invalid_argument) {
      auto r = db->enqueue_workflow(w);
      REQUIRE_FALSE(r);
      CHECK(code_of(r.error()) == code);
      auto text = test::why(r);
      CHECK_MESSAGE(text.find(says) != std::string::npos, text);
    };
    {
      workflow w{"cycle"};
      w.add("a", step("a"), {"c"});
      w.add("b", step("b"), {"a"});
      w.add("c", step("c"), {"b"});
      w.add("d", step("d"));
      refused(w, "cycle: ");
    }
    {
      workflow w{"unknown"};
      w.add("a", step("a"), {"ghost"});
      refused(w, "unknown task 'ghost'");
    }
    {
      workflow w{"twice"};
      w.add("a", step("a"));
      w.add("a", step("a"));
      refused(w, "used twice");
    }
    {
      workflow w{"self"};
      w.add("a", step("a"), {"a"});
      refused(w, "depends on itself");
    }
    refused(workflow{"empty"}, "at least one task");
    {
      workflow w{"bad name"};
      w.add(std::string{"t\x01"}, step("a"));
      refused(w, "task name");
    }
    {
      workflow w{"bad request"};
      w.add("a", step("a"));
      w.add("b", job_request{""});
      refused(w, "", errc::invalid_job_name);
    }
    {
      workflow w{"unique"};
      unique_options u;
      u.key = "k";
      w.add("a", std::move(step("a").with_unique(u)));
      refused(w, "unique");
    }
    CHECK(value_of(db->list_workflows({})).empty());
    CHECK(value_of(db->stats()).total() == 0);
    workflow_query q;
    q.limit = 0;
    CHECK(error_of(db->list_workflows(q)) == errc::invalid_argument);
  }
}
