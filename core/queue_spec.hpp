#pragma once

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "bg_jobs/core/backoff.hpp"
#include "bg_jobs/core/event.hpp"
#include "bg_jobs/core/limits.hpp"
#include "bg_jobs/core/worker.hpp"

namespace bg_jobs {

/// The configuration of one queue, in the original's vocabulary.
class queue_spec {
public:
  /// The poll interval of a queue on a node that does not listen.
  static constexpr std::chrono::milliseconds default_poll_interval{1000};
  /// The poll interval of a queue on a node that listens.
  static constexpr std::chrono::milliseconds listening_poll_interval{5000};

  explicit queue_spec(std::string name) : name_(std::move(name)) {}

  /// The most executors a queue may have on one node (also through
  /// `scale`): each is a thread.
  static constexpr int max_concurrency = 1000;

  /// Executors on this node (default 10, at most `max_concurrency`).
  queue_spec& with_max_concurrent_jobs(int n) {
    max_concurrent_jobs_ = n;
    return *this;
  }

  /// How often the queue looks for jobs when nothing wakes it. Enqueues on
  /// any node wake it at once (PostgreSQL NOTIFY, the SQLite WAL watch);
  /// a queue that finds no more ready jobs asks the store when its next
  /// waiting job (delayed, retried, snoozed, scheduled) comes due and looks
  /// again then. So the poll only finds what a wake-up missed. By default
  /// it is `listening_poll_interval` (5 s) on a node that listens and
  /// `default_poll_interval` (1 s) on one that does not
  /// (`builder::with_poll_only`). A queue with limits looks at least once
  /// a second whatever is set (a slot freed on another node announces
  /// nothing); one with jobs in hand looks once a second for cancels of
  /// them asked for on another node.
  queue_spec& with_poll_interval(std::chrono::milliseconds d) {
    poll_interval_ = d;
    return *this;
  }

  /// Jobs the queue may reserve ahead of its free executors (default 500;
  /// 0 turns fetching ahead off). The queue keeps no more than about 10 ms
  /// of work in hand, judged by how long its jobs take, so that slow jobs
  /// are never held back from other nodes and an urgent job enqueued later
  /// waits little. Jobs held ahead stay reserved by this queue: its death,
  /// shutdown and the rescue of its node release them as running ones.
  queue_spec& with_prefetch(int n) {
    prefetch_ = n;
    return *this;
  }

  /// Retries after the first attempt (default 20: 21 attempts in all,
  /// spread over about eight days by the default backoff).
  queue_spec& with_max_retries(int n) {
    max_retries_ = n;
    return *this;
  }

  /// How long the queue may take to start (default 1000 ms).
  queue_spec& with_init_timeout(std::chrono::milliseconds d) {
    init_timeout_ = d;
    return *this;
  }

  /// Abandons an attempt that runs longer than `d` (default: no limit); a
  /// worker's own timeout takes precedence. The attempt counts as failed,
  /// its executor is replaced at once and its handler's cancellation flag
  /// is raised.
  queue_spec& with_job_timeout(std::chrono::milliseconds d) {
    job_timeout_ = d;
    return *this;
  }

  /// The wait before a retry (default: `backoff::standard()`, exponential
  /// from 15 s up to a day, with jitter).
  queue_spec& with_backoff(backoff b) {
    backoff_ = b;
    return *this;
  }

  /// Runs at most `n` jobs of each concurrency key at once, across every
  /// node (`job_request::with_concurrency_key`); jobs without a key are not
  /// bounded by it. Makes the queue limited: see `with_key_limit(key, n)`.
  queue_spec& with_key_limit(int n) {
    return with_limit({limit_kind::per_key, "", n});
  }

  /// Runs at most `n` jobs of the key `key` at once, across every node,
  /// whatever the per-key limit. Jobs held ahead (the prefetch) count
  /// against their keys; claims of a limited queue take turns across nodes;
  /// a key whose limit is reached blocks none of the others. Every node
  /// starting the queue writes its limits to the store (the last one to
  /// start wins); `instance::set_limit` and `bg_jobs limits set` change
  /// them while it runs, and every node honours a change at its next claim.
  queue_spec& with_key_limit(std::string key, int n) {
    return with_limit({limit_kind::key, std::move(key), n});
  }

  /// Runs at most `n` jobs of this queue at once across every node (each
  /// node also keeps to its own `max_concurrent_jobs`).
  queue_spec& with_global_limit(int n) {
    return with_limit({limit_kind::total, "", n});
  }

  /// Makes every concurrency key of this queue a sequence, across every
  /// node: of a key's jobs only the oldest unfinished one (the lowest id in
  /// the jobs table, delayed or retrying included) may run, so they run one
  /// at a time in the order they were enqueued. A job that fails for good
  /// holds its key (`sequence_failure::hold`: the key is blocked until the
  /// job is retried or deleted, or the key is unblocked) or lets the next
  /// one go (`skip`). Jobs without a key are not sequenced. Makes the queue
  /// limited.
  queue_spec& with_sequences(sequence_failure f = sequence_failure::hold) {
    limits_.erase(std::remove_if(limits_.begin(), limits_.end(),
                                 [](const concurrency_limit& x) {
                                   return x.kind == limit_kind::sequence ||
                                          x.kind ==
                                              limit_kind::sequence_skip_failed;
                                 }),
                  limits_.end());
    return with_limit({f == sequence_failure::hold
                           ? limit_kind::sequence
                           : limit_kind::sequence_skip_failed,
                       "", 1});
  }

  /// Admits this queue's jobs against the rate limit `limit`, across every
  /// node: no more than its `burst` starts at once and `allowed` per
  /// `period` over time, per rate key (`job_request::with_rate`; jobs
  /// without one share the key ""), each start costing the job's cost.
  /// Counted inside the claim, by the store's clock. Every node starting
  /// the queue writes the limit to the store (the last one to start wins);
  /// `instance::set_rate_limit` changes it while it runs. Makes the queue
  /// limited. A start is counted when the job is claimed: a job held ahead
  /// (the prefetch, about 10 ms of work) starts that much later.
  queue_spec& with_rate_limit(bg_jobs::rate_limit limit) {
    rate_limit_ = std::move(limit);
    return *this;
  }

  const std::optional<bg_jobs::rate_limit>& rate_limit() const {
    return rate_limit_;
  }

  /// Sets one limit (replacing one of the same kind and key).
  queue_spec& with_limit(concurrency_limit l) {
    for (auto& x : limits_)
      if (x.kind == l.kind && x.key == l.key) {
        x = std::move(l);
        return *this;
      }
    limits_.push_back(std::move(l));
    return *this;
  }

  queue_spec& with_worker(worker w) {
    workers_.push_back(std::move(w));
    return *this;
  }

  queue_spec& with_workers(std::vector<worker> ws) {
    for (auto& w : ws)
      workers_.push_back(std::move(w));
    return *this;
  }

  /// Listeners that receive this queue's events (after the global ones).
  queue_spec& with_event_listener(event_listener l) {
    listeners_.push_back(std::move(l));
    return *this;
  }

  queue_spec& with_event_listeners(std::vector<event_listener> ls) {
    for (auto& l : ls)
      listeners_.push_back(std::move(l));
    return *this;
  }

  const std::string& name() const { return name_; }
  int max_concurrent_jobs() const { return max_concurrent_jobs_; }
  /// The poll interval set, or the default on a node that does not listen.
  std::chrono::milliseconds poll_interval() const {
    return poll_interval_.value_or(default_poll_interval);
  }
  /// The poll interval set, or the default for a node that listens
  /// (`listening`) or does not.
  std::chrono::milliseconds poll_interval(bool listening) const {
    return poll_interval_.value_or(listening ? listening_poll_interval
                                             : default_poll_interval);
  }
  int max_retries() const { return max_retries_; }
  int prefetch() const { return prefetch_; }
  std::chrono::milliseconds init_timeout() const { return init_timeout_; }
  const bg_jobs::backoff& retry_backoff() const { return backoff_; }
  const std::optional<std::chrono::milliseconds>& job_timeout() const {
    return job_timeout_;
  }
  const std::vector<worker>& workers() const { return workers_; }
  const std::vector<concurrency_limit>& limits() const { return limits_; }
  /// The limits as stored: those of `limits()` and a `limit_kind::rate`
  /// row naming the rate limit, if one is declared.
  std::vector<concurrency_limit> stored_limits() const {
    auto out = limits_;
    if (rate_limit_)
      out.push_back({limit_kind::rate, rate_limit_->name, 1});
    return out;
  }
  /// Whether the queue declares concurrency or rate limits.
  bool limited() const { return !limits_.empty() || rate_limit_.has_value(); }
  const std::vector<event_listener>& event_listeners() const {
    return listeners_;
  }

  /// Checks names and limits; returns an `invalid_config` error or none.
  caf::error validate() const;

private:
  std::string name_;
  int max_concurrent_jobs_ = 10;
  std::optional<std::chrono::milliseconds> poll_interval_;
  int max_retries_ = 20;
  int prefetch_ = 500;
  std::chrono::milliseconds init_timeout_{1000};
  bg_jobs::backoff backoff_ = backoff::standard();
  std::optional<std::chrono::milliseconds> job_timeout_;
  std::vector<worker> workers_;
  std::vector<event_listener> listeners_;
  std::vector<concurrency_limit> limits_;
  std::optional<bg_jobs::rate_limit> rate_limit_;
};

} // namespace bg_jobs
