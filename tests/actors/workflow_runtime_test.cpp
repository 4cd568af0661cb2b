// Workflows through a node, on every store: tasks run in dependency order,
// children read their parents' outputs, an output over the limit fails the
// attempt, a workflow is cancelled and retried through the instance and
// the bg_jobs actor.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include <caf/scoped_actor.hpp>

#include "actors/runtime_fixture.hpp"
#include "support/expect.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

using test::error_of;
using test::eventually;
using test::value_of;

queue_spec queue_of(std::vector<worker> ws, int concurrency = 4) {
  queue_spec q{"wf"};
  q.with_poll_interval(20ms).with_max_retries(0).with_max_concurrent_jobs(
      concurrency);
  for (auto& w : ws)
    q.with_worker(std::move(w));
  return q;
}

bool finished(instance& bg, int64_t id) {
  auto w = bg.get_workflow(id);
  return w && w->state != workflow_state::running;
}

} // namespace

TEST_SUITE("workflows") {

  BG_JOBS_RUNTIME_CASE("tasks run in dependency order and read their "
                       "parents' outputs") {
    std::mutex mtx;
    std::vector<std::string> order;
    nlohmann::json seen_inputs;
    auto number = worker{"number", [&](const job& j) -> outcome {
                           std::lock_guard<std::mutex> guard{mtx};
                           order.push_back(j.payload.at("task"));
                           return outcome::success(j.payload.at("n"));
                         }};
    auto sum = worker{"sum", [&](const job& j, const job_context& ctx)
                                 -> outcome {
                        auto inputs = ctx.parent_outputs();
                        if (!inputs)
                          return outcome::failure(to_string(inputs.error()));
                        std::lock_guard<std::mutex> guard{mtx};
                        order.push_back(j.payload.at("task"));
                        int total = 0;
                        for (auto& [name, v] : *inputs) {
                          seen_inputs[name] = v;
                          total += v.get<int>();
                        }
                        return outcome::success(total);
                      }};
    auto bg = start(make_builder().with_queue(queue_of({number, sum})));
    workflow w{"sums"};
    w.add("one", job_request{"number", {{"task", "one"}, {"n", 1}}});
    w.add("two", job_request{"number", {{"task", "two"}, {"n", 2}}});
    w.add("three", job_request{"number", {{"task", "three"}, {"n", 3}}},
          {"one"});
    w.add("total", job_request{"sum", {{"task", "total"}}},
          {"one", "two", "three"});
    auto ids = value_of(bg.enqueue_workflow(w));
    REQUIRE(eventually([&] { return finished(bg, ids.workflow_id); }, 20s));
    auto info = value_of(bg.get_workflow(ids.workflow_id));
    CHECK(info.state == workflow_state::succeeded);
    CHECK(info.succeeded == 4);
    {
      std::lock_guard<std::mutex> guard{mtx};
      REQUIRE(order.size() == 4);
      CHECK(order.back() == "total");
      auto at = [&](const std::string& t) {
        return std::find(order.begin(), order.end(), t) - order.begin();
      };
      CHECK(at("one") < at("three"));
      CHECK(seen_inputs == nlohmann::json{{"one", 1}, {"two", 2}, {"three", 3}});
    }
    auto total = value_of(bg.get_job(ids.tasks["total"]));
    CHECK(total.output == 6);
    auto listed = value_of(bg.list_workflows());
    REQUIRE(listed.size() == 1);
    CHECK(listed[0].succeeded == 4);
    CHECK(log.wait_for(event_kind::workflow_started));
  }

  BG_JOBS_RUNTIME_CASE("a handler fans out from its task, two levels deep, "
                       "and the workflow calls back once when all are done") {
    instance* node = nullptr;
    std::mutex mtx;
    std::vector<std::string> ran;
    auto split = worker{"split", [&](const job& j) -> outcome {
                          auto level = j.payload.at("level").get<int>();
                          auto me = j.payload.at("task").get<std::string>();
                          {
                            std::lock_guard<std::mutex> guard{mtx};
                            ran.push_back(me);
                          }
                          if (level == 2)
                            return outcome::success(1);
                          workflow more{"parts"};
                          for (int i = 0; i < 3; ++i) {
                            auto name = me + "." + std::to_string(i);
                            more.add(name,
                                     job_request{"split",
                                                 {{"task", name},
                                                  {"level", level + 1}}},
                                     {me});
                          }
                          auto added = node->add_tasks(j, more);
                          if (!added)
                            return outcome::failure(to_string(added.error()));
                          return outcome::success();
                        }};
    std::atomic<int> callbacks{0};
    auto done = worker{"done", [&](const job&) {
                         ++callbacks;
                         return outcome::success();
                       }};
    auto bg = start(make_builder().with_queue(queue_of({split, done})));
    node = &bg;
    workflow w{"tree"};
    w.add("root", job_request{"split", {{"task", "root"}, {"level", 0}}});
    w.on_success(job_request{"done"}).keep_open();
    auto ids = value_of(bg.enqueue_workflow(w));
    // 1 + 3 + 9 tasks; then the workflow is closed and calls back.
    REQUIRE(eventually(
        [&] {
          std::lock_guard<std::mutex> guard{mtx};
          return ran.size() == 13;
        },
        20s));
    REQUIRE(eventually(
        [&] {
          auto info = bg.get_workflow(ids.workflow_id);
          return info && info->succeeded == 13;
        },
        20s));
    CHECK(callbacks.load() == 0);
    auto closed = value_of(bg.close_workflow(ids.workflow_id));
    CHECK(closed.state == workflow_state::succeeded);
    REQUIRE(eventually([&] { return callbacks.load() == 1; }, 20s));
    CHECK(value_of(bg.get_workflow(ids.workflow_id)).total == 13);
    auto plain = value_of(bg.enqueue(job_request{"done"}));
    job not_a_task;
    not_a_task.id = plain.id;
    CHECK(error_of(bg.add_tasks(not_a_task, workflow{"x"})) ==
          errc::invalid_argument);
  }

  BG_JOBS_RUNTIME_CASE("an output over the limit fails the attempt and "
                       "keeps nothing") {
    auto big = worker{"big", [](const job&) {
                        return outcome::success(
                            std::string(max_output_size + 1, 'x'));
                      }};
    auto bg = start(make_builder().with_queue(queue_of({big})));
    auto j = value_of(bg.enqueue(job_request{"big"}));
    REQUIRE(log.wait_for(event_kind::job_failed));
    auto rec = value_of(bg.get_job(j.id));
    CHECK(rec.state == job_state::failed);
    CHECK(rec.error.value_or("").find("the output is") != std::string::npos);
    CHECK(rec.output.is_null());
  }

  BG_JOBS_RUNTIME_CASE("a workflow is cancelled as a whole, its running "
                       "task stopped, and retried through the actor") {
    std::atomic<bool> release{false};
    std::atomic<int> slow_runs{0};
    auto slow = worker{"slow", [&](const job&, const job_context& ctx) {
                         ++slow_runs;
                         while (!release && !ctx.cancelled())
                           std::this_thread::sleep_for(5ms);
                         return outcome::success();
                       }};
    auto quick = worker{"quick", [](const job&) { return outcome::success(); }};
    auto bg = start(make_builder().with_queue(queue_of({slow, quick})));
    workflow w{"long"};
    w.add("first", job_request{"slow"});
    w.add("then", job_request{"quick"}, {"first"});
    auto ids = value_of(bg.enqueue_workflow(w));
    REQUIRE(eventually([&] { return slow_runs.load() == 1; }));
    auto info = value_of(bg.cancel_workflow(ids.workflow_id, "enough"));
    CHECK(info.cancelled >= 1);
    REQUIRE(eventually([&] { return finished(bg, ids.workflow_id); }, 20s));
    info = value_of(bg.get_workflow(ids.workflow_id));
    CHECK(info.state == workflow_state::cancelled);
    CHECK(info.cancelled == 2);
    // Retried through the actor's messages: both run, and it succeeds.
    release = true;
    caf::scoped_actor self{*sys};
    std::optional<workflow_info> retried;
    self->request(bg.actor(), 10s, retry_atom::value, workflow_atom::value,
                  ids.workflow_id)
        .receive([&](const workflow_info& x) { retried = x; },
                 [&](const caf::error& e) { FAIL(to_string(e)); });
    REQUIRE(retried);
    CHECK(retried->state == workflow_state::running);
    REQUIRE(eventually([&] { return finished(bg, ids.workflow_id); }, 20s));
    CHECK(value_of(bg.get_workflow(ids.workflow_id)).state ==
          workflow_state::succeeded);
    CHECK(slow_runs.load() == 2);
    // A bad workflow through the actor: refused, nothing stored.
    workflow bad{"bad"};
    bad.add("a", job_request{"quick"}, {"a"});
    self->request(bg.actor(), 10s, workflow_atom::value, bad)
        .receive([&](const workflow_ids&) { FAIL("stored a bad workflow"); },
                 [&](const caf::error& e) {
                   CHECK(code_of(e) == errc::invalid_argument);
                 });
    workflow unknown{"unknown job"};
    unknown.add("a", job_request{"nobody runs this"});
    CHECK_FALSE(bg.enqueue_workflow(unknown));
    CHECK(value_of(bg.list_workflows()).size() == 1);
  }
}
