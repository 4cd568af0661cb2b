// Metadata, tags and trace context: the code that enqueues carries its W3C
// trace context (given on the request, or by the node's trace source), the
// handler sees it with the job's tags and metadata on every attempt, and
// the logger listener prints it on every event of the job.
#include <future>
#include <iostream>
#include <optional>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <bg_jobs/actors/builder.hpp>
#include <bg_jobs/actors/logger_listener.hpp>
#include <bg_jobs/adapters/sqlite/sqlite_adapter.hpp>
#include <bg_jobs/core/errc.hpp>

using namespace std::chrono_literals;

namespace {

/// Where a tracer would keep the current span of the calling thread.
thread_local std::optional<bg_jobs::trace_context> current_span;

} // namespace

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "trace_context.db";
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::promise<bool> done;
  int attempt = 0;
  auto bg =
      bg_jobs::builder{bg_jobs::sqlite_adapter::factory({path})}
          .with_migrations()
          .with_event_listener(bg_jobs::logger_listener(std::cout))
          .with_trace_source([] { return current_span; })
          .with_queue(
              bg_jobs::queue_spec{"mail"}
                  .with_max_retries(1)
                  .with_backoff(bg_jobs::backoff::immediate())
                  .with_worker(bg_jobs::worker{
                      "send_invoice",
                      [&](const bg_jobs::job& j) -> bg_jobs::outcome {
                        // A tracer would start a span here whose parent is
                        // j.trace.traceparent.
                        std::cout << "attempt " << ++attempt << " of job "
                                  << j.id << " in trace "
                                  << j.trace.traceparent << " for customer "
                                  << j.meta.value("customer", 0) << std::endl;
                        if (attempt == 1)
                          return bg_jobs::outcome::failure("mail server busy");
                        done.set_value(true);
                        return bg_jobs::outcome::success();
                      }}))
          .build(sys);
  if (!bg) {
    std::cerr << bg_jobs::describe(bg.error()) << std::endl;
    return 1;
  }
  // The request handler's span; the trace source hands it to the enqueue.
  current_span = bg_jobs::trace_context{
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""};
  auto j = bg->enqueue(bg_jobs::job_request{"send_invoice", {{"invoice", 7}}}
                           .with_tags({"billing", "eu"})
                           .with_meta({{"customer", 42}}));
  if (!j) {
    std::cerr << bg_jobs::describe(j.error()) << std::endl;
    return 1;
  }
  // A malformed context is refused, and nothing is stored.
  auto bad = bg->enqueue(
      bg_jobs::job_request{"send_invoice"}.with_trace("00-not-a-trace"));
  std::cout << "refused: " << bg_jobs::describe(bad.error()) << std::endl;
  auto f = done.get_future();
  if (f.wait_for(10s) != std::future_status::ready)
    return 1;
  bg->shutdown();
  return 0;
}
