#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::test {

/// Which replies to lose, shared by every connection a faulty factory
/// opens. A lost reply is the real call, committed in the real store, whose
/// answer the caller never sees: it gets `connection_lost` instead, as when
/// a connection dies between the server's commit and its reply.
struct fault_plan {
  /// Reserves (also the reserve half of complete_and_reserve) that found
  /// jobs and whose reply is then lost.
  std::atomic<int> lose_reserve_replies{0};
  /// Calls of complete_jobs whose reply is lost.
  std::atomic<int> lose_complete_replies{0};
  /// Calls of enqueue_job whose reply is lost.
  std::atomic<int> lose_enqueue_replies{0};
  /// How many replies were lost so far.
  std::atomic<int> lost{0};

  /// The next complete_and_reserve waits before it goes to the store until
  /// `release_claim()`.
  std::atomic<bool> hold_next_claim{false};

  /// Waits until a claim is held (false after `limit`).
  bool await_held_claim(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> guard{mtx_};
    return cv_.wait_for(guard, limit, [&] { return held_; });
  }

  void release_claim() {
    std::lock_guard<std::mutex> guard{mtx_};
    released_ = true;
    cv_.notify_all();
  }

  /// Called by a claim that reserved jobs.
  void maybe_hold() {
    bool expected = true;
    if (!hold_next_claim.compare_exchange_strong(expected, false))
      return;
    std::unique_lock<std::mutex> guard{mtx_};
    held_ = true;
    cv_.notify_all();
    cv_.wait_for(guard, std::chrono::seconds{30}, [&] { return released_; });
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  bool held_ = false;
  bool released_ = false;

public:
  bool take(std::atomic<int>& budget) {
    for (auto n = budget.load(); n > 0;)
      if (budget.compare_exchange_weak(n, n - 1)) {
        ++lost;
        return true;
      }
    return false;
  }
};

/// A connection that forwards every call to a real one and loses the
/// replies its plan names.
class faulty_adapter : public db_adapter {
public:
  faulty_adapter(std::unique_ptr<db_adapter> inner,
                 std::shared_ptr<fault_plan> plan)
      : inner_(std::move(inner)), plan_(std::move(plan)) {}

  static adapter_factory wrap(adapter_factory real,
                              std::shared_ptr<fault_plan> plan) {
    return [real, plan]() -> caf::expected<std::unique_ptr<db_adapter>> {
      auto db = real();
      if (!db)
        return std::move(db.error());
      return std::unique_ptr<db_adapter>{
          new faulty_adapter(std::move(*db), plan)};
    };
  }

  capabilities caps() const override { return inner_->caps(); }
  caf::expected<void> migrate_up() override { return inner_->migrate_up(); }
  caf::expected<void> migrate_down() override { return inner_->migrate_down(); }
  caf::expected<int> schema_version() override {
    return inner_->schema_version();
  }
  caf::expected<job> enqueue_job(const job_request& r) override {
    auto j = inner_->enqueue_job(r);
    if (j && plan_->take(plan_->lose_enqueue_replies))
      return lost("enqueueing a job");
    return j;
  }
  caf::expected<std::vector<int64_t>>
  enqueue_jobs(const std::vector<job_request>& rs) override {
    return inner_->enqueue_jobs(rs);
  }
  caf::expected<std::vector<job>>
  reserve_jobs(const reserve_params& p) override {
    auto r = inner_->reserve_jobs(p);
    if (r && !r->empty() && plan_->take(plan_->lose_reserve_replies))
      return lost("reserving jobs");
    return r;
  }
  caf::expected<void>
  set_limits(const std::string& queue,
             const std::vector<concurrency_limit>& limits) override {
    return inner_->set_limits(queue, limits);
  }
  caf::expected<void> set_limit(const std::string& queue,
                                const concurrency_limit& limit) override {
    return inner_->set_limit(queue, limit);
  }
  caf::expected<std::vector<concurrency_limit>>
  stored_limits(const std::string& queue) override {
    return inner_->stored_limits(queue);
  }
  caf::expected<std::vector<key_usage>>
  keys_in_use(const std::string& queue,
              const std::vector<std::string>& job_names,
              int max_keys) override {
    return inner_->keys_in_use(queue, job_names, max_keys);
  }
  caf::expected<std::vector<blocked_key>>
  blocked_keys(const std::string& queue,
               const std::vector<std::string>& job_names) override {
    return inner_->blocked_keys(queue, job_names);
  }
  caf::expected<int64_t> unblock_key(const std::vector<std::string>& job_names,
                                     const std::string& key) override {
    return inner_->unblock_key(job_names, key);
  }  caf::expected<void> set_rate_limit(const rate_limit& limit) override {
    return inner_->set_rate_limit(limit);
  }
  caf::expected<std::optional<bg_jobs::rate_limit_state>>
  rate_state(const std::string& name, int max_keys) override {
    return inner_->rate_state(name, max_keys);
  }
  caf::expected<rate_decision> consume_rate(const std::string& name,
                                            const std::string& key,
                                            int64_t cost) override {
    return inner_->consume_rate(name, key, cost);
  }
  caf::expected<void> block_rate_key(const std::string& name,
                                     const std::string& key,
                                     int64_t ms) override {
    return inner_->block_rate_key(name, key, ms);
  }
  caf::expected<std::optional<int64_t>>
  rate_wait(const reserve_params& p) override {
    return inner_->rate_wait(p);
  }
  caf::expected<std::optional<int64_t>>
  next_due(const reserve_params& p, timestamp after) override {
    return inner_->next_due(p, after);
  }
  caf::expected<std::vector<job>> discard_expired(int limit) override {
    return inner_->discard_expired(limit);
  }

  caf::expected<std::vector<job>>
  release_jobs_reserved_by(const std::string& owner) override {
    return inner_->release_jobs_reserved_by(owner);
  }
  caf::expected<std::vector<job>>
  release_jobs_of_node(const std::string& node) override {
    return inner_->release_jobs_of_node(node);
  }
  caf::expected<bool> hold_lease(const std::string& name,
                                 const std::string& holder,
                                 std::chrono::milliseconds ttl) override {
    return inner_->hold_lease(name, holder, ttl);
  }
  caf::expected<void> record_actions(const std::vector<event>& es) override {
    return inner_->record_actions(es);
  }
  caf::expected<std::vector<recorded_action>> take_actions(int limit) override {
    return inner_->take_actions(limit);
  }
  caf::expected<void> release_lease(const std::string& name,
                                    const std::string& holder) override {
    return inner_->release_lease(name, holder);
  }
  caf::expected<void> heartbeat(const std::string& node) override {
    return inner_->heartbeat(node);
  }
  caf::expected<std::vector<job>>
  rescue_jobs(std::chrono::milliseconds lease) override {
    return inner_->rescue_jobs(lease);
  }
  caf::expected<int64_t> prune_jobs(const prune_params& p) override {
    return inner_->prune_jobs(p);
  }
  caf::expected<vacuum_report> vacuum_jobs(int64_t min_dead_rows) override {
    return inner_->vacuum_jobs(min_dead_rows);
  }
  caf::expected<std::vector<bool>>
  complete_jobs(const std::vector<completion>& cs) override {
    auto r = inner_->complete_jobs(cs);
    if (r && plan_->take(plan_->lose_complete_replies))
      return lost("recording outcomes");
    return r;
  }
  caf::expected<complete_reserve_result>
  complete_and_reserve(const std::vector<completion>& cs,
                       const reserve_params& p) override {
    plan_->maybe_hold();
    auto r = inner_->complete_and_reserve(cs, p);
    if (r && !r->reserved.empty() && plan_->take(plan_->lose_reserve_replies))
      return lost("recording outcomes and reserving jobs");
    return r;
  }
  caf::expected<std::vector<job>>
  release_unheld(const std::string& owner,
                 const std::vector<int64_t>& held) override {
    return inner_->release_unheld(owner, held);
  }
  caf::expected<std::optional<job>>
  enqueue_scheduled(const scheduled_params& p) override {
    return inner_->enqueue_scheduled(p);
  }
  caf::expected<std::optional<scheduled_run>>
  last_scheduled_run(const std::string& name) override {
    return inner_->last_scheduled_run(name);
  }
  caf::expected<bool>
  mark_scheduled_run(const std::string& name, timestamp scheduled_at,
                     int catch_up_left,
                     std::optional<timestamp> skip_until) override {
    return inner_->mark_scheduled_run(name, scheduled_at, catch_up_left,
                                      skip_until);
  }
  caf::expected<bool> put_schedule(const stored_schedule& s) override {
    return inner_->put_schedule(s);
  }
  caf::expected<std::vector<stored_schedule>> list_schedules() override {
    return inner_->list_schedules();
  }
  caf::expected<schedule_removal>
  remove_schedule(const std::string& name,
                  std::optional<timestamp> unseen_since) override {
    return inner_->remove_schedule(name, unseen_since);
  }
  caf::expected<std::optional<node_holder>>
  claim_node(const node_identity& me, std::chrono::milliseconds lease,
             const std::function<bool(const node_holder&)>& alive) override {
    return inner_->claim_node(me, lease, alive);
  }
  caf::expected<void> release_node(const std::string& node,
                                   const std::string& instance) override {
    return inner_->release_node(node, instance);
  }
  caf::expected<void>
  announce_queues(const std::string& node,
                  const std::vector<queue_announcement>& queues) override {
    return inner_->announce_queues(node, queues);
  }
  using db_adapter::known_queues;
  caf::expected<std::vector<known_queue>>
  known_queues(std::chrono::milliseconds silent_after) override {
    return inner_->known_queues(silent_after);
  }
  caf::expected<job_record> cancel_job(int64_t id,
                                       const std::string& reason) override {
    return inner_->cancel_job(id, reason);
  }
  caf::expected<job_record> retry_job(int64_t id) override {
    return inner_->retry_job(id);
  }
  caf::expected<int64_t> retry_failed(const std::string& name) override {
    return inner_->retry_failed(name);
  }
  caf::expected<void> pause(pause_kind k, const std::string& name) override {
    return inner_->pause(k, name);
  }
  caf::expected<void> resume(pause_kind k, const std::string& name) override {
    return inner_->resume(k, name);
  }
  caf::expected<std::vector<pause_record>> pauses() override {
    return inner_->pauses();
  }
  caf::expected<std::vector<name_stats>> stats_by_name() override {
    return inner_->stats_by_name();
  }
  caf::expected<std::vector<finished_bucket>>
  finished_per_bucket(timestamp since,
                      std::chrono::milliseconds bucket) override {
    return inner_->finished_per_bucket(since, bucket);
  }
  caf::expected<job_page> list_jobs(const job_query& q) override {
    return inner_->list_jobs(q);
  }
  caf::expected<workflow_ids> enqueue_workflow(const workflow& w) override {
    return inner_->enqueue_workflow(w);
  }
  caf::expected<workflow_ids> add_tasks(int64_t id,
                                        const workflow& more) override {
    return inner_->add_tasks(id, more);
  }
  caf::expected<std::optional<int64_t>> workflow_of(int64_t id) override {
    return inner_->workflow_of(id);
  }
  caf::expected<workflow_info> close_workflow(int64_t id) override {
    return inner_->close_workflow(id);
  }
  caf::expected<workflow_info> get_workflow(int64_t id) override {
    return inner_->get_workflow(id);
  }
  caf::expected<std::vector<workflow_info>>
  list_workflows(const workflow_query& q) override {
    return inner_->list_workflows(q);
  }
  caf::expected<workflow_info>
  cancel_workflow(int64_t id, const std::string& reason) override {
    return inner_->cancel_workflow(id, reason);
  }
  caf::expected<workflow_info> retry_workflow(int64_t id) override {
    return inner_->retry_workflow(id);
  }
  caf::expected<std::map<std::string, nlohmann::json>>
  parent_outputs(int64_t id) override {
    return inner_->parent_outputs(id);
  }
  caf::expected<workflow_watch> watch_workflows(int limit) override {
    return inner_->watch_workflows(limit);
  }
  caf::expected<bool> record_progress(int64_t id,
                                      const std::string& reserved_by,
                                      int attempt, double fraction,
                                      const std::string& text) override {
    return inner_->record_progress(id, reserved_by, attempt, fraction, text);
  }
  caf::expected<job_record> get_job(int64_t id) override {
    return inner_->get_job(id);
  }
  caf::expected<void> delete_job(int64_t id) override {
    return inner_->delete_job(id);
  }
  caf::expected<std::vector<job>>
  get_running_jobs_of_owner(const std::string& owner) override {
    return inner_->get_running_jobs_of_owner(owner);
  }
  caf::expected<std::vector<std::pair<int64_t, std::string>>>
  cancels_asked(const std::string& owner,
                const std::vector<int64_t>& ids) override {
    return inner_->cancels_asked(owner, ids);
  }
  caf::expected<job_stats> stats() override { return inner_->stats(); }
  caf::expected<std::vector<std::string>>
  await_wakeups(std::chrono::milliseconds timeout,
                int interrupt_fd = -1) override {
    return inner_->await_wakeups(timeout, interrupt_fd);
  }

private:
  static caf::error lost(const char* what) {
    return make_error(errc::connection_lost,
                      std::string{what} + ": connection lost (injected)");
  }

  std::unique_ptr<db_adapter> inner_;
  std::shared_ptr<fault_plan> plan_;
};

} // namespace bg_jobs::test
