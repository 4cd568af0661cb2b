#pragma once

#include <caf/atom.hpp>

namespace bg_jobs::detail {

/// `(register_atom, std::string name, std::string owner, caf::actor)` →
/// `caf::unit`, to the registry: names and monitors an actor; `owner` is
/// the reservation owner whose jobs are released when it dies (empty: none).
using register_atom = caf::atom_constant<caf::atom("register")>;

/// `(reregister_atom)`, from the supervisor to every child after the
/// registry or the router restarted: register again with both.
using reregister_atom = caf::atom_constant<caf::atom("reregister")>;

/// `(route_atom, std::string queue, caf::actor)`, to the router: the queue
/// of that name is now this actor.
using route_atom = caf::atom_constant<caf::atom("route")>;

/// `(reports_atom)`, from an executor's handler thread to its queue: the
/// queue's `report_inbox` holds reports (results of attempts, and jobs not
/// started as they reached their start deadline).
using reports_atom = caf::atom_constant<caf::atom("reports")>;

/// `(job_timeout_atom, size_t slot, int64_t job_id)`, from a queue to
/// itself: the attempt handed to that slot reached its timeout.
using job_timeout_atom = caf::atom_constant<caf::atom("jobtimeout")>;

/// `(claim_atom, claim_call_ptr)` → `claim_call_ptr`: a queue asks its
/// store worker to persist outcomes and reserve jobs.
using claim_atom = caf::atom_constant<caf::atom("claim")>;

/// `(write_outcomes_atom, outcome_batch)`, from a queue to its store worker:
/// write the outcomes now. Not the public `flush`.
using write_outcomes_atom = caf::atom_constant<caf::atom("qwrite")>;

/// `(check_cancels_atom, std::vector<int64_t>)`, from a queue to its store
/// worker: look for cancels of those jobs (the ones the queue holds) asked
/// for on other nodes; `(check_cancels_atom)`, as a queue's timer: time to
/// ask for that.
using check_cancels_atom = caf::atom_constant<caf::atom("qcancels")>;

/// `(finish_atom, outcome_batch)` → `caf::unit`, from a stopping queue to
/// its store worker: write everything and release what is left.
using finish_atom = caf::atom_constant<caf::atom("qfinish")>;

/// `(flush_due_atom)`, a queue's timer: the outcomes kept for the next
/// claim have waited long enough.
using flush_due_atom = caf::atom_constant<caf::atom("flushdue")>;

/// `(rate_due_atom)`, a queue's timer: its rate limit lets the first job it
/// held back go.
using rate_due_atom = caf::atom_constant<caf::atom("ratedue")>;

/// `(next_due_atom)`, from a store worker to itself after a short claim:
/// read when the queue's next waiting job comes due. `(next_due_atom,
/// int64_t ms)`, from the store worker to its queue: that job comes due in
/// `ms` (by the store's clock), so the queue looks again then.
using next_due_atom = caf::atom_constant<caf::atom("nextdue")>;

} // namespace bg_jobs::detail
