#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "bg_jobs/core/limits.hpp"

namespace bg_jobs::detail {

/// The claim of a limited queue, as every store runs it in the queue's
/// turn (its writes take turns with every other claim of the queue):
///
///  1. read the queue's limits (`queue_limits`) and the slots its jobs
///     hold (`held_slots`);
///  2. read up to `limited_scan(limit)` ready jobs in claim order, passing
///     over jobs of the keys that have no room (`full_keys`), of rate keys
///     with no start left, and (in a sequence) jobs behind their key's
///     oldest;
///  3. `admit` decides which of them go;
///  4. reserve those, each only if still unreserved.
///
/// Steps 1 and 3 are here, for SQLite. PostgreSQL runs all four in one
/// statement (BG_JOBS_PG_LIMITED_CLAIM in postgres_internal.hpp), with the
/// same rules written in SQL; the conformance suite holds both to them.

/// The concurrency limits of a queue, as stored.
struct queue_limits {
  std::optional<int64_t> per_key;
  std::optional<int64_t> total;
  std::unordered_map<std::string, int64_t> by_key;
  /// Only the oldest job of a key may go.
  bool sequenced = false;
  /// In a sequence, a job that failed for good holds its key.
  bool failed_holds = false;

  static queue_limits of(const std::vector<concurrency_limit>& stored);

  /// Whether anything counts reservations (a key, default or total limit).
  bool counts_slots() const {
    return per_key || total || !by_key.empty() || sequenced;
  }

  /// The most jobs of `key` that may hold a reservation; none: no limit.
  std::optional<int64_t> limit_of(const std::string& key) const;
};

/// The reservations a queue's jobs hold, on every node: a job with two
/// keys holds a slot of each.
struct held_slots {
  std::unordered_map<std::string, int64_t> per_key;
  /// By the first key only (the key a sequence orders).
  std::unordered_map<std::string, int64_t> first;
  int64_t total = 0;

  /// Counts `n` reserved jobs with the keys `key` and `second`.
  void add(const std::optional<std::string>& key,
           const std::optional<std::string>& second, int64_t n);
};

/// The keys with no room left: the claim passes over their jobs before it
/// counts how many it looks at, so a full key blocks no other.
std::vector<std::string> full_keys(const queue_limits& limits,
                                   const held_slots& held);

/// In a sequence, the keys whose jobs hold a reservation (as their first
/// key): a key runs one job at a time, so nothing else of it may go. The
/// claim then needs to look only at unreserved jobs for an older one of
/// the same key (the index of keys holds only those: a claim does not
/// add to it). None when the queue has no sequence.
std::vector<std::string> busy_heads(const queue_limits& limits,
                                    const held_slots& held);

/// A ready job the claim looks at.
struct admission_candidate {
  int64_t id = 0;
  std::optional<std::string> key;
  std::optional<std::string> second_key;
  /// With a rate limit: the job's rate key, its cost (at most the burst),
  /// and the starts its key has left now. None: no rate limit applies.
  std::optional<std::string> rate_key;
  int64_t rate_units = 1;
  int64_t rate_room = 0;
};

/// The ids of `candidates` (in claim order: priority, availability, id)
/// that the claim takes, at most `want`, in the order they go:
/// - a keyed job goes only while each of its keys has room: the n-th
///   candidate of a key (counting both of a job's keys) fits if n is at
///   most the key's room (its limit less its held slots);
/// - a rated job goes only while the costs of its rate key's candidates,
///   added up in claim order, fit the starts the key has left;
/// - keys are served in turns: every key's first fitting job before any
///   key's second (unkeyed jobs go in the first turn), and within a turn in
///   claim order;
/// - with a total, no more than the total less the queue's held slots.
std::vector<int64_t> admit(const std::vector<admission_candidate>& candidates,
                           const queue_limits& limits, const held_slots& held,
                           int64_t want);

} // namespace bg_jobs::detail
