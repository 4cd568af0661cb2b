#pragma once

// What tests read from a store, through the operations the library itself
// uses (`list_jobs`), so that the adapter interface carries no operation
// for tests only.

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "bg_jobs/adapters/db_adapter.hpp"

namespace bg_jobs::test {

/// The fields of `r` that a `job` has, as a `job` (for comparisons).
inline job as_job(const job_record& r) {
  job j;
  j.id = r.id;
  j.name = r.name;
  j.payload = r.payload;
  j.attempts = r.attempts;
  j.priority = r.priority;
  j.created_at = r.created_at;
  j.available_at = r.available_at;
  j.reserved_at = r.reserved_at;
  j.reserved_by = r.reserved_by;
  j.last_error = r.error;
  j.cancel_reason = r.cancel_reason;
  return j;
}

/// Every job in `state` (of the names given, if any), in the order of
/// `list_jobs`, page after page.
inline caf::expected<std::vector<job_record>>
all_in(db_adapter& db, job_state state, std::vector<std::string> names = {},
       bool newest_first = true) {
  std::vector<job_record> out;
  job_query q;
  q.state = state;
  q.names = std::move(names);
  q.newest_first = newest_first;
  q.limit = 1000;
  for (;;) {
    auto page = db.list_jobs(q);
    if (!page)
      return std::move(page.error());
    for (auto& r : page->jobs)
      out.push_back(std::move(r));
    if (page->next.empty())
      return out;
    q.after = page->next;
  }
}

/// The unreserved jobs named `name` (waiting or scheduled), by
/// availability then id.
inline caf::expected<std::vector<job_record>>
enqueued(db_adapter& db, const std::string& name) {
  // Scheduled first: a job may become waiting between the two reads, never
  // the other way round (the ids seen twice are dropped).
  auto later = all_in(db, job_state::scheduled, {name});
  if (!later)
    return later;
  auto now = all_in(db, job_state::waiting, {name});
  if (!now)
    return now;
  std::set<int64_t> seen;
  std::vector<job_record> out;
  for (auto* part : {&*now, &*later})
    for (auto& r : *part)
      if (seen.insert(r.id).second)
        out.push_back(std::move(r));
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) {
    return a.available_at != b.available_at ? a.available_at < b.available_at
                                            : a.id < b.id;
  });
  return out;
}

/// The reserved jobs, by id.
inline caf::expected<std::vector<job_record>> running(db_adapter& db) {
  auto out = all_in(db, job_state::running);
  if (out)
    std::sort(out->begin(), out->end(),
              [](auto& a, auto& b) { return a.id < b.id; });
  return out;
}

/// The `limit` jobs that succeeded last, newest first.
inline caf::expected<std::vector<job_record>> succeeded(db_adapter& db,
                                                        size_t limit) {
  auto out = all_in(db, job_state::succeeded);
  if (out && out->size() > limit)
    out->resize(limit);
  return out;
}

/// The `limit` jobs that failed for good or were cancelled last, newest
/// first.
inline caf::expected<std::vector<job_record>> failed(db_adapter& db,
                                                     size_t limit) {
  auto out = all_in(db, job_state::failed);
  if (!out)
    return out;
  auto cancelled = all_in(db, job_state::cancelled);
  if (!cancelled)
    return cancelled;
  for (auto& r : *cancelled)
    out->push_back(std::move(r));
  std::sort(out->begin(), out->end(), [](auto& a, auto& b) {
    return a.finished_at != b.finished_at ? a.finished_at > b.finished_at
                                          : a.id > b.id;
  });
  if (out->size() > limit)
    out->resize(limit);
  return out;
}

/// The ids of the jobs the node `node` holds in the store (running or held
/// ahead).
inline caf::expected<std::vector<int64_t>> held_by(db_adapter& db,
                                                   const std::string& node) {
  auto jobs = running(db);
  if (!jobs)
    return std::move(jobs.error());
  std::vector<int64_t> ids;
  for (auto& j : *jobs)
    if (j.reserved_by && j.reserved_by->rfind(node + "/", 0) == 0)
      ids.push_back(j.id);
  return ids;
}

} // namespace bg_jobs::test
