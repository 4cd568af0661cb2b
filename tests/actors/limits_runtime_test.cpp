// Concurrency limits through the runtime, on every store: a hot key holds
// back no other key, and no key ever runs more than its limit, as seen by
// the handlers themselves.
#include <algorithm>
#include <map>
#include <mutex>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <caf/scoped_actor.hpp>

#include "actors/runtime_fixture.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "support/event_log.hpp"
#include "support/expect.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

using test::error_of;
using test::require_ok;
using test::value_of;

/// What the handlers saw: how many of each key ran at once, at most, and
/// how many of each finished.
struct key_watch {
  std::mutex mtx;
  std::map<std::string, int> running;
  std::map<std::string, int> most;
  std::map<std::string, int> done;

  void begin(const std::string& k) {
    std::lock_guard<std::mutex> guard{mtx};
    auto n = ++running[k];
    most[k] = std::max(most[k], n);
  }

  void end(const std::string& k) {
    std::lock_guard<std::mutex> guard{mtx};
    --running[k];
    ++done[k];
  }

  int finished(const std::string& k) {
    std::lock_guard<std::mutex> guard{mtx};
    return done[k];
  }

  int finished_except(const std::string& k) {
    std::lock_guard<std::mutex> guard{mtx};
    int n = 0;
    for (auto& [key, count] : done)
      if (key != k)
        n += count;
    return n;
  }

  int most_at_once() {
    std::lock_guard<std::mutex> guard{mtx};
    int n = 0;
    for (auto& [key, count] : most)
      n = std::max(n, count);
    return n;
  }
};

} // namespace

TEST_SUITE("limits") {

  BG_JOBS_RUNTIME_CASE("100 keys of 20 jobs finish while a hot key of 2,000 "
                       "jobs waits its turn, no key above its limit") {
    key_watch watch;
    auto w = worker{"j", [&](const job& j) {
                      auto key = j.concurrency_key;
                      watch.begin(key);
                      // The hot key's jobs take long enough that it cannot
                      // finish in less than 20 s at 2 at a time.
                      std::this_thread::sleep_for(key == "hot" ? 20ms : 1ms);
                      watch.end(key);
                    }};
    auto bg = start(make_builder().with_queue(
        queue_spec{"q"}
            .with_poll_interval(50ms)
            .with_max_concurrent_jobs(20)
            .with_key_limit(2)
            .with_worker(w)));
    // The hot key's jobs go in first: in priority order they are ahead of
    // every other job.
    std::vector<job_request> hot;
    for (int i = 0; i < 2000; ++i)
      hot.push_back(job_request{"j", {{"i", i}}}.with_concurrency_key("hot"));
    value_of(bg.enqueue_many(hot));
    std::vector<job_request> others;
    for (int i = 0; i < 20; ++i)
      for (int k = 0; k < 100; ++k)
        others.push_back(job_request{"j", {{"i", i}}}.with_concurrency_key(
            "tenant:" + std::to_string(k)));
    value_of(bg.enqueue_many(others));
    CHECK(test::eventually([&] { return watch.finished_except("hot") == 2000; },
                           60s));
    auto hot_done = watch.finished("hot");
    INFO("hot jobs finished when the others were done: " << hot_done);
    CHECK(hot_done < 2000);
    require_ok(bg.shutdown());
    CHECK(watch.most_at_once() <= 2);
    std::lock_guard<std::mutex> guard{watch.mtx};
    // Every key did run two at once at some point: the limit, not the
    // claim, set the pace.
    CHECK(watch.most["hot"] == 2);
  }

  BG_JOBS_RUNTIME_CASE("a limit changed through the control plane is "
                       "honoured at the next claim, and a bad one changes "
                       "nothing") {
    key_watch watch;
    test::gate hold;
    auto w = worker{"j", [&](const job& j) {
                      watch.begin(j.concurrency_key);
                      hold.wait();
                      watch.end(j.concurrency_key);
                    }};
    auto bg = start(make_builder()
                        .with_queue(queue_spec{"q"}
                                        .with_poll_interval(50ms)
                                        .with_max_concurrent_jobs(5)
                                        .with_key_limit(1)
                                        .with_worker(w))
                        .with_queue(queue_spec{"plain"}.with_worker(
                            worker{"p", [](const job&) {}})));
    std::vector<job_request> jobs;
    for (int i = 0; i < 5; ++i)
      jobs.push_back(job_request{"j"}.with_concurrency_key("k"));
    value_of(bg.enqueue_many(jobs));
    REQUIRE(log.wait_for(event_kind::job_started));
    auto db = store();
    auto before = value_of(db->stored_limits("q"));
    // Bad changes: a clear error, the stored limits as they were.
    CHECK(error_of(bg.set_limit("q", {limit_kind::per_key, "", -1})) ==
          errc::invalid_argument);
    CHECK(error_of(bg.set_limit("q", {limit_kind::key, "", 2})) ==
          errc::invalid_argument);
    CHECK(error_of(bg.set_limit(
              "q", {limit_kind::key, std::string(256, 'x'), 2})) ==
          errc::invalid_argument);
    CHECK(error_of(bg.set_limit("q", {limit_kind::key, "\xff", 2})) ==
          errc::invalid_argument);
    CHECK(error_of(bg.set_limit("nope", {limit_kind::per_key, "", 2})) ==
          errc::invalid_argument);
    CHECK(error_of(bg.set_limit("plain", {limit_kind::per_key, "", 2})) ==
          errc::invalid_argument);
    caf::scoped_actor self{*sys};
    bool refused = false;
    self->request(bg.actor(), 10s, limit_atom::value, std::string{"q"},
                  std::string{"per_node"}, std::string{}, 2)
        .receive([&]() {},
                 [&](caf::error& err) {
                   refused = code_of(err) == errc::invalid_argument;
                 });
    CHECK(refused);
    CHECK(value_of(db->stored_limits("q")) == before);
    // (The started event comes before the handler's first line.)
    CHECK(test::eventually([&] { return watch.most_at_once() == 1; }));
    // Raised: two more of the key start, without waiting for a poll.
    require_ok(bg.set_limit("q", {limit_kind::per_key, "", 3}));
    REQUIRE(log.wait_for(event_kind::queue_limit_changed));
    CHECK(test::eventually([&] {
      std::lock_guard<std::mutex> guard{watch.mtx};
      return watch.running["k"] == 3;
    }));
    hold.open();
    CHECK(test::eventually([&] { return watch.finished("k") == 5; }));
    CHECK(watch.most_at_once() == 3);
    require_ok(bg.shutdown());
  }

  BG_JOBS_RUNTIME_CASE("a limited queue's keys show in stats, the HTTP API "
                       "and the metrics") {
    test::gate hold;
    auto w = worker{"j", [&](const job&) { hold.wait(); }};
    http_options o;
    o.port = 0;
    auto bg = start(make_builder().with_http(o).with_queue(
        queue_spec{"q"}
            .with_poll_interval(50ms)
            .with_max_concurrent_jobs(5)
            .with_key_limit(1)
            .with_key_limit("wide", 5)
            .with_worker(w)));
    for (int i = 0; i < 3; ++i)
      value_of(bg.enqueue(job_request{"j"}.with_concurrency_key("k")));
    value_of(bg.enqueue(job_request{"j"}.with_concurrency_key("one")));
    value_of(bg.enqueue(job_request{"j"}.with_concurrency_key("wide")));
    REQUIRE(log.wait_for(event_kind::job_started, 3));
    auto st = value_of(bg.stats());
    REQUIRE(st.queues.size() == 1);
    auto& q = st.queues[0];
    CHECK(q.limits.size() == 2);
    CHECK(q.keys_full == 2);
    CHECK(q.waiting_on_limit == 2);
    REQUIRE(!q.keys.empty());
    CHECK(q.keys[0].key == "k");
    CHECK(q.keys[0].running == 1);
    CHECK(q.keys[0].waiting == 2);
    CHECK(q.keys[0].max_running == 1);
    CHECK(q.keys[0].full());
    httplib::Client client{"127.0.0.1", bg.http_port()};
    auto res = client.Get("/api/stats");
    REQUIRE(res);
    auto body = nlohmann::json::parse(res->body);
    auto& shown = body["queues"][0];
    CHECK(shown["keys_full"] == 2);
    CHECK(shown["waiting_on_limit"] == 2);
    CHECK(shown["keys"][0]["key"] == "k");
    CHECK(shown["keys"][0]["full"] == true);
    CHECK(shown["limits"].size() == 2);
    auto metrics = client.Get("/metrics");
    REQUIRE(metrics);
    CHECK(metrics->body.find("bg_jobs_limit_keys_full{queue=\"q\"} 2") !=
          std::string::npos);
    CHECK(metrics->body.find("bg_jobs_jobs_waiting_on_limit{queue=\"q\"} 2") !=
          std::string::npos);
    hold.open();
    require_ok(bg.shutdown());
  }

  BG_JOBS_RUNTIME_CASE("a worker derives a job's concurrency key from its "
                       "payload, and a bad derived key refuses the enqueue") {
    test::gate hold;
    auto w = worker{"j", [&](const job&) { hold.wait(); }}
                 .with_concurrency_key([](const nlohmann::json& p) {
                   return p.at("tenant").get<std::string>();
                 });
    auto bg = start(make_builder().with_queue(queue_spec{"q"}
                                                  .with_poll_interval(50ms)
                                                  .with_max_concurrent_jobs(4)
                                                  .with_key_limit(1)
                                                  .with_worker(w)));
    auto a = value_of(bg.enqueue(job_request{"j", {{"tenant", "a"}}}));
    CHECK(a.concurrency_key == "a");
    auto many = value_of(bg.enqueue_many(
        {job_request{"j", {{"tenant", "a"}}}, job_request{"j", {{"tenant", "b"}}},
         job_request{"j", {{"tenant", "b"}}}.with_concurrency_key("own")}));
    REQUIRE(many.size() == 3);
    auto db = store();
    CHECK(value_of(db->get_job(many[0])).concurrency_key == "a");
    CHECK(value_of(db->get_job(many[1])).concurrency_key == "b");
    CHECK(value_of(db->get_job(many[2])).concurrency_key == "own");
    // Two of "a": one runs, the other waits its turn.
    REQUIRE(log.wait_for(event_kind::job_started, 3));
    CHECK(value_of(db->stats()).reserved == 3);
    auto before = value_of(db->stats()).total();
    CHECK(error_of(bg.enqueue(job_request{"j", {{"tenant", 7}}})) ==
          errc::invalid_argument);
    CHECK(error_of(bg.enqueue(job_request{"j", {{"nobody", "x"}}})) ==
          errc::invalid_argument);
    CHECK(error_of(bg.enqueue(
              job_request{"j", {{"tenant", std::string(256, 't')}}})) ==
          errc::invalid_argument);
    CHECK(error_of(bg.enqueue_many({job_request{"j", {{"tenant", "c"}}},
                                    job_request{"j", {{"tenant", "bad\x01"}}}})) ==
          errc::invalid_argument);
    CHECK(value_of(db->stats()).total() == before);
    hold.open();
    require_ok(bg.shutdown());
  }

  BG_JOBS_RUNTIME_CASE("a failed head of a sequence shows as blocked in stats "
                       "and an operator unblocks it") {
    auto w = worker{"j", [](const job& j) {
      if (j.payload.value("fail", false))
        throw std::runtime_error("broken");
    }};
    auto bg = start(make_builder().with_queue(queue_spec{"q"}
                                                  .with_poll_interval(50ms)
                                                  .with_max_concurrent_jobs(4)
                                                  .with_max_retries(0)
                                                  .with_sequences()
                                                  .with_worker(w)));
    auto a1 = value_of(bg.enqueue(
        job_request{"j", {{"fail", true}}}.with_concurrency_key("a")));
    auto a2 = value_of(bg.enqueue(job_request{"j"}.with_concurrency_key("a")));
    value_of(bg.enqueue(job_request{"j"}.with_concurrency_key("b")));
    REQUIRE(log.wait_for(event_kind::job_failed));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    auto st = value_of(bg.stats());
    REQUIRE(st.queues.at(0).blocked.size() == 1);
    CHECK(st.queues[0].blocked[0].key == "a");
    CHECK(st.queues[0].blocked[0].failed_job == a1.id);
    CHECK(st.queues[0].blocked[0].waiting == 1);
    auto db = store();
    CHECK(value_of(db->get_job(a2.id)).state == job_state::waiting);
    CHECK(error_of(bg.unblock_key("nope", "a")) == errc::invalid_argument);
    CHECK(error_of(bg.unblock_key("q", "")) == errc::invalid_argument);
    CHECK(value_of(bg.unblock_key("q", "a")) == 1);
    REQUIRE(log.wait_for(event_kind::key_unblocked));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 2));
    CHECK(value_of(db->get_job(a2.id)).state == job_state::succeeded);
    CHECK(value_of(db->get_job(a1.id)).state == job_state::failed);
    CHECK(value_of(bg.stats()).queues.at(0).blocked.empty());
    require_ok(bg.shutdown());
  }

  BG_JOBS_RUNTIME_CASE("1,000 debounced enqueues of one key produce one run "
                       "with the last payload, within the maximum wait") {
    std::mutex mtx;
    std::vector<nlohmann::json> runs;
    auto w = worker{"j", [&](const job& j) {
                      std::lock_guard<std::mutex> guard{mtx};
                      runs.push_back(j.payload);
                    }};
    auto bg = start(make_builder().with_queue(
        queue_spec{"q"}.with_poll_interval(50ms).with_worker(w)));
    unique_options u;
    u.key = "report:7";
    u.on_conflict = unique_conflict::debounce;
    u.max_wait = 30s;
    int64_t id = 0;
    // Each enqueue moves the job 5 s on: a pause of the test between two
    // of them (a loaded machine) shorter than that cannot let it start.
    for (int i = 0; i < 1000; ++i) {
      auto j = value_of(bg.enqueue(
          job_request{"j", {{"n", i}}}.available_in(5s).with_unique(u)));
      if (i == 0)
        id = j.id;
      CHECK(j.id == id);
      std::this_thread::sleep_for(2ms);
    }
    auto db = store();
    auto held = value_of(db->get_job(id));
    CHECK(held.available_at <= held.created_at + 30s);
    CHECK(test::eventually(
        [&] {
          std::lock_guard<std::mutex> guard{mtx};
          return !runs.empty();
        },
        40s));
    CHECK(test::eventually([&] { return value_of(db->stats()).pending() +
                                            value_of(db->stats()).reserved ==
                                        0; }));
    CHECK(log.wait_for(event_kind::job_absorbed, 999));
    require_ok(bg.shutdown());
    CHECK(log.count(event_kind::job_absorbed) == 999);
    std::lock_guard<std::mutex> guard{mtx};
    REQUIRE(runs.size() == 1);
    CHECK(runs[0] == nlohmann::json{{"n", 999}});
  }


  BG_JOBS_RUNTIME_CASE("a rate-limited queue starts its burst, then sleeps "
                       "until the rate lets the next job go, and shows its "
                       "keys") {
    std::mutex mtx;
    std::vector<std::chrono::steady_clock::time_point> starts;
    auto w = worker{"j", [&](const job&) {
      std::lock_guard<std::mutex> guard{mtx};
      starts.push_back(std::chrono::steady_clock::now());
    }};
    http_options o;
    o.port = 0;
    // 5 a second (one start per 200 ms) after a burst of 2; the poll comes
    // every 30 s, so only the rate's own timer can start the rest.
    auto bg = start(make_builder().with_http(o).with_queue(
        queue_spec{"q"}
            .with_poll_interval(30s)
            .with_max_concurrent_jobs(4)
            .with_rate_limit({"api", 5, 1000ms, 2})
            .with_worker(w)));
    // A cost the burst could never admit is refused here.
    CHECK(error_of(bg.enqueue(job_request{"j"}.with_rate("k", 3))) ==
          errc::invalid_argument);
    CHECK(error_of(bg.enqueue_many({job_request{"j"},
                                    job_request{"j"}.with_rate("k", 3)})) ==
          errc::invalid_argument);
    for (int i = 0; i < 5; ++i)
      value_of(bg.enqueue(job_request{"j", {{"i", i}}}.with_rate("k")));
    REQUIRE(test::eventually(
        [&] {
          std::lock_guard<std::mutex> guard{mtx};
          return starts.size() == 5;
        },
        15s));
    {
      std::lock_guard<std::mutex> guard{mtx};
      std::sort(starts.begin(), starts.end());
      // The third start waited for the bucket: at least one interval after
      // the first (less a little for the two clocks' rounding).
      for (size_t i = 2; i < starts.size(); ++i)
        CHECK(starts[i] - starts[0] >= (i - 1) * 200ms - 30ms);
    }
    auto st = value_of(bg.stats());
    REQUIRE(st.queues.size() == 1);
    REQUIRE(st.queues[0].rate);
    CHECK(st.queues[0].rate->limit.name == "api");
    CHECK(st.queues[0].rate->limit.allowed == 5);
    httplib::Client client{"127.0.0.1", bg.http_port()};
    auto res = client.Get("/api/stats");
    REQUIRE(res);
    auto body = nlohmann::json::parse(res->body);
    CHECK(body["queues"][0]["rate"]["name"] == "api");
    CHECK(body["queues"][0]["rate"]["burst"] == 2);
    auto metrics = client.Get("/metrics");
    REQUIRE(metrics);
    CHECK(metrics->body.find("bg_jobs_rate_keys_held{limit=\"api\"}") !=
          std::string::npos);
    // Changed at run time; bad changes and unknown names refused.
    CHECK(error_of(bg.set_rate_limit({"nope", 5, 1000ms, 2})) ==
          errc::invalid_argument);
    CHECK(error_of(bg.set_rate_limit({"api", 0, 1000ms, 2})) ==
          errc::invalid_argument);
    CHECK(error_of(bg.set_rate_limit({"api", 5, 0ms, 2})) ==
          errc::invalid_argument);
    // One start per 10 s after a burst of 50: the burst, once taken, is
    // not back for minutes (a loaded machine cannot let it refill between
    // the two takes below).
    require_ok(bg.set_rate_limit({"api", 1, 10000ms, 50}));
    REQUIRE(log.wait_for(event_kind::rate_limit_changed));
    // Work outside jobs takes from the same buckets.
    auto d = value_of(bg.consume_rate("api", "other", 50));
    CHECK(d.admitted);
    d = value_of(bg.consume_rate("api", "other", 50));
    CHECK_FALSE(d.admitted);
    CHECK(d.wait_ms > 0);
    CHECK(error_of(bg.consume_rate("api", "other", 51)) ==
          errc::invalid_argument);
    CHECK(error_of(bg.consume_rate("nope", "other", 1)) ==
          errc::invalid_argument);
    CHECK(error_of(bg.consume_rate("api", "\xff", 1)) ==
          errc::invalid_argument);
    require_ok(bg.shutdown());
  }

  BG_JOBS_RUNTIME_CASE("a job that expires while it waits never runs, and "
                       "the upkeep records it") {
    test::gate hold;
    std::mutex mtx;
    std::vector<std::string> ran;
    auto w = worker{"j", [&](const job& j) {
      {
        std::lock_guard<std::mutex> guard{mtx};
        ran.push_back(j.payload.value("n", std::string{}));
      }
      hold.wait();
    }};
    // One executor, busy with "first" until the gate opens; the upkeep
    // looks every 100 ms.
    auto bg = start(make_builder().with_node_lease(300ms).with_queue(
        queue_spec{"q"}
            .with_poll_interval(50ms)
            .with_max_concurrent_jobs(1)
            .with_prefetch(0)
            .with_worker(w)));
    value_of(bg.enqueue(job_request{"j", {{"n", "first"}}}));
    REQUIRE(log.wait_for(event_kind::job_started));
    auto late = value_of(bg.enqueue(
        job_request{"j", {{"n", "late"}}}.expires_in(100ms)));
    REQUIRE(log.wait(
        [&](const std::vector<event>& es) {
          return std::any_of(es.begin(), es.end(), [&](const event& e) {
            return e.kind == event_kind::job_cancelled && e.job &&
                   e.job->id == late.id;
          });
        },
        15s));
    hold.open();
    value_of(bg.enqueue(job_request{"j", {{"n", "after"}}}));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 2));
    {
      std::lock_guard<std::mutex> guard{mtx};
      CHECK(ran == std::vector<std::string>{"first", "after"});
    }
    auto rec = value_of(store()->get_job(late.id));
    CHECK(rec.state == job_state::cancelled);
    CHECK(rec.attempts == 0);
    require_ok(bg.shutdown());
  }
} // TEST_SUITE
