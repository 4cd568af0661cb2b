#pragma once

#include <map>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/event_bus.hpp"
#include "bg_jobs/core/worker.hpp"

namespace bg_jobs {

/// `(run_atom, job)`: the queue hands a reserved job to an idle executor.
using run_atom = caf::atom_constant<caf::atom("run")>;

/// `(result_atom, size_t slot, int64_t job_id, outcome, int64_t duration_us)`:
/// an executor reports the outcome of one attempt to its queue.
using result_atom = caf::atom_constant<caf::atom("result")>;

/// What an executor needs besides its queue.
struct executor_args {
  std::string queue_name;
  /// The executor's index in its queue's pool.
  size_t slot = 0;
  /// Workers of the queue by job name.
  std::shared_ptr<const std::map<std::string, worker>> workers;
  std::shared_ptr<event_bus> bus;
};

/// Spawns an executor linked to its queue. It runs one job at a time on a
/// thread of its own, so a handler may block without touching CAF's
/// scheduler, and never writes to the store: it reports outcomes. When the
/// executor dies (killed, or abandoned after a timeout) the handler's
/// cancellation flag is raised and its late result goes nowhere; a handler
/// that never returns cannot keep the process from shutting down.
caf::actor spawn_executor(caf::event_based_actor* queue, executor_args args);

} // namespace bg_jobs
