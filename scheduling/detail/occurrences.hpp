#pragma once

#include <chrono>
#include <optional>

#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/scheduling/schedule.hpp"
#include "bg_jobs/scheduling/schedule_definition.hpp"

namespace bg_jobs::detail {

/// The policies of one schedule that decide its next occurrence.
struct occurrence_rules {
  overlap_policy overlap = overlap_policy::one_waiting;
  missed_runs missed = missed_runs::run_latest_once;
  std::chrono::milliseconds late_after{std::chrono::minutes{1}};
  int catch_up_max = 10;
  std::chrono::milliseconds catch_up_window{std::chrono::hours{24}};

  static occurrence_rules of(const schedule_definition& d) {
    return {d.overlap, d.missed, d.late_after, d.catch_up_max,
            d.catch_up_window};
  }
};

/// The occurrence to enqueue next, with what it records of a catch-up.
struct next_occurrence {
  timestamp at;
  int catch_up_left = 0;
  std::optional<timestamp> skip_until{};
};

/// The latest time of `plan` at or before `t` and after `floor`, found by
/// looking back over growing spans (a bounded search); none if there is
/// none.
std::optional<timestamp> latest_at_or_before(const schedule& plan, timestamp t,
                                             timestamp floor);

/// What a schedule enqueues after `last` (its latest occurrence, none for a
/// new schedule) at `now`, or nothing yet:
/// - a new schedule starts with its first time after `now` (it never
///   backfills);
/// - while `last` waits, nothing; while it runs, nothing unless the
///   overlap policy is `allow` (then the next time);
/// - a catch-up in progress goes on with the next missed time;
/// - times that fell due before `last` ended are the overlap policy's
///   (`skip` drops them, `one_waiting` runs the latest);
/// - times after that more than `late_after` before `now` are missed: the
///   missed-runs policy's.
/// Intervals count from the end of the previous run (with `allow`, from
/// its time) and skip what was missed.
std::optional<next_occurrence>
next_occurrence_after(const schedule& plan, const occurrence_rules& rules,
                      const std::optional<scheduled_run>& last, timestamp now);

} // namespace bg_jobs::detail
