// Workflows across node processes: fifty parents finishing at once on three
// processes release their child exactly once, and a node killed (SIGKILL)
// mid-workflow strands nothing and runs no child twice that it did not
// hold.
#include <csignal>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "bg_jobs/core/workflow.hpp"
#include "reliability/node_targets.hpp"
#include "support/expect.hpp"
#include "support/store_reads.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace bg_jobs::test;
using namespace std::chrono_literals;

namespace {

/// Enqueues `count` workflows of `parents` parents and one child each;
/// returns them.
std::vector<workflow_ids> fan_ins(db_adapter& db, int count, int parents) {
  std::vector<workflow_ids> out;
  for (int k = 0; k < count; ++k) {
    workflow w{"fan-in " + std::to_string(k)};
    std::vector<std::string> names;
    for (int i = 0; i < parents; ++i) {
      names.push_back("p" + std::to_string(i));
      w.add(names.back(), job_request{"work", {{"w", k}, {"p", i}}});
    }
    w.add("child", job_request{"work", {{"w", k}, {"child", true}}}, names);
    out.push_back(value_of(db.enqueue_workflow(w)));
  }
  return out;
}

template <class Target>
int64_t runs_of(const Target& t, int64_t job_id) {
  return t.query_int("SELECT count(*) FROM runs WHERE job_id = " +
                     std::to_string(job_id));
}

} // namespace

TEST_SUITE("reliability") {

  TEST_CASE_TEMPLATE("fifty parents finishing at once on three processes "
                     "release their child exactly once, twenty times over",
                     T, sqlite_target, postgres_target) {
    T target;
    prepare(target, 0);
    auto db = target.open();
    // 51 slots over three nodes: the fifty parents of one workflow run at
    // once, spread over the processes, and end together.
    auto flows = fan_ins(*db, 20, 50);
    // Held until every node is up, so that each takes part however slowly
    // the machine starts processes.
    REQUIRE(db->pause(pause_kind::queue, "work"));
    std::vector<std::unique_ptr<child_process>> nodes;
    for (auto name : {"node-a", "node-b", "node-c"})
      nodes.push_back(start_node(target.store(), name, 17,
                                 {"--sleep-ms", "20", "--prefetch", "0"}));
    REQUIRE(test::eventually(
        [&] {
          return target.query_int("SELECT count(*) FROM bg_jobs_nodes WHERE"
                                  " node IN ('node-a', 'node-b', 'node-c')") ==
                 3;
        },
        60s));
    REQUIRE(db->resume(pause_kind::queue, "work"));
    for (auto& n : nodes)
      CHECK(n->wait(120s) == 0);
    for (auto& f : flows) {
      auto info = value_of(db->get_workflow(f.workflow_id));
      CHECK(info.state == workflow_state::succeeded);
      CHECK(info.succeeded == 51);
      CHECK(runs_of(target, f.tasks.at("child")) == 1);
    }
    auto [total, distinct] = target.runs();
    CHECK(distinct == 20 * 51);
    CHECK(total == distinct);
    // Every node ran parents: the fan-in was finished from several.
    CHECK(target.node_names().size() == 3);
  }

  TEST_CASE_TEMPLATE("a batch of a thousand jobs on three processes calls "
                     "each callback exactly once",
                     T, sqlite_target, postgres_target) {
    T target;
    prepare(target, 0);
    auto db = target.open();
    workflow w{"batch"};
    for (int i = 0; i < 1000; ++i)
      w.add("j" + std::to_string(i), job_request{"work", {{"i", i}}});
    w.on_success(job_request{"work", {{"callback", "success"}}})
        .on_finish(job_request{"work", {{"callback", "finish"}}})
        .on_failure(job_request{"work", {{"callback", "failure"}}});
    auto ids = value_of(db->enqueue_workflow(w));
    std::vector<std::unique_ptr<child_process>> nodes;
    for (auto name : {"node-a", "node-b", "node-c"})
      nodes.push_back(start_node(target.store(), name, 8));
    for (auto& n : nodes)
      CHECK(n->wait(120s) == 0);
    auto info = value_of(db->get_workflow(ids.workflow_id));
    CHECK(info.state == workflow_state::succeeded);
    CHECK(info.succeeded == 1000);
    CHECK(runs_of(target, ids.tasks.at("@on_success")) == 1);
    CHECK(runs_of(target, ids.tasks.at("@on_finish")) == 1);
    CHECK(runs_of(target, ids.tasks.at("@on_failure")) == 0);
    auto [total, distinct] = target.runs();
    CHECK(distinct == 1002);
    CHECK(total == distinct);
  }

  TEST_CASE_TEMPLATE("a node killed mid-workflow strands no task and runs "
                     "again only what it held",
                     T, sqlite_target, postgres_target) {
    T target;
    prepare(target, 0);
    auto db = target.open();
    // Thirty diamonds: a, then b and c, then d.
    std::vector<workflow_ids> flows;
    for (int k = 0; k < 30; ++k) {
      workflow w{"diamond " + std::to_string(k)};
      w.add("a", job_request{"work", {{"w", k}}});
      w.add("b", job_request{"work", {{"w", k}}}, {"a"});
      w.add("c", job_request{"work", {{"w", k}}}, {"a"});
      w.add("d", job_request{"work", {{"w", k}}}, {"b", "c"});
      flows.push_back(value_of(db->enqueue_workflow(w)));
    }
    std::vector<std::string> slow{"--lease-ms", "1000", "--sleep-ms", "30"};
    auto doomed = start_node(target.store(), "node-a", 4, slow);
    auto survivor = start_node(target.store(), "node-b", 4, slow);
    REQUIRE(test::eventually([&] { return succeeded(*db) >= 40; }, 60s));
    // What the dead node held is counted while nobody can rescue it.
    survivor->kill(SIGSTOP);
    doomed->kill(SIGKILL);
    doomed->wait(10s);
    auto held = test::running(*db);
    REQUIRE(held);
    int64_t held_by_dead = 0;
    for (auto& j : *held)
      held_by_dead += j.reserved_by->rfind("node-a/", 0) == 0 ? 1 : 0;
    survivor->kill(SIGCONT);
    CHECK(survivor->wait(120s) == 0);
    for (auto& f : flows) {
      auto info = value_of(db->get_workflow(f.workflow_id));
      CHECK(info.state == workflow_state::succeeded);
      for (auto& [name, id] : f.tasks)
        CHECK(runs_of(target, id) >= 1);
    }
    auto [total, distinct] = target.runs();
    CHECK(distinct == 30 * 4);
    MESSAGE("node-a killed holding " << held_by_dead << "; "
                                     << total - distinct << " ran twice");
    CHECK(total - distinct <= held_by_dead);
  }
}
