// Workflows through a node, on every store: tasks run in dependency order,
// children read their parents' outputs, an output over the limit fails the
// attempt, a workflow is cancelled and retried through the instance and
// the bg_jobs actor.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/scoped_actor.hpp>

#include "actors/runtime_fixture.hpp"
#include "bg_jobs/core/errc.hpp"
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

  BG_JOBS_RUNTIME_CASE("a handler's progress shows in get and reaches "
                       "listeners, at most once per interval, the last one "
                       "when it returns") {
    std::mutex mtx;
    std::condition_variable cv;
    bool go_on = false;
    std::vector<std::string> refused;
    std::optional<job_context> kept;
    auto long_one = worker{
        "long", [&](const job&, const job_context& ctx) -> outcome {
          {
            std::lock_guard<std::mutex> guard{mtx};
            kept = ctx; // used after the run below
          }
          auto check = [&](caf::error err) {
            if (err) {
              std::lock_guard<std::mutex> guard{mtx};
              refused.push_back(to_string(err));
            }
          };
          check(ctx.report_progress(0.1, "started"));
          {
            std::unique_lock<std::mutex> guard{mtx};
            cv.wait_for(guard, 30s, [&] { return go_on; });
          }
          // Inside the interval: each waits, replacing the one before.
          check(ctx.report_progress(0.5, "half"));
          check(ctx.report_progress(0.9, "almost"));
          // Refused, nothing reported.
          for (double bad : {-0.1, 1.5, std::nan("")})
            if (!ctx.report_progress(bad, "x"))
              check(make_error(errc::invalid_state, "a bad report was taken"));
          if (!ctx.report_progress(0.95, "tab\tok, bell\a not"))
            check(make_error(errc::invalid_state, "a bad report was taken"));
          if (!ctx.report_progress(0.95, std::string(201, 'x')))
            check(make_error(errc::invalid_state, "a bad report was taken"));
          return outcome::success();
        }};
    auto bg = start(make_builder()
                        .with_progress_interval(1h)
                        .with_queue(queue_of({long_one})));
    auto id = value_of(bg.enqueue(job_request{"long"})).id;
    REQUIRE(eventually([&] {
      auto r = bg.get_job(id);
      return r && r->progress && r->state == job_state::running;
    }));
    auto running = value_of(bg.get_job(id));
    CHECK(running.progress->fraction == 0.1);
    CHECK(running.progress->text == "started");
    CHECK(running.progress->attempt == 1);
    REQUIRE(log.wait_for(event_kind::job_progress));
    {
      std::lock_guard<std::mutex> guard{mtx};
      go_on = true;
    }
    cv.notify_all();
    REQUIRE(eventually([&] {
      auto r = bg.get_job(id);
      return r && r->state == job_state::succeeded;
    }));
    auto done = value_of(bg.get_job(id));
    REQUIRE(done.progress);
    CHECK(done.progress->fraction == 0.9);
    CHECK(done.progress->text == "almost");
    REQUIRE(log.wait_for(event_kind::job_progress, 2));
    bg.flush_events();
    std::vector<std::string> heard;
    for (auto& e : log.events())
      if (e.kind == event_kind::job_progress) {
        REQUIRE(e.progress);
        REQUIRE(e.job);
        CHECK(e.job->id == id);
        heard.push_back(e.progress->text);
      }
    CHECK(heard == std::vector<std::string>{"started", "almost"});
    std::lock_guard<std::mutex> guard{mtx};
    CHECK(refused.empty());
    // A context kept past its run reports nothing.
    REQUIRE(kept);
    CHECK_FALSE(kept->report_progress(0.1, "late"));
    CHECK(value_of(bg.get_job(id)).progress->text == "almost");
    bg.flush_events();
    CHECK(log.count(event_kind::job_progress) == 2);
  }

  BG_JOBS_RUNTIME_CASE("the node that holds the upkeep reports workflows "
                       "that became stuck and that finished, once each, "
                       "when the store announces them") {
    std::atomic<bool> c_fails{true};
    auto step = worker{"step", [&](const job& j) -> outcome {
                         if (j.payload.at("task") == "c" && c_fails)
                           return outcome::discard("c fails");
                         return outcome::success();
                       }};
    // It looks on its own only at start: every report below follows an
    // announcement.
    auto bg = start(make_builder()
                        .with_workflow_watch(std::chrono::hours{1})
                        .with_queue(queue_of({step})));
    auto task = [](const char* t) {
      return job_request{"step", {{"task", t}}};
    };
    workflow w{"diamond"};
    w.add("a", task("a"));
    w.add("b", task("b"), {"a"});
    w.add("c", task("c"), {"a"});
    w.add("d", task("d"), {{"b", parent_failure::cancel},
                           {"c", parent_failure::hold}});
    auto held = value_of(bg.enqueue_workflow(w)).workflow_id;
    workflow plain{"plain"};
    plain.add("x", task("x"));
    auto quick = value_of(bg.enqueue_workflow(plain)).workflow_id;
    REQUIRE(log.wait_for(event_kind::workflow_stuck, 1, 20s));
    REQUIRE(log.wait_for(event_kind::workflow_finished, 1, 20s));
    auto stuck = log.of(event_kind::workflow_stuck);
    CHECK(stuck[0].workflow_id == held);
    CHECK(stuck[0].message.find("1 tasks held") != std::string::npos);
    auto ended = log.of(event_kind::workflow_finished);
    CHECK(ended[0].workflow_id == quick);
    CHECK(ended[0].state == "succeeded");
    // Retried, c succeeds and so does the workflow: one more finish.
    c_fails = false;
    value_of(bg.retry_workflow(held));
    REQUIRE(log.wait_for(event_kind::workflow_finished, 2, 20s));
    ended = log.of(event_kind::workflow_finished);
    CHECK(ended[1].workflow_id == held);
    CHECK(ended[1].state == "succeeded");
    CHECK(ended[1].duration.count() > 0);
    // Later rounds report neither again.
    auto rounds = log.count(event_kind::workflow_finished);
    workflow last{"last"};
    last.add("y", task("y"));
    auto third = value_of(bg.enqueue_workflow(last)).workflow_id;
    REQUIRE(log.wait_for(event_kind::workflow_finished, rounds + 1, 20s));
    ended = log.of(event_kind::workflow_finished);
    CHECK(ended.size() == 3);
    CHECK(ended.back().workflow_id == third);
    CHECK(log.count(event_kind::workflow_stuck) == 1);
    CHECK(log.count(event_kind::workflow_started) == 3);
  }

  BG_JOBS_RUNTIME_CASE("a node that does not listen reports a finished "
                       "workflow by looking every second") {
    auto step = worker{"step", [](const job&) { return outcome::success(); }};
    auto bg = start(make_builder()
                        .with_poll_only()
                        .with_workflow_watch(std::chrono::hours{1})
                        .with_queue(queue_of({step})));
    workflow w{"plain"};
    w.add("x", job_request{"step", {{"task", "x"}}});
    auto id = value_of(bg.enqueue_workflow(w)).workflow_id;
    REQUIRE(log.wait_for(event_kind::workflow_finished, 1, 20s));
    CHECK(log.of(event_kind::workflow_finished)[0].workflow_id == id);
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

  BG_JOBS_RUNTIME_CASE("a workflow whose task or callback names a job no "
                       "worker runs is refused, nothing written") {
    auto step = worker{"step", [](const job&) { return outcome::success(); }};
    auto bg = start(make_builder().with_queue(queue_of({step})));
    workflow bad_callback{"batch"};
    bad_callback.add("a", job_request{"step"});
    bad_callback.on_success(job_request{"step"})
        .on_failure(job_request{"pager_nobody_runs"});
    auto refused = bg.enqueue_workflow(bad_callback);
    REQUIRE_FALSE(refused);
    CHECK(error_of(refused) == errc::no_worker_for_job);
    CHECK(message_of(refused.error()).find("'pager_nobody_runs'") !=
          std::string::npos);
    workflow bad_task{"batch"};
    bad_task.add("a", job_request{"step"});
    bad_task.add("b", job_request{"ghost_job"}, {"a"});
    refused = bg.enqueue_workflow(bad_task);
    REQUIRE_FALSE(refused);
    CHECK(error_of(refused) == errc::no_worker_for_job);
    CHECK(message_of(refused.error()).find("task 'b'") != std::string::npos);
    workflow bad_name{"batch"};
    bad_name.add("a", job_request{"step"});
    bad_name.on_finish(job_request{"bad\x01name"});
    CHECK_FALSE(bg.enqueue_workflow(bad_name));
    CHECK(value_of(bg.list_workflows()).empty());
    CHECK(value_of(store()->stats()).total() == 0);
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
