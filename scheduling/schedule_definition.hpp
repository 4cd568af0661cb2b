#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/scheduling/schedule.hpp"

namespace bg_jobs {

/// What a cron schedule does about runs it missed because no node was
/// scheduling (the nodes were down, or the occurrence waited in a full
/// queue): an occurrence more than `late_after` past its time is missed.
enum class missed_runs {
  /// One run for all that were missed: the latest that fell due, at once
  /// (the default).
  run_latest_once,
  /// None: the schedule resumes with its next time.
  skip,
  /// Each missed run, the oldest first, one after another: at most
  /// `catch_up_max` of them, none older than `catch_up_window`; the rest
  /// are skipped.
  catch_up,
};

/// What a schedule does about times that fall due while its previous run
/// is waiting or running.
enum class overlap_policy {
  /// They are dropped: the schedule resumes with its first time after the
  /// run ended. Two runs of the schedule never overlap.
  skip,
  /// They collapse into one run (dated the latest of them), which starts
  /// when the previous run has ended (the default). Two runs never
  /// overlap.
  one_waiting,
  /// Each is enqueued at its time even while the previous runs: runs may
  /// overlap, as far as their queue has room.
  allow,
};

const char* to_string(missed_runs m);
const char* to_string(overlap_policy o);
std::optional<missed_runs> missed_runs_named(std::string_view s);
std::optional<overlap_policy> overlap_policy_named(std::string_view s);

/// A schedule as data: what `instance::put_schedule`, the command line and
/// the store keep. Every node that runs the job's worker schedules it
/// (each occurrence once, whatever the number of nodes).
struct schedule_definition {
  /// The schedule's name (a job name's rules): its occurrences and pause
  /// are kept under it.
  std::string name;
  /// The job each occurrence enqueues.
  std::string job;
  nlohmann::json payload = nlohmann::json::object();
  int priority = min_priority;
  /// A cron expression (5 or 6 fields, or an alias), or else `every`.
  std::string cron;
  /// An IANA time zone for `cron` (UTC when empty).
  std::string time_zone;
  /// An interval, counted from the end of the previous run.
  std::chrono::milliseconds every{0};
  overlap_policy overlap = overlap_policy::one_waiting;
  missed_runs missed = missed_runs::run_latest_once;
  std::chrono::milliseconds late_after{std::chrono::minutes{1}};
  int catch_up_max = 10;
  std::chrono::milliseconds catch_up_window{std::chrono::hours{24}};

  /// The largest `catch_up_max`.
  static constexpr int max_catch_up = 1000;

  /// The schedule, or `invalid_schedule`.
  caf::expected<schedule> build() const;

  /// Checks every field: `invalid_argument` or `invalid_schedule` naming
  /// the one at fault.
  caf::error validate() const;

  /// The request of one occurrence (its time is set by the scheduler).
  job_request request() const;

  nlohmann::json to_json() const;

  /// Reads what `to_json` wrote; any other key, a wrong type or a value
  /// out of range is `invalid_argument`, then `validate` applies.
  static caf::expected<schedule_definition> from_json(const nlohmann::json& j);

  /// The same from JSON text (a message from another process): text
  /// longer than a payload may be plus 64 KiB, nested deeper than a
  /// payload may be, or not JSON is `invalid_argument`.
  static caf::expected<schedule_definition> parse(const std::string& text);
};

/// A stored schedule as operators see it (`instance::schedules`, the
/// command line, the HTTP API).
struct schedule_info {
  schedule_definition definition;
  /// Declared in a node's code (else added at run time).
  bool declared = false;
  bool paused = false;
  /// When a node last declared it, or when it was added or changed.
  timestamp seen_at;
  timestamp updated_at;
  /// Its latest occurrence, if any: its time, its job and whether that
  /// job is `waiting`, `running` or `finished`.
  std::optional<timestamp> last_at;
  int64_t last_job = 0;
  std::string last_state;
  /// The stored definition could not be read (then `definition` holds
  /// only the name).
  std::string problem;

  nlohmann::json to_json() const;
  static caf::expected<schedule_info> from_json(const nlohmann::json& j);
};

} // namespace bg_jobs
