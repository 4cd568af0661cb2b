#include "bg_jobs/actors/instance.hpp"

#include <algorithm>

#include <caf/actor_system.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "bg_jobs/actors/detail/enqueuer.hpp"
#include "bg_jobs/actors/detail/node_context.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/http/http_server.hpp"

namespace bg_jobs {

instance::instance(caf::actor_system& sys, caf::actor root,
                   std::shared_ptr<detail::actor_directory> dir,
                   std::string node_name, std::string node_instance,
                   caf::actor remote_gate, uint16_t remote_port, bool unpublish,
                   std::shared_ptr<http_server> http,
                   std::shared_ptr<detail::direct_enqueue> direct,
                   trace_source traces)
    : sys_(&sys), root_(std::move(root)), dir_(std::move(dir)),
      node_(std::move(node_name)), node_instance_(std::move(node_instance)),
      remote_gate_(std::move(remote_gate)), remote_port_(remote_port),
      unpublish_(unpublish), http_(std::move(http)),
      direct_(std::move(direct)), traces_(std::move(traces)) {}

instance::instance(instance&& other) noexcept
    : sys_(other.sys_), root_(std::move(other.root_)),
      dir_(std::move(other.dir_)), node_(std::move(other.node_)),
      node_instance_(std::move(other.node_instance_)),
      remote_gate_(std::move(other.remote_gate_)),
      remote_port_(other.remote_port_), unpublish_(other.unpublish_),
      http_(std::move(other.http_)), direct_(std::move(other.direct_)),
      traces_(std::move(other.traces_)) {
  other.root_ = nullptr;
}

bg_jobs_actor instance::typed() const {
  return caf::actor_cast<bg_jobs_actor>(actor());
}

caf::actor instance::actor() const {
  return dir_ ? dir_->get(detail::actor_directory::front_door) : caf::actor{};
}

instance& instance::operator=(instance&& other) noexcept {
  if (this != &other) {
    if (root_)
      shutdown();
    sys_ = other.sys_;
    root_ = std::move(other.root_);
    dir_ = std::move(other.dir_);
    node_ = std::move(other.node_);
    node_instance_ = std::move(other.node_instance_);
    remote_gate_ = std::move(other.remote_gate_);
    remote_port_ = other.remote_port_;
    unpublish_ = other.unpublish_;
    http_ = std::move(other.http_);
    direct_ = std::move(other.direct_);
    traces_ = std::move(other.traces_);
    other.root_ = nullptr;
  }
  return *this;
}

instance::~instance() {
  if (root_)
    shutdown();
}

namespace {

/// Sends a request and waits for its answer; a `void` answer is the empty
/// message that CAF sends for a handler returning `caf::unit`.
template <class T, class... Ts>
caf::expected<T> ask(caf::actor_system& sys, const caf::actor& dest,
                     std::chrono::milliseconds timeout, Ts&&... xs) {
  if (!dest)
    return make_error(errc::shutting_down, "bg_jobs is not running");
  caf::expected<T> result = make_error(errc::timeout, "no answer");
  caf::scoped_actor self{sys};
  auto on_error = [&](caf::error& err) {
    if (err == caf::sec::request_receiver_down)
      result = make_error(errc::shutting_down, "bg_jobs is not running");
    else
      result = std::move(err);
  };
  if constexpr (std::is_void_v<T>)
    self->request(dest, timeout, std::forward<Ts>(xs)...)
        .receive([&]() { result = caf::unit; }, on_error);
  else
    self->request(dest, timeout, std::forward<Ts>(xs)...)
        .receive([&](T& x) { result = std::move(x); }, on_error);
  return result;
}

} // namespace

namespace {

/// Runs `f` on the instance's enqueuer; exceptions become errors, as in
/// the front door.
template <class F>
auto directly(detail::direct_enqueue& d, F f) -> decltype(f(d.door)) {
  std::lock_guard<std::mutex> guard{d.mtx};
  try {
    return f(d.door);
  } catch (const std::exception& ex) {
    return make_error(errc::invalid_argument,
                      std::string{"the request failed: "} + ex.what());
  }
}

} // namespace

caf::expected<std::optional<trace_context>>
instance::trace_now() const {
  std::optional<trace_context> context;
  try {
    context = traces_();
  } catch (const std::exception& ex) {
    return make_error(errc::invalid_argument,
                      std::string{"the trace source failed: "} + ex.what());
  } catch (...) {
    return make_error(errc::invalid_argument, "the trace source failed");
  }
  if (context && context->empty())
    context.reset();
  return context;
}

caf::expected<job> instance::enqueue(const job_request& request,
                                     std::chrono::milliseconds timeout) {
  std::optional<job_request> copy;
  if (traces_ && request.trace().empty()) {
    auto context = trace_now();
    if (!context)
      return std::move(context.error());
    if (*context) {
      copy = request;
      copy->with_trace((*context)->traceparent, (*context)->tracestate);
    }
  }
  const auto& r = copy ? *copy : request;
  // A tree that is gone (or going) answers through the message path:
  // "not running".
  if (!root_ || !direct_ || !actor())
    return ask<job>(*sys_, actor(), timeout, enqueue_atom::value, r);
  return directly(*direct_, [&](auto& door) { return door.enqueue(r); });
}

caf::expected<std::vector<int64_t>>
instance::enqueue_many(const std::vector<job_request>& requests,
                       std::chrono::milliseconds timeout) {
  std::optional<std::vector<job_request>> copies;
  if (traces_ && std::any_of(requests.begin(), requests.end(), [](auto& r) {
        return r.trace().empty();
      })) {
    // One context for the call, as one enqueue's.
    auto context = trace_now();
    if (!context)
      return std::move(context.error());
    if (*context) {
      copies = requests;
      for (auto& r : *copies)
        if (r.trace().empty())
          r.with_trace((*context)->traceparent, (*context)->tracestate);
    }
  }
  const auto& rs = copies ? *copies : requests;
  if (!root_ || !direct_ || !actor())
    return ask<std::vector<int64_t>>(*sys_, actor(), timeout,
                                     enqueue_atom::value, rs);
  return directly(*direct_, [&](auto& door) { return door.enqueue_many(rs); });
}

namespace {

constexpr std::chrono::seconds control_timeout{30};

} // namespace

caf::expected<job_record> instance::cancel(int64_t job_id, std::string reason) {
  return ask<job_record>(*sys_, actor(), control_timeout, cancel_atom::value,
                         job_id, std::move(reason));
}

caf::expected<job_record> instance::retry(int64_t job_id) {
  return ask<job_record>(*sys_, actor(), control_timeout, retry_atom::value,
                         job_id);
}

caf::expected<int64_t> instance::retry_failed(const std::string& job_name) {
  return ask<int64_t>(*sys_, actor(), control_timeout, retry_atom::value,
                      job_name);
}

caf::expected<void> instance::delete_job(int64_t job_id) {
  return ask<void>(*sys_, actor(), control_timeout, delete_atom::value, job_id);
}

caf::expected<void> instance::pause_queue(const std::string& queue) {
  return ask<void>(*sys_, actor(), control_timeout, pause_atom::value,
                   pause_kind::queue, queue);
}

caf::expected<void> instance::resume_queue(const std::string& queue) {
  return ask<void>(*sys_, actor(), control_timeout, resume_atom::value,
                   pause_kind::queue, queue);
}

caf::expected<void> instance::scale_queue(const std::string& queue,
                                          int max_concurrent_jobs) {
  return ask<void>(*sys_, actor(), control_timeout, scale_atom::value, queue,
                   max_concurrent_jobs);
}

caf::expected<void> instance::set_limit(const std::string& queue,
                                        const concurrency_limit& limit) {
  return ask<void>(*sys_, actor(), control_timeout, limit_atom::value, queue,
                   std::string{to_string(limit.kind)}, limit.key,
                   limit.max_running);
}

caf::expected<int64_t> instance::unblock_key(const std::string& queue,
                                             const std::string& key) {
  return ask<int64_t>(*sys_, actor(), control_timeout, unblock_atom::value,
                      queue, key);
}

caf::expected<void> instance::set_rate_limit(const rate_limit& limit) {
  return ask<void>(*sys_, actor(), control_timeout, rate_atom::value,
                   limit.name, limit.allowed,
                   static_cast<int64_t>(limit.period.count()), limit.burst);
}

caf::expected<rate_decision> instance::consume_rate(const std::string& name,
                                                    const std::string& key,
                                                    int64_t cost) {
  auto wait = ask<int64_t>(*sys_, actor(), control_timeout,
                           consume_atom::value, name, key, cost);
  if (!wait)
    return std::move(wait.error());
  return rate_decision{*wait == 0, *wait};
}

caf::expected<void> instance::pause_schedule(const std::string& job_name) {
  return ask<void>(*sys_, actor(), control_timeout, pause_atom::value,
                   pause_kind::schedule, job_name);
}

caf::expected<void> instance::resume_schedule(const std::string& job_name) {
  return ask<void>(*sys_, actor(), control_timeout, resume_atom::value,
                   pause_kind::schedule, job_name);
}

caf::expected<bool> instance::put_schedule(const schedule_definition& d) {
  if (auto err = d.validate())
    return err;
  return ask<bool>(*sys_, actor(), control_timeout, schedule_atom::value,
                   d.to_json().dump());
}

caf::expected<void> instance::remove_schedule(const std::string& name) {
  return ask<void>(*sys_, actor(), control_timeout, unschedule_atom::value,
                   name);
}

caf::expected<job> instance::trigger_schedule(const std::string& name) {
  return ask<job>(*sys_, actor(), control_timeout, trigger_atom::value, name);
}

caf::expected<std::vector<schedule_info>> instance::schedules() {
  auto text = ask<std::string>(*sys_, actor(), control_timeout,
                               schedules_atom::value);
  if (!text)
    return std::move(text.error());
  auto json = nlohmann::json::parse(*text, nullptr, false);
  if (!json.is_array())
    return make_error(errc::invalid_argument, "an unreadable schedule list");
  std::vector<schedule_info> result;
  for (auto& x : json) {
    auto info = schedule_info::from_json(x);
    if (!info)
      return std::move(info.error());
    result.push_back(std::move(*info));
  }
  return result;
}

caf::expected<std::vector<pause_record>> instance::pauses() {
  return ask<std::vector<pause_record>>(*sys_, actor(), control_timeout,
                                        pauses_atom::value);
}

caf::expected<job_record> instance::get_job(int64_t job_id) {
  return ask<job_record>(*sys_, actor(), control_timeout, get_atom::value,
                         job_id);
}

caf::expected<workflow_ids>
instance::enqueue_workflow(const workflow& w,
                           std::chrono::milliseconds timeout) {
  if (!root_ || !direct_ || !actor())
    return ask<workflow_ids>(*sys_, actor(), timeout, workflow_atom::value, w);
  return directly(*direct_,
                  [&](auto& door) { return door.enqueue_workflow(w); });
}

caf::expected<workflow_ids> instance::add_tasks(int64_t id,
                                                const workflow& more) {
  if (!root_ || !direct_ || !actor())
    return make_error(errc::shutting_down, "the node is not running");
  return directly(*direct_,
                  [&](auto& door) { return door.add_tasks(id, more); });
}

caf::expected<workflow_ids> instance::add_tasks(const job& running,
                                                const workflow& more) {
  if (!root_ || !direct_ || !actor())
    return make_error(errc::shutting_down, "the node is not running");
  return directly(*direct_, [&](auto& door) -> caf::expected<workflow_ids> {
    auto db = door.connection();
    if (!db)
      return std::move(db.error());
    auto id = (*db)->workflow_of(running.id);
    if (!id)
      return std::move(id.error());
    if (!*id)
      return make_error(errc::invalid_argument,
                        "job " + std::to_string(running.id) +
                            " is not a workflow's task");
    return door.add_tasks(**id, more);
  });
}

caf::expected<workflow_info> instance::close_workflow(int64_t id) {
  if (!root_ || !direct_ || !actor())
    return make_error(errc::shutting_down, "the node is not running");
  return directly(*direct_, [&](auto& door) -> caf::expected<workflow_info> {
    auto db = door.connection();
    if (!db)
      return std::move(db.error());
    auto w = (*db)->close_workflow(id);
    // Its callbacks may be due now.
    if (w)
      door.wake("*");
    return w;
  });
}

caf::expected<workflow_info> instance::get_workflow(int64_t id) {
  return ask<workflow_info>(*sys_, actor(), control_timeout,
                            workflow_atom::value, id);
}

caf::expected<std::vector<workflow_info>>
instance::list_workflows(const workflow_query& query) {
  return ask<std::vector<workflow_info>>(*sys_, actor(), control_timeout,
                                         workflow_atom::value, query);
}

caf::expected<workflow_info> instance::cancel_workflow(int64_t id,
                                                       std::string reason) {
  return ask<workflow_info>(*sys_, actor(), control_timeout,
                            cancel_atom::value, workflow_atom::value, id,
                            std::move(reason));
}

caf::expected<workflow_info> instance::retry_workflow(int64_t id) {
  return ask<workflow_info>(*sys_, actor(), control_timeout, retry_atom::value,
                            workflow_atom::value, id);
}

caf::expected<job_page> instance::list_jobs(const job_query& query) {
  return ask<job_page>(*sys_, actor(), control_timeout, list_atom::value,
                       query);
}

caf::expected<stats_report> instance::stats() {
  return ask<stats_report>(*sys_, actor(), control_timeout, stats_atom::value);
}

caf::actor instance::lookup(const std::string& name) {
  auto x = ask<caf::actor>(*sys_, actor(), std::chrono::seconds{10},
                           lookup_atom::value, name);
  return x ? *x : caf::actor{};
}

std::vector<std::string> instance::registered_names() {
  auto x = ask<std::vector<std::string>>(
      *sys_, actor(), std::chrono::seconds{10}, names_atom::value);
  return x ? *x : std::vector<std::string>{};
}

void instance::flush_events() {
  ask<void>(*sys_, actor(), std::chrono::seconds{30}, flush_atom::value);
}

uint16_t instance::http_port() const {
  return http_ ? http_->port() : 0;
}

caf::expected<void> instance::shutdown(std::chrono::milliseconds timeout) {
  if (!root_)
    return caf::unit;
  if (http_) {
    http_->stop();
    http_ = nullptr;
  }
  if (remote_gate_) {
    // Remote nodes are turned away first; the port is free again after.
    if (unpublish_)
      sys_->middleman().unpublish(remote_gate_, remote_port_);
    caf::anon_send_exit(remote_gate_, caf::exit_reason::user_shutdown);
    remote_gate_ = nullptr;
  }
  caf::error failure;
  {
    // One deadline for both waits: the answer and the tree's exit (each
    // waiting `timeout` made a shutdown take up to twice as long).
    auto deadline = std::chrono::steady_clock::now() + timeout;
    auto left = [&] {
      return std::max(std::chrono::milliseconds{1},
                      std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now()));
    };
    caf::scoped_actor self{*sys_};
    self->monitor(root_);
    self->request(root_, timeout, shutdown_atom::value)
        .receive([]() {},
                 [&](caf::error& err) {
                   if (err != caf::sec::request_receiver_down)
                     failure = std::move(err);
                 });
    bool down = false;
    self->receive_while([&] { return !down; })(
        [&](caf::down_msg& dm) { down = dm.source == root_.address(); },
        caf::after(left()) >>
            [&] {
              failure =
                  make_error(errc::timeout, "bg_jobs did not stop in time");
              self->send_exit(root_, caf::exit_reason::kill);
              down = true;
            });
  }
  root_ = nullptr;
  dir_ = nullptr;
  direct_ = nullptr;
  detail::forget_node_instance(node_instance_);
  if (failure)
    return failure;
  return caf::unit;
}

caf::error instance::await_exit(std::chrono::milliseconds timeout) {
  if (!root_)
    return caf::none;
  caf::error reason = make_error(errc::timeout, "bg_jobs is still running");
  {
    caf::scoped_actor self{*sys_};
    self->monitor(root_);
    self->receive([&](caf::down_msg& dm) { reason = dm.reason; },
                  caf::after(timeout) >> [] {});
  }
  if (code_of(reason) != errc::timeout) {
    root_ = nullptr;
    dir_ = nullptr;
    detail::forget_node_instance(node_instance_);
  }
  return reason;
}

caf::actor lookup(caf::actor_system& sys, const std::string& name) {
  auto root = sys.registry().get<caf::actor>(system_registry_key);
  if (!root)
    return {};
  auto x = ask<caf::actor>(sys, root, std::chrono::seconds{10},
                           lookup_atom::value, name);
  return x ? *x : caf::actor{};
}

} // namespace bg_jobs
