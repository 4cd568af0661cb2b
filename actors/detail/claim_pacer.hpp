#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "bg_jobs/actors/detail/dispatcher.hpp"
#include "bg_jobs/actors/detail/job_rules.hpp"
#include "bg_jobs/actors/detail/node_context.hpp"
#include "bg_jobs/actors/detail/store_worker.hpp"
#include "bg_jobs/core/queue_spec.hpp"

namespace bg_jobs::detail {

/// When a queue asks its store worker for jobs and has its outcomes
/// written. A claim carries the outcomes decided before it left; outcomes
/// decided while none is due wait for the next one at most `flush_delay`;
/// a claim goes when the jobs in hand fall to half the target while the
/// last claim got all it asked for (a backlog). A retry or snooze decided
/// here, and a rate limit's wait, have the queue look again when they come
/// due. Every message it sends goes to the queue's store worker, or to the
/// queue itself as a timer:
/// - `(flush_due_atom)`: call `flush_due`;
/// - `(rate_due_atom)`: call `rate_due`, then poll;
/// - `(wake_atom, job_name)`: poll (`job_name` empty: a waiting job came
///   due).
class claim_pacer {
public:
  /// The longest an outcome waits for the next claim to carry it.
  static constexpr std::chrono::milliseconds flush_delay{20};

  /// A claim that takes longer means a hung store call: the queue quits
  /// (and its supervisor restarts it).
  static constexpr std::chrono::seconds claim_timeout{60};

  claim_pacer() = default;

  claim_pacer(node_context ctx, queue_spec spec,
              std::shared_ptr<const job_rules> rules, caf::actor store);

  /// Outcomes decided since the last message to the store worker.
  outcome_batch unsent;

  const caf::actor& store() const { return store_; }

  /// A claim is on its way (with the outcomes decided before it left);
  /// outcomes decided since wait for its answer.
  bool claiming() const { return claiming_; }

  /// A slot of a limited queue's keys is free again: a claim may find
  /// jobs the last one passed over.
  void more_may_wait() { backlog_ = true; }

  /// Has the outcomes decided so far written now, unless a claim is on its
  /// way (its answer settles them).
  void flush(caf::event_based_actor* self);

  /// Asks the store worker for as many jobs as `hand` wants, with the
  /// outcomes decided since; `answered` takes its answer. While a claim is
  /// on its way, the next answer says to claim again; when `hand` wants
  /// none, writes the outcomes instead. A failed claim quits `self`.
  void claim(caf::event_based_actor* self, dispatcher& hand,
             std::function<void(claim_call&)> answered);

  /// Takes in the store worker's answer: holds its jobs in `hand` and arms
  /// the rate limit's timer. True if a claim was asked for meanwhile.
  bool take_answer(caf::event_based_actor* self, dispatcher& hand,
                   claim_call& c);

  /// After results arrived: true if a claim is due now (few jobs left in
  /// hand, more waiting); otherwise writes the outcomes when no claim is
  /// due soon, or keeps them at most `flush_delay` for the next one.
  bool settle(caf::event_based_actor* self, dispatcher& hand, bool stopping);

  /// The flush timer is due.
  void flush_due(caf::event_based_actor* self);

  /// The rate limit's timer is due: the next claim may find jobs.
  void rate_due();

  /// Looks for jobs again when the retry or snooze `o` comes due, unless
  /// the next poll comes first (whose claim reads when it is due).
  void look_when_due(caf::event_based_actor* self, const pending_outcome& o);

  /// How long from one poll to the next: the poll interval (by default
  /// longer on a node that listens), at most a second for a queue with
  /// limits, since a slot freed on another node announces nothing.
  std::chrono::milliseconds poll_every() const;

  /// The store worker says the queue's next waiting job comes due in
  /// `wait`: looks for jobs again then (one timer at a time: the earliest
  /// asked for), unless the next poll comes first. (A timer holds the
  /// queue's thread until it fires, even after the queue quit: none is
  /// longer than a poll.)
  void look_when_available(caf::event_based_actor* self,
                           std::chrono::milliseconds wait);

  /// Has the store worker look for cancels, asked for on another node, of
  /// the jobs in `hand` (none: nothing to do). The queue calls it once a
  /// second while it holds jobs.
  void check_cancels(caf::event_based_actor* self, const dispatcher& hand);

private:
  /// Looks for jobs again when the rate limit lets the first one it held
  /// back go (one timer at a time: the earliest asked for).
  void look_when_rate_allows(caf::event_based_actor* self,
                             std::chrono::milliseconds wait);

  node_context ctx_;
  queue_spec spec_{""};
  std::shared_ptr<const job_rules> rules_;
  caf::actor store_;
  /// The last claim got all it asked for: more jobs may be waiting.
  bool backlog_ = false;
  bool claiming_ = false;
  /// Something asked for a claim while one was on its way.
  bool claim_again_ = false;
  /// A flush message is on its way for outcomes kept for the next claim.
  bool flush_pending_ = false;
  /// Arms `armed` for `wait` from now unless it is armed for earlier and
  /// not yet past: true if the caller is to send the timer's message.
  static bool
  earliest(std::optional<std::chrono::steady_clock::time_point>& armed,
           std::chrono::milliseconds wait);

  /// When the rate limit's timer is due to have the queue look again.
  std::optional<std::chrono::steady_clock::time_point> rate_look_at_;
  /// When the timer for the next waiting job is due to have the queue look.
  std::optional<std::chrono::steady_clock::time_point> due_look_at_;
};

} // namespace bg_jobs::detail
