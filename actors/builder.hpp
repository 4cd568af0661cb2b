#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/instance.hpp"
#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/keyring.hpp"
#include "bg_jobs/core/clock.hpp"
#include "bg_jobs/core/event.hpp"
#include "bg_jobs/core/queue_spec.hpp"
#include "bg_jobs/http/http_server.hpp"
#include "bg_jobs/maintenance/maintenance.hpp"
#include "bg_jobs/scheduling/scheduled_job_spec.hpp"

namespace bg_jobs {

namespace detail {
struct node_plan;
} // namespace detail

/// Assembles a bg_jobs runtime: the store, its queues and listeners, and
/// how the supervisor behaves. `build` validates and starts the actor tree.
class builder {
public:
  /// `connect` opens one connection to the store per call, e.g.
  /// `sqlite_adapter::factory({"app.db"})`.
  explicit builder(adapter_factory connect);

  builder& with_queue(queue_spec q);

  /// A job that runs on a schedule; its job name must differ from every
  /// queue name.
  builder& with_scheduled_job(scheduled_job_spec s);

  /// A listener for every event of every queue.
  builder& with_event_listener(event_listener l);

  /// Restarts the supervisor allows within the frequency period (5).
  builder& with_supervisor_max_frequency(int n);

  /// The window of the restart intensity (1 s).
  builder& with_supervisor_frequency_period(std::chrono::milliseconds d);

  /// The stable name of this process in reservation owners. A live
  /// process holds its name (in `bg_jobs_nodes`): `build()` fails with an
  /// error naming the holder (host, pid, since when) while another process
  /// holds it with a fresh heartbeat. A holder is dead when its pid is gone
  /// (on this host) or its heartbeat is older than the lease; then this
  /// node takes the name over and releases what it left reserved. Default:
  /// the host name, or `<host>-2`, `<host>-3`, ... when that is held, so
  /// that processes on one host never share a name.
  builder& with_node_name(std::string name);

  /// How long shutdown waits for running jobs before releasing them (5 s).
  builder& with_shutdown_grace_period(std::chrono::milliseconds d);

  /// How often a running job's progress reports
  /// (`job_context::report_progress`) are stored and given to listeners,
  /// at most (1 s); 0 takes every report. From 0 to 1 hour.
  builder& with_progress_interval(std::chrono::milliseconds d);

  /// How long a node may go without a heartbeat before live nodes rescue
  /// its jobs (30 s); heartbeats come every third of it.
  builder& with_node_lease(std::chrono::milliseconds d);

  /// How long a schedule declared in code may go undeclared by every node
  /// before it stops (60 s; `maintenance_config::schedule_stale_after`).
  builder& with_schedule_stale_after(std::chrono::milliseconds d);

  /// How often the node that holds the upkeep looks for workflows that
  /// finished or became stuck when the store has announced none (30 s;
  /// at most 1 s with `with_poll_only`): the store announces each finish
  /// and each held task, and that node looks then
  /// (`maintenance_config::workflow_watch_every`). Must be positive.
  builder& with_workflow_watch(std::chrono::milliseconds every);

  /// What history of succeeded and failed jobs to keep, and how often to
  /// prune it.
  builder& with_retention(
      prune_params retention,
      std::chrono::milliseconds prune_every = std::chrono::seconds{60});

  /// Vacuums the `jobs` table (PostgreSQL) once it holds `dead_rows` dead
  /// row versions, looking every `every` (20,000 and 1 s); 0 leaves it to
  /// autovacuum alone. See the README's "PostgreSQL under sustained load".
  builder& with_jobs_vacuum(
      int64_t dead_rows,
      std::chrono::milliseconds every = std::chrono::seconds{1});

  /// Runs `migrate_up` during `build` (off: the application migrates).
  builder& with_migrations(bool on = true);

  /// Publishes the bg_jobs actor on `port` of `host` (127.0.0.1 by
  /// default; port 0 picks a free one, see `instance::remote_port`) with
  /// CAF's middleman, so that other CAF processes `remote_actor` it and send
  /// the messages of `messages.hpp`. Needs `cfg.load<caf::io::middleman>()`
  /// and `add_message_types(cfg)` on both sides. The connection is neither
  /// authenticated nor encrypted: for trusted networks only (or CAF's
  /// OpenSSL module, see the README). Off by default.
  builder& with_remote(uint16_t port, std::string host = "127.0.0.1");

  /// How to publish the bg_jobs actor (its stable gate) for remote nodes:
  /// `publish(gate)` returns the port, e.g. through CAF's OpenSSL module
  /// (`caf::openssl::publish(gate, port)`). Replaces `with_remote`.
  using remote_publisher =
      std::function<caf::expected<uint16_t>(const caf::actor& gate)>;
  builder& with_remote_publisher(remote_publisher publish);

  /// Serves the dashboard, its JSON API and Prometheus `/metrics` from this
  /// process (see `http_options`; counters and histograms from this
  /// node's events, gauges from the store). Off by default.
  builder& with_http(http_options options);

  /// Queues only poll and never listen for other processes' enqueues, for
  /// connection poolers that break PostgreSQL's LISTEN (off).
  builder& with_poll_only(bool on = true);

  /// Job names this process enqueues for workers that run elsewhere (a web
  /// tier, say): it accepts them without a worker of its own. Other names
  /// without a worker here stay `no_worker_for_job` errors.
  builder& with_enqueued_job_names(std::vector<std::string> names);

  /// Accepts every valid job name, with or without a worker here: for a
  /// process that only enqueues, for any worker of the application.
  builder& with_any_job_name(bool on = true);

  /// The trace context of the code that enqueues, for requests that carry
  /// none (`job_request::with_trace`): `instance::enqueue` and
  /// `enqueue_many` call `source` on the caller's thread (where a tracer
  /// keeps its current span) and store what it returns with each job. What
  /// it returns is validated like a request's own; a malformed context, or
  /// an exception from `source`, fails the enqueue with `invalid_argument`.
  /// Messages sent to the bg_jobs actor carry their requests' own.
  builder& with_trace_source(trace_source source);

  /// The keys this node encrypts and decrypts with: the payloads of
  /// requests marked `job_request::encrypted` and the metadata added with
  /// `with_secret_meta` are sealed with the current key before they reach
  /// the store, and opened only to hand the job to its handler. A job
  /// whose values were sealed with a key not in the ring fails its attempt
  /// with `decryption_failed`, and can be retried once the key is there.
  builder& with_encryption(keyring keys);

  /// The source of "now" for every actor of the tree (the system clock). A
  /// test that pins time passes the same clock to its adapter's options.
  builder& with_clock(std::shared_ptr<bg_jobs::clock> clk);

  /// Checks the whole configuration without starting anything.
  caf::error validate() const;

  /// Validates, checks the store (reachable, schema current), starts the
  /// actor tree in `sys` and waits until every actor has started.
  caf::expected<instance> build(caf::actor_system& sys) const;

private:
  // What the node plan is computed from.
  friend struct detail::node_plan;

  const adapter_factory& connect() const { return connect_; }
  const std::vector<queue_spec>& queues() const { return queues_; }
  const std::vector<scheduled_job_spec>& scheduled_jobs() const {
    return scheduled_;
  }
  const std::vector<event_listener>& event_listeners() const {
    return listeners_;
  }
  int supervisor_max_frequency() const { return max_frequency_; }
  std::chrono::milliseconds supervisor_frequency_period() const {
    return frequency_period_;
  }
  const std::string& node_name() const { return node_; }
  std::chrono::milliseconds shutdown_grace_period() const { return grace_; }
  std::chrono::milliseconds progress_interval() const {
    return progress_interval_;
  }
  bool migrations() const { return migrate_; }
  bool poll_only() const { return poll_only_; }
  const maintenance_config& maintenance() const { return maintenance_; }
  const std::vector<std::string>& enqueued_job_names() const {
    return enqueued_names_;
  }
  bool any_job_name() const { return any_name_; }
  const std::shared_ptr<const keyring>& keys() const { return keys_; }
  const std::shared_ptr<bg_jobs::clock>& time_source() const { return clock_; }

  adapter_factory connect_;
  std::vector<queue_spec> queues_;
  std::vector<scheduled_job_spec> scheduled_;
  std::vector<event_listener> listeners_;
  int max_frequency_ = 5;
  std::chrono::milliseconds frequency_period_{1000};
  std::string node_;
  bool node_given_ = false;
  std::chrono::milliseconds grace_{5000};
  std::chrono::milliseconds progress_interval_{1000};
  bool migrate_ = false;
  bool poll_only_ = false;
  remote_publisher publish_;
  std::optional<http_options> http_;
  /// `publish_` is the middleman's plain one (unpublished at shutdown).
  bool plain_publish_ = false;
  maintenance_config maintenance_;
  std::shared_ptr<bg_jobs::clock> clock_ = clock::system();
  std::vector<std::string> enqueued_names_;
  bool any_name_ = false;
  trace_source trace_source_;
  std::shared_ptr<const keyring> keys_;
};

} // namespace bg_jobs
