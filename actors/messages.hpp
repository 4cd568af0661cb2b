#pragma once

#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "bg_jobs/actors/wire.hpp"
#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/event.hpp"
#include "bg_jobs/core/job.hpp"
#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/core/outcome.hpp"

namespace bg_jobs {

/// `(enqueue_atom, job_request)` → `job`, or
/// `(enqueue_atom, std::vector<job_request>)` → `std::vector<int64_t>`:
/// sent to the bg_jobs actor to store jobs.
using enqueue_atom = caf::atom_constant<caf::atom("enqueue")>;

/// `(lookup_atom, std::string name)` → `caf::actor` (invalid if unknown).
using lookup_atom = caf::atom_constant<caf::atom("lookup")>;

/// `(names_atom)` → `std::vector<std::string>`: every registered name.
using names_atom = caf::atom_constant<caf::atom("names")>;

/// `(shutdown_atom)` → `caf::unit`: graceful shutdown of the whole tree.
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;

/// `(flush_atom)` → `caf::unit` once every event sent before was delivered.
using flush_atom = caf::atom_constant<caf::atom("flush")>;

/// `(ready_atom)` → `caf::unit` once every child of the tree has started.
using ready_atom = caf::atom_constant<caf::atom("ready")>;

/// `(wake_atom, std::string job_name)`: a job of that name was enqueued.
using wake_atom = caf::atom_constant<caf::atom("wake")>;

// -- job control: each is a request to the bg_jobs actor; errors come back
// -- as `errc` values and nothing is written.

/// `(cancel_atom, int64_t job_id, std::string reason)` → `job_record`: a
/// waiting job is cancelled at once (state `cancelled`); a running one is
/// asked to stop (state `running`, `cancel_reason` set) and is recorded as
/// cancelled when its handler returns.
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;

/// `(retry_atom, int64_t job_id)` → `job_record`: a failed or cancelled
/// job runs again now; `(retry_atom, std::string job_name)` → `int64_t`:
/// every failed job of that name does, and the count comes back.
using retry_atom = caf::atom_constant<caf::atom("retry")>;

/// `(delete_atom, int64_t job_id)` → `caf::unit`: a waiting job or a
/// history row is deleted.
using delete_atom = caf::atom_constant<caf::atom("delete")>;

/// `(pause_atom, pause_kind, std::string name)` → `caf::unit`: stored, so
/// every node honours it; a paused queue reserves nothing and lets running
/// jobs finish; a paused schedule enqueues nothing.
using pause_atom = caf::atom_constant<caf::atom("pause")>;

/// `(resume_atom, pause_kind, std::string name)` → `caf::unit`.
using resume_atom = caf::atom_constant<caf::atom("resume")>;

/// `(scale_atom, std::string queue, int max_concurrent_jobs)` →
/// `caf::unit`: the queue's concurrency on this node, 1 to 1000.
using scale_atom = caf::atom_constant<caf::atom("scale")>;

/// `(limit_atom, std::string queue, std::string kind, std::string key,
/// int max_running)` → `caf::unit`: sets one concurrency limit of a limited
/// queue in the store (`kind` is "key", "per_key" or "total", as
/// `to_string(limit_kind)` spells it; `key` only for "key"; a
/// `max_running` of 0 removes the limit); every node honours it at its
/// next claim.
using limit_atom = caf::atom_constant<caf::atom("limit")>;

/// `(unblock_atom, std::string queue, std::string key)` → `int64_t`: the
/// jobs of `key` in the sequenced queue go past its failed ones (which stay
/// failed); the number of failed jobs that held it comes back.
using unblock_atom = caf::atom_constant<caf::atom("unblock")>;

/// `(rate_atom, std::string name, int64_t allowed, int64_t period_ms,
/// int64_t burst)` → `caf::unit`: changes the stored rate limit `name`
/// (declared by a queue, `queue_spec::with_rate_limit`); every node
/// honours it at its next claim. An unknown name or bad numbers are
/// `invalid_argument`.
using rate_atom = caf::atom_constant<caf::atom("rate")>;

/// `(consume_atom, std::string name, std::string key, int64_t cost)` →
/// `int64_t`: takes `cost` starts from `key`'s bucket of the rate limit
/// `name` if it has them now (0 comes back), else takes nothing and the
/// milliseconds to wait come back.
using consume_atom = caf::atom_constant<caf::atom("consume")>;

/// `(schedule_atom, std::string definition)` → `bool`: adds or changes a
/// schedule for every node (`definition` is `schedule_definition::to_json`
/// as text); `true` when it was added.
using schedule_atom = caf::atom_constant<caf::atom("schedule")>;

/// `(unschedule_atom, std::string name)` → `caf::unit`: removes a schedule
/// added at run time and cancels its waiting occurrence.
using unschedule_atom = caf::atom_constant<caf::atom("unschedule")>;

/// `(trigger_atom, std::string name)` → `job`: a run of the schedule now.
using trigger_atom = caf::atom_constant<caf::atom("trigger")>;

/// `(schedules_atom)` → `std::string`: every stored schedule, a JSON array
/// of `schedule_info::to_json`.
using schedules_atom = caf::atom_constant<caf::atom("schedules")>;

/// `(get_atom, int64_t job_id)` → `job_record`.
using get_atom = caf::atom_constant<caf::atom("get")>;

/// `(list_atom, job_query)` → `job_page`.
using list_atom = caf::atom_constant<caf::atom("list")>;

/// `(stats_atom)` → `stats_report`.
using stats_atom = caf::atom_constant<caf::atom("stats")>;

/// `(workflow_atom, workflow)` → `workflow_ids`: stores a workflow (its
/// tasks' job names must be ones this node accepts);
/// `(workflow_atom, int64_t id)` → `workflow_info` with its tasks;
/// `(workflow_atom, workflow_query)` → `std::vector<workflow_info>`;
/// `(cancel_atom, workflow_atom, int64_t id, std::string reason)` and
/// `(retry_atom, workflow_atom, int64_t id)` → `workflow_info`.
using workflow_atom = caf::atom_constant<caf::atom("workflow")>;

/// `(pauses_atom)` → `std::vector<pause_record>`.
using pauses_atom = caf::atom_constant<caf::atom("pauses")>;

/// The counts of one queue of this node's configuration.
struct queue_stats {
  std::string queue;
  /// The job names this queue runs.
  std::vector<std::string> job_names;
  job_stats counts;
  /// The `available_at` of the oldest job waiting now, if one is.
  std::optional<timestamp> oldest_waiting;
  /// How long that job has waited (zero when none waits): the queue's lag.
  std::chrono::milliseconds lag{0};
  /// Paused in the store (for every node).
  bool paused = false;
  /// Its concurrency on this node (0 in a report of the whole store).
  int max_concurrent_jobs = 0;
  /// The nodes that announced it and have not shut down; none: no node
  /// runs it now (its jobs wait).
  std::vector<std::string> nodes;
  /// Its concurrency summed over those nodes.
  int concurrency = 0;
  /// Its stored concurrency limits; none: the queue is not limited.
  std::vector<concurrency_limit> limits;
  /// Of a limited queue: the keys with the most jobs waiting (at most
  /// `queue_stats::shown_keys`), with what runs of each.
  std::vector<key_usage> keys;
  /// Of a limited queue: how many keys are full, and how many jobs ready to
  /// run wait because one of their keys is.
  int64_t keys_full = 0;
  int64_t waiting_on_limit = 0;
  /// Of a sequenced queue: the keys a failed job holds.
  std::vector<blocked_key> blocked;
  /// Of a queue with a rate limit: the limit, and its keys that are not
  /// full or are blocked (at most `shown_keys`).
  std::optional<rate_limit_state> rate;

  static constexpr int shown_keys = 20;
};

/// What `stats_atom` answers: per queue of this node, and per job name.
/// The dashboard and the command line show the same for every queue the
/// store knows.
struct stats_report {
  /// When the counts were read.
  timestamp at;
  std::vector<queue_stats> queues;
  std::vector<name_stats> names;
};

/// The bg_jobs actor's interface, every message above with its reply: sent
/// through this handle (`instance::typed()`), a message it does not take
/// fails to compile, and a reply is of the type given here. The same actor
/// answers through the untyped handle (`instance::actor()`) too.
using bg_jobs_actor = caf::typed_actor<
    caf::replies_to<enqueue_atom, job_request>::with<job>,
    caf::replies_to<enqueue_atom, std::vector<job_request>>::with<
        std::vector<int64_t>>,
    caf::replies_to<cancel_atom, int64_t, std::string>::with<job_record>,
    caf::replies_to<retry_atom, int64_t>::with<job_record>,
    caf::replies_to<retry_atom, std::string>::with<int64_t>,
    caf::reacts_to<delete_atom, int64_t>,
    caf::reacts_to<pause_atom, pause_kind, std::string>,
    caf::reacts_to<resume_atom, pause_kind, std::string>,
    caf::reacts_to<scale_atom, std::string, int>,
    caf::reacts_to<limit_atom, std::string, std::string, std::string, int>,
    caf::replies_to<unblock_atom, std::string, std::string>::with<int64_t>,
    caf::reacts_to<rate_atom, std::string, int64_t, int64_t, int64_t>,
    caf::replies_to<consume_atom, std::string, std::string,
                    int64_t>::with<int64_t>,
    caf::replies_to<get_atom, int64_t>::with<job_record>,
    caf::replies_to<schedule_atom, std::string>::with<bool>,
    caf::reacts_to<unschedule_atom, std::string>,
    caf::replies_to<trigger_atom, std::string>::with<job>,
    caf::replies_to<schedules_atom>::with<std::string>,
    caf::replies_to<list_atom, job_query>::with<job_page>,
    caf::replies_to<stats_atom>::with<stats_report>,
    caf::replies_to<pauses_atom>::with<std::vector<pause_record>>,
    caf::replies_to<workflow_atom, workflow>::with<workflow_ids>,
    caf::replies_to<workflow_atom, int64_t>::with<workflow_info>,
    caf::replies_to<workflow_atom, workflow_query>::with<
        std::vector<workflow_info>>,
    caf::replies_to<cancel_atom, workflow_atom, int64_t,
                    std::string>::with<workflow_info>,
    caf::replies_to<retry_atom, workflow_atom, int64_t>::with<workflow_info>,
    caf::replies_to<lookup_atom, std::string>::with<caf::actor>,
    caf::replies_to<names_atom>::with<std::vector<std::string>>,
    caf::reacts_to<flush_atom>>;

/// The key of the bg_jobs actor in `caf::actor_system::registry()`.
constexpr caf::atom_value system_registry_key = caf::atom("bg_jobs");

/// The key of the registry actor in `caf::actor_system::registry()`.
constexpr caf::atom_value registry_registry_key = caf::atom("bg_jobs_rg");

} // namespace bg_jobs

// Sent only inside one process (between an executor and its queue, and to
// listeners).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(bg_jobs::outcome)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(bg_jobs::event)
