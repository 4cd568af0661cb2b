#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

namespace bg_jobs {

/// Error codes of bg_jobs, carried across every seam as `caf::error` values
/// of the `bg_jobs` category. The context message says what happened; the
/// code says what the caller can do about it.
enum class errc : uint8_t {
  /// The job name is empty or longer than the documented limit.
  invalid_job_name = 1,
  /// The payload is not valid JSON or exceeds the documented limit.
  invalid_payload,
  /// An argument is out of range (a limit of zero, a negative delay, ...).
  invalid_argument,
  /// No registered worker handles the job name; nothing was written.
  no_worker_for_job,
  /// The database could not be opened or created at the given location.
  database_unavailable,
  /// The file exists but is not a database.
  not_a_database,
  /// Another connection held a lock past the busy timeout; retry later.
  database_locked,
  /// A statement failed; the transaction was rolled back.
  database_error,
  /// The connection to the server was lost; reconnect and retry.
  connection_lost,
  /// The schema is missing or older than this code: run `migrate_up`.
  schema_missing,
  /// The schema is newer than this code understands: upgrade bg_jobs.
  schema_too_new,
  /// No job with that id exists in the table the operation works on.
  job_not_found,
  /// The job is no longer reserved by the caller (released or rescued).
  reservation_lost,
  /// A schedule or interval is invalid or can never fire.
  invalid_schedule,
  /// A builder or spec is invalid (duplicate queue, no workers, ...).
  invalid_config,
  /// The runtime is shutting down and no longer accepts work.
  shutting_down,
  /// An operation did not complete in time.
  timeout,
  /// The supervisor restarted children too often and gave up.
  restart_limit_exceeded,
  /// The job is in a state the operation does not apply to (cancel of a
  /// finished job, retry of a waiting one, delete of a running one).
  invalid_state,
  /// No queue of that name is configured.
  unknown_queue,
  /// An encrypted value does not open: its key is not configured, or it
  /// was made with another key or altered.
  decryption_failed,
};

/// The CAF error category of `errc` values.
constexpr caf::atom_value errc_category = caf::atom("bg_jobs");

/// Returns the name of `x`, e.g. `"database_locked"`.
const char* to_string(errc x);

/// Creates a `caf::error` with no context.
caf::error make_error(errc x);

/// Creates a `caf::error` whose context is the message `msg`.
caf::error make_error(errc x, std::string msg);

/// Returns the `errc` carried by `err`, or a zero-valued `errc` when `err`
/// belongs to another category.
errc code_of(const caf::error& err);

/// Renders any error as one readable line; for bg_jobs errors:
/// `"bg_jobs.database_locked: database is locked ..."`.
std::string describe(const caf::error& err);

/// The message of `err` without its `bg_jobs.<code>: ` prefix, on one
/// line: for wrapping an error in another of more context.
std::string message_of(const caf::error& err);

/// Registers the `bg_jobs` category with an actor system config, so that
/// `system.render(err)` prints bg_jobs errors readably.
void add_error_category(caf::actor_system_config& cfg);

} // namespace bg_jobs
