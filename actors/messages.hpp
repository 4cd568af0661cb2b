#pragma once

#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

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

/// The key of the bg_jobs actor in `caf::actor_system::registry()`.
constexpr caf::atom_value system_registry_key = caf::atom("bg_jobs");

/// The key of the registry actor in `caf::actor_system::registry()`.
constexpr caf::atom_value registry_registry_key = caf::atom("bg_jobs_rg");

} // namespace bg_jobs

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(bg_jobs::job)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(bg_jobs::job_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<bg_jobs::job_request>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(bg_jobs::outcome)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(bg_jobs::event)
