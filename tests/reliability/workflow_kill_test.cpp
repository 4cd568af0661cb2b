// Workflows across node processes: fifty parents finishing at once on three
// processes release their child exactly once; a node killed (SIGKILL)
// mid-workflow strands nothing and runs no child twice that it did not
// hold; a node paused past its lease while running parents gets their late
// results ignored, and each child runs once; PostgreSQL backends killed
// while workflows flow kill no process and strand no task.
#include <csignal>
#include <fstream>
#include <thread>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "bg_jobs/core/workflow.hpp"
#include "reliability/node_targets.hpp"
#include "support/expect.hpp"
#include "support/store_reads.hpp"
#include "support/temp_dir.hpp"
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
    std::vector<std::string> names{"node-a", "node-b", "node-c"};
    std::vector<std::unique_ptr<child_process>> nodes;
    start_together(target, *db, names, [&] {
      for (auto& name : names)
        nodes.push_back(start_node(target.store(), name, 17,
                                   {"--sleep-ms", "20", "--prefetch", "0"}));
    });
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

  TEST_CASE_TEMPLATE("a node paused past its lease while running parents: "
                     "their late results change nothing and each child "
                     "runs once",
                     T, sqlite_target, postgres_target) {
    T target;
    prepare(target, 0);
    auto db = target.open();
    std::vector<workflow_ids> flows;
    std::vector<int64_t> parents;
    for (int k = 0; k < 16; ++k) {
      workflow w{"pair " + std::to_string(k)};
      w.add("parent", job_request{"work", {{"w", k}}});
      w.add("child", job_request{"work", {{"w", k}, {"child", true}}},
            {"parent"});
      flows.push_back(value_of(db->enqueue_workflow(w)));
      parents.push_back(flows.back().tasks.at("parent"));
    }
    std::vector<std::string> slow{"--lease-ms", "1000", "--sleep-ms", "300"};
    test::temp_dir dir;
    auto started = dir.file("node-a.started");
    auto with_log = slow;
    with_log.insert(with_log.end(), {"--start-log", started});
    auto paused = start_node(target.store(), "node-a", 4, with_log);
    // The jobs whose handlers node-a started (written as each starts).
    auto started_by_a = [&] {
      std::ifstream in{started};
      std::set<int64_t> ids;
      for (int64_t id = 0; in >> id;)
        ids.insert(id);
      return ids;
    };
    // Stopped between two store calls while handlers of its run parents.
    std::set<int64_t> held_at_stop;
    int64_t running_at_stop = 0;
    REQUIRE(test::eventually(
        [&] {
          REQUIRE(paused->stop());
          if (target.quiet("node-a")) {
            auto held = held_by(*db, "node-a");
            REQUIRE(held);
            held_at_stop = {held->begin(), held->end()};
            auto running = started_by_a();
            running_at_stop = 0;
            for (auto id : parents)
              if (held_at_stop.count(id) > 0 && running.count(id) > 0)
                ++running_at_stop;
            if (running_at_stop > 0)
              return true;
          }
          paused->kill(SIGCONT);
          std::this_thread::sleep_for(2ms);
          return false;
        },
        60s));
    // Another node rescues them once the lease lapses and finishes every
    // workflow.
    auto rescuer = start_node(target.store(), "node-b", 4, slow);
    REQUIRE(test::eventually(
        [&] {
          for (auto& f : flows) {
            auto info = value_of(db->get_workflow(f.workflow_id));
            if (info.state != workflow_state::succeeded)
              return false;
          }
          return true;
        },
        120s));
    // Resumed, the paused node's handlers end late: their results apply to
    // nothing.
    paused->kill(SIGCONT);
    CHECK(paused->wait(120s) == 0);
    CHECK(rescuer->wait(120s) == 0);
    // A task runs once, or twice if the stopped node held it (a rescued
    // job's two attempts); a child, whatever its parent's late result, runs
    // once unless the stopped node held the child itself.
    int64_t twice = 0;
    for (auto& f : flows) {
      auto info = value_of(db->get_workflow(f.workflow_id));
      CHECK(info.state == workflow_state::succeeded);
      CHECK(info.succeeded == 2);
      for (auto& [task, id] : f.tasks) {
        auto runs = runs_of(target, id);
        CHECK(runs >= 1);
        CHECK(runs <= (held_at_stop.count(id) > 0 ? 2 : 1));
        twice += runs - 1;
      }
    }
    MESSAGE("node-a held " << held_at_stop.size() << " when stopped, "
                           << running_at_stop << " parents running; "
                           << twice << " tasks ran twice");
    CHECK(twice >= running_at_stop); // each was rescued and run again
    CHECK(value_of(db->stats()).total() == 32);
  }

  TEST_CASE("killed backends while workflows flow kill no process and "
            "strand no task") {
    postgres_target target;
    prepare(target, 0);
    auto db = target.open();
    std::vector<workflow_ids> flows;
    int64_t tasks = 0;
    for (int k = 0; k < 60; ++k) {
      workflow w{"diamond " + std::to_string(k)};
      w.add("a", job_request{"work", {{"w", k}}});
      w.add("b", job_request{"work", {{"w", k}}}, {"a"});
      w.add("c", job_request{"work", {{"w", k}}}, {"a"});
      w.add("d", job_request{"work", {{"w", k}}}, {"b", "c"});
      w.on_success(job_request{"work", {{"w", k}, {"callback", true}}});
      flows.push_back(value_of(db->enqueue_workflow(w)));
      tasks += 5;
    }
    auto more = fan_ins(*db, 4, 40);
    flows.insert(flows.end(), more.begin(), more.end());
    tasks += 4 * 41;
    std::vector<std::string> args{"--lease-ms", "1500", "--sleep-ms", "3"};
    auto a = start_node(target.store(), "node-a", 4, args);
    auto b = start_node(target.store(), "node-b", 4, args);
    int64_t killed = 0;
    for (int k = 1; k <= 3; ++k) {
      REQUIRE(test::eventually(
          [&] { return succeeded(*db) >= k * tasks / 5; }, 60s));
      REQUIRE(a->healthy());
      REQUIRE(b->healthy());
      killed += target.kill_backends("node-a");
      killed += target.kill_backends("node-b");
      // Both survive the loss and go on.
      auto before = succeeded(*db);
      REQUIRE(test::eventually(
          [&] {
            return succeeded(*db) >= std::min<int64_t>(before + 20, tasks);
          },
          60s));
      CHECK(a->healthy());
      CHECK(b->healthy());
    }
    CHECK(a->wait(120s) == 0);
    CHECK(b->wait(120s) == 0);
    for (auto& f : flows) {
      auto info = value_of(db->get_workflow(f.workflow_id));
      CHECK(info.state == workflow_state::succeeded);
      for (auto& [name, id] : f.tasks)
        CHECK(runs_of(target, id) >= 1);
    }
    auto [total, distinct] = target.runs();
    CHECK(distinct == tasks);
    job_query blocked;
    blocked.state = job_state::blocked;
    CHECK(value_of(db->list_jobs(blocked)).jobs.empty());
    MESSAGE(killed << " backends killed; processes that died: 0; "
                   << total - distinct << " ran twice");
  }
}
