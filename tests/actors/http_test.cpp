// The operator's HTTP server inside an application: /metrics counts what
// the jobs did, and the API refuses what it must (no token, no CSRF
// token, read-only, a public address without a token).
#include <map>
#include <sstream>

#include <httplib.h>

#include <caf/scoped_actor.hpp>

#include "actors/runtime_fixture.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "support/process.hpp"
#include "support/wait.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

/// The samples of a Prometheus text exposition, by `name{labels}`.
std::map<std::string, double> parse_exposition(const std::string& text) {
  std::map<std::string, double> samples;
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#')
      continue;
    auto space = line.rfind(' ');
    REQUIRE(space != std::string::npos);
    samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return samples;
}

queue_spec metric_queue() {
  return queue_spec{"q"}
      .with_poll_interval(20ms)
      .with_max_concurrent_jobs(2)
      .with_max_retries(0)
      .with_worker(worker{"ok", [](const job&) {}})
      .with_worker(
          worker{"bad", [](const job&) { return outcome::failure("no"); }});
}

} // namespace

TEST_SUITE("http") {

  BG_JOBS_RUNTIME_CASE("/metrics counts what the jobs did") {
    http_options o;
    o.port = 0;
    auto bg = start(make_builder().with_http(o).with_queue(metric_queue()));
    REQUIRE(bg.http_port() > 0);
    for (int i = 0; i < 3; ++i)
      REQUIRE(bg.enqueue(job_request{"ok"}));
    for (int i = 0; i < 2; ++i)
      REQUIRE(bg.enqueue(job_request{"bad"}));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 3));
    REQUIRE(log.wait_for(event_kind::job_failed, 2));
    bg.flush_events();
    httplib::Client client{"127.0.0.1", bg.http_port()};
    auto res = client.Get("/metrics");
    REQUIRE(res);
    CHECK(res->status == 200);
    auto m = parse_exposition(res->body);
    CHECK(m["bg_jobs_jobs_enqueued_total{job=\"ok\",queue=\"q\"}"] == 3);
    CHECK(m["bg_jobs_jobs_started_total{job=\"ok\",queue=\"q\"}"] == 3);
    CHECK(m["bg_jobs_jobs_succeeded_total{job=\"ok\",queue=\"q\"}"] == 3);
    CHECK(m["bg_jobs_jobs_failed_total{job=\"bad\",queue=\"q\"}"] == 2);
    CHECK(m["bg_jobs_job_run_seconds_count{job=\"ok\",queue=\"q\"}"] == 3);
    CHECK(m["bg_jobs_job_wait_seconds_count{job=\"bad\",queue=\"q\"}"] == 2);
    CHECK(m["bg_jobs_jobs{job=\"ok\",queue=\"q\",state=\"succeeded\"}"] == 3);
    CHECK(m["bg_jobs_jobs{job=\"bad\",queue=\"q\",state=\"failed\"}"] == 2);
    CHECK(m["bg_jobs_executors{queue=\"q\"}"] == 2);
    CHECK(m["bg_jobs_executors_busy{queue=\"q\"}"] == 0);
    auto stats = client.Get("/api/stats");
    REQUIRE(stats);
    auto body = nlohmann::json::parse(stats->body);
    REQUIRE(body["queues"].size() == 1);
    CHECK(body["queues"][0]["counts"]["succeeded"] == 3);
  }

  BG_JOBS_RUNTIME_CASE("a cancel from a method, a message, the dashboard "
                       "or the command line is one event, counted by the "
                       "node") {
    http_options o;
    o.port = 0;
    // The upkeep looks for actions recorded by other processes every second.
    auto bg = start(make_builder()
                        .with_node_lease(3s)
                        .with_http(o)
                        .with_queue(metric_queue()));
    std::vector<int64_t> ids;
    for (int i = 0; i < 4; ++i) {
      auto j = bg.enqueue(job_request{"ok"}.available_in(1h));
      REQUIRE(j);
      ids.push_back(j->id);
    }
    // A method of the instance.
    REQUIRE(bg.cancel(ids[0], "by method"));
    // A message to the bg_jobs actor, as another actor or process sends.
    {
      caf::scoped_actor self{*sys};
      bool done = false;
      self->request(bg.actor(), 10s, cancel_atom::value, ids[1],
                    std::string{"by message"})
          .receive([&](const job_record&) { done = true; },
                   [&](caf::error&) {});
      REQUIRE(done);
    }
    // The dashboard.
    httplib::Client client{"127.0.0.1", bg.http_port()};
    auto page = client.Get("/");
    REQUIRE(page);
    auto at = page->body.find("name=\"csrf\" content=\"");
    REQUIRE(at != std::string::npos);
    httplib::Headers csrf = {{"X-CSRF-Token", page->body.substr(at + 21, 32)}};
    auto path = "/api/jobs/" + std::to_string(ids[2]) + "/cancel";
    auto res = client.Post(path.c_str(), csrf, "", "text/plain");
    REQUIRE(res);
    CHECK(res->status == 200);
    // The command line, another process without a node.
    test::child_process cli{{BG_JOBS_CLI, "jobs", "cancel",
                             std::to_string(ids[3]), "--db",
                             the_store->location()}};
    REQUIRE(cli.started());
    REQUIRE(cli.wait(30s) == 0);
    // Each is reported once, by this node, as the same event.
    REQUIRE(log.wait_for(event_kind::job_cancelled, 4, 30s));
    bg.flush_events();
    std::multiset<int64_t> cancelled;
    for (auto& e : log.of(event_kind::job_cancelled)) {
      REQUIRE(e.job);
      CHECK(e.queue == "q");
      CHECK(e.job->name == "ok");
      cancelled.insert(e.job->id);
    }
    CHECK(cancelled == std::multiset<int64_t>(ids.begin(), ids.end()));
    auto m = parse_exposition(client.Get("/metrics")->body);
    CHECK(m["bg_jobs_jobs_cancelled_total{job=\"ok\",queue=\"q\"}"] == 4);
    for (auto id : ids)
      CHECK(store()->get_job(id)->state == job_state::cancelled);
    // A pause from the command line and a resume from the dashboard, too.
    test::child_process pause{{BG_JOBS_CLI, "queues", "pause", "q", "--db",
                               the_store->location()}};
    REQUIRE(pause.wait(30s) == 0);
    REQUIRE(log.wait_for(event_kind::queue_paused, 1, 30s));
    auto resumed = client.Post("/api/queues/q/resume", csrf, "", "text/plain");
    REQUIRE(resumed);
    CHECK(resumed->status == 200);
    REQUIRE(log.wait_for(event_kind::queue_resumed, 1));
    for (auto& e : log.of(event_kind::queue_paused))
      CHECK(e.queue == "q");
  }

  BG_JOBS_RUNTIME_CASE("a queue whose last node shut down stays known, with "
                       "its backlog, on every surface") {
    {
      auto gone = start(make_builder().with_queue(
          queue_spec{"billing"}.with_worker(worker{"invoice", [](const job&) {}})));
      REQUIRE(gone.shutdown());
    }
    REQUIRE(store()->enqueue_jobs(
        std::vector<job_request>(1000, job_request{"invoice"})));
    // Another node, that runs another queue, serves the dashboard.
    http_options o;
    o.port = 0;
    auto bg = start(make_builder().with_http(o).with_queue(metric_queue()));
    httplib::Client client{"127.0.0.1", bg.http_port()};
    auto res = client.Get("/api/stats");
    REQUIRE(res);
    auto stats = nlohmann::json::parse(res->body);
    nlohmann::json billing;
    for (auto& q : stats["queues"])
      if (q["queue"] == "billing")
        billing = q;
    REQUIRE(billing.is_object());
    CHECK(billing["counts"]["waiting"] == 1000);
    CHECK(billing["nodes"].empty());
    CHECK(billing["concurrency"] == 0);
    auto cli = [&](const std::string& args) {
      auto cmd = std::string{BG_JOBS_CLI} + " --db '" + the_store->location() +
                 "' --json " + args;
      std::string out;
      auto pipe = popen(cmd.c_str(), "r");
      REQUIRE(pipe);
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, pipe)) > 0)
        out.append(buf, n);
      CHECK(pclose(pipe) == 0);
      return nlohmann::json::parse(out);
    };
    auto listed = cli("queues list");
    auto known = std::find_if(listed.begin(), listed.end(),
                              [](auto& q) { return q["queue"] == "billing"; });
    REQUIRE(known != listed.end());
    CHECK((*known)["nodes"].empty());
    auto counted = cli("stats");
    auto row = std::find_if(counted["queues"].begin(), counted["queues"].end(),
                            [](auto& q) { return q["queue"] == "billing"; });
    REQUIRE(row != counted["queues"].end());
    CHECK((*row)["counts"]["waiting"] == 1000);
    auto page = cli("jobs list --queue billing --limit 5");
    CHECK(page["jobs"].size() == 5);
  }

  BG_JOBS_RUNTIME_CASE("the API refuses requests without their tokens") {
    http_options o;
    o.port = 0;
    o.token = "s3cret";
    auto bg = start(make_builder().with_http(o).with_queue(metric_queue()));
    auto j = bg.enqueue(job_request{"ok"}.available_in(1h));
    REQUIRE(j);
    httplib::Client client{"127.0.0.1", bg.http_port()};
    auto anonymous = client.Get("/api/stats");
    REQUIRE(anonymous);
    CHECK(anonymous->status == 401);
    httplib::Headers auth = {{"Authorization", "Bearer s3cret"}};
    auto page = client.Get("/", auth);
    REQUIRE(page);
    CHECK(page->status == 200);
    auto at = page->body.find("name=\"csrf\" content=\"");
    REQUIRE(at != std::string::npos);
    auto csrf = page->body.substr(at + 21, 32);
    auto path = "/api/jobs/" + std::to_string(j->id) + "/cancel";
    auto forged = client.Post(path.c_str(), auth, "", "text/plain");
    REQUIRE(forged);
    CHECK(forged->status == 403);
    CHECK(store()->get_job(j->id)->state == job_state::scheduled);
    auto with_csrf = auth;
    with_csrf.emplace("X-CSRF-Token", csrf);
    auto done = client.Post(path.c_str(), with_csrf, "", "text/plain");
    REQUIRE(done);
    CHECK(done->status == 200);
    CHECK(store()->get_job(j->id)->state == job_state::cancelled);
    auto again = client.Post(path.c_str(), with_csrf, "", "text/plain");
    REQUIRE(again);
    CHECK(again->status == 409);
    auto unknown = client.Get("/api/jobs/99999999", auth);
    REQUIRE(unknown);
    CHECK(unknown->status == 404);
  }

  BG_JOBS_RUNTIME_CASE("a read-only or public dashboard is held to it") {
    http_options pub;
    pub.host = "0.0.0.0";
    pub.port = 0;
    auto refused =
        make_builder().with_http(pub).with_queue(metric_queue()).build(*sys);
    REQUIRE_FALSE(refused);
    CHECK(code_of(refused.error()) == errc::invalid_config);
    http_options ro;
    ro.port = 0;
    ro.read_only = true;
    auto bg = start(make_builder().with_http(ro).with_queue(metric_queue()));
    httplib::Client client{"127.0.0.1", bg.http_port()};
    auto page = client.Get("/");
    REQUIRE(page);
    auto at = page->body.find("name=\"csrf\" content=\"");
    auto csrf = page->body.substr(at + 21, 32);
    auto res =
        client.Post("/api/queues/q/pause",
                    httplib::Headers{{"X-CSRF-Token", csrf}}, "", "text/plain");
    REQUIRE(res);
    CHECK(res->status == 403);
    CHECK(store()->pauses()->empty());
  }

} // TEST_SUITE
