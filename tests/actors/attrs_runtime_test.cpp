// Metadata, tags and trace context through the runtime, on every store:
// the handler sees them on every attempt, every event of the job carries
// them, the logger prints them, and a node's trace source fills in requests
// that carry none.
#include <atomic>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "actors/runtime_fixture.hpp"
#include "bg_jobs/actors/logger_listener.hpp"
#include "support/expect.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;
using test::runtime_fixture;

namespace {

using test::error_of;
using test::require_ok;
using test::value_of;

const std::string parent =
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const std::string source_parent =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

queue_spec retrying_queue(worker w) {
  return queue_spec{"q"}
      .with_poll_interval(20ms)
      .with_max_retries(2)
      .with_backoff(backoff::immediate())
      .with_worker(std::move(w));
}

} // namespace

TEST_SUITE("job attributes") {

  BG_JOBS_RUNTIME_CASE("the handler and every event of a job see its trace "
                       "context and tags, retries included") {
    std::mutex mtx;
    std::vector<job> seen;
    auto w = worker{"traced", [&](const job& j) -> outcome {
                      std::lock_guard<std::mutex> guard{mtx};
                      seen.push_back(j);
                      return seen.size() < 3 ? outcome::failure("again")
                                             : outcome::success();
                    }};
    std::ostringstream lines;
    auto bg = start(make_builder()
                        .with_queue(retrying_queue(w))
                        .with_event_listener(logger_listener(
                            lines, log_level::debug)));
    auto j = value_of(
        bg.enqueue(std::move(job_request{"traced"}
                                 .with_trace(parent, "vendor=1")
                                 .with_tags({"eu"})
                                 .with_meta({{"customer", 7}}))));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    {
      std::lock_guard<std::mutex> guard{mtx};
      REQUIRE(seen.size() == 3);
      for (auto& s : seen) {
        CHECK(s.trace.traceparent == parent);
        CHECK(s.trace.tracestate == "vendor=1");
        CHECK(s.tags == std::vector<std::string>{"eu"});
        CHECK(s.meta == nlohmann::json{{"customer", 7}});
      }
    }
    size_t of_job = 0;
    for (auto& e : log.events()) {
      if (!e.job || e.job->id != j.id)
        continue;
      ++of_job;
      INFO(e.name());
      CHECK(e.job->trace.traceparent == parent);
      CHECK(e.job->tags == std::vector<std::string>{"eu"});
    }
    // Enqueued, three starts, two retries, a success at least.
    CHECK(of_job >= 7);
    CHECK(log.count(event_kind::job_exception) == 2);
    require_ok(bg.shutdown());
    auto text = lines.str();
    CHECK(text.find("traceparent=" + parent) != std::string::npos);
    CHECK(text.find("tags=\"eu\"") != std::string::npos);
    // Shown by get, with the record.
    auto rec = value_of(store()->get_job(j.id));
    CHECK(rec.trace.traceparent == parent);
    CHECK(rec.meta == nlohmann::json{{"customer", 7}});
  }

  BG_JOBS_RUNTIME_CASE("a node's trace source fills in requests that carry "
                       "no trace context, and its failures fail the enqueue") {
    std::atomic<int> mode{0};
    auto w = worker{"j", [](const job&) {}};
    auto bg = start(make_builder()
                        .with_queue(retrying_queue(w))
                        .with_trace_source([&]() -> std::optional<trace_context> {
                          switch (mode.load()) {
                          case 0:
                            return trace_context{source_parent, ""};
                          case 1:
                            return std::nullopt;
                          case 2:
                            return trace_context{"not-a-traceparent", ""};
                          default:
                            throw std::runtime_error("tracer gone");
                          }
                        }));
    auto filled = value_of(bg.enqueue(job_request{"j"}));
    CHECK(filled.trace.traceparent == source_parent);
    // Moved (constructed and assigned), an instance keeps its source.
    instance moved{std::move(bg)};
    CHECK(value_of(moved.enqueue(job_request{"j"})).trace.traceparent ==
          source_parent);
    bg = std::move(moved);
    CHECK(value_of(bg.enqueue(job_request{"j"})).trace.traceparent ==
          source_parent);
    // A request's own context wins.
    auto own = value_of(bg.enqueue(job_request{"j"}.with_trace(parent)));
    CHECK(own.trace.traceparent == parent);
    // Bulk: one context for those without their own.
    auto ids = value_of(bg.enqueue_many(
        {job_request{"j"}, job_request{"j"}.with_trace(parent)}));
    REQUIRE(ids.size() == 2);
    CHECK(value_of(bg.get_job(ids[0])).trace.traceparent == source_parent);
    CHECK(value_of(bg.get_job(ids[1])).trace.traceparent == parent);
    mode = 1;
    CHECK(value_of(bg.enqueue(job_request{"j"})).trace.empty());
    auto before = value_of(store()->stats());
    mode = 2;
    auto bad = bg.enqueue(job_request{"j"});
    CHECK(error_of(bad) == errc::invalid_argument);
    CHECK(error_of(bg.enqueue_many({job_request{"j"}})) ==
          errc::invalid_argument);
    mode = 3;
    auto thrown = bg.enqueue(job_request{"j"});
    REQUIRE_FALSE(thrown);
    CHECK(code_of(thrown.error()) == errc::invalid_argument);
    CHECK(describe(thrown.error()).find("tracer gone") != std::string::npos);
    // Nothing was written by the refused enqueues.
    auto after = value_of(store()->stats());
    CHECK(after.total() == before.total());
  }
}
