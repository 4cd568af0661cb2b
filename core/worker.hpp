#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <type_traits>

#include <caf/expected.hpp>

#include "bg_jobs/core/backoff.hpp"
#include "bg_jobs/core/job.hpp"
#include "bg_jobs/core/outcome.hpp"

namespace bg_jobs {

/// What a handler sees of its run besides the job: whether it should stop,
/// so that a long handler can return early, and, for a workflow's task, the
/// outputs of the tasks it depends on.
class job_context {
public:
  /// Reads the outputs of the parents of the job that runs.
  using inputs_reader =
      std::function<caf::expected<std::map<std::string, nlohmann::json>>()>;

  /// Takes a progress report that passed `check_progress`.
  using progress_sink = std::function<caf::error(double, std::string)>;

  explicit job_context(const std::atomic<bool>* abandoned = nullptr,
                       const std::atomic<bool>* cancel_requested = nullptr,
                       inputs_reader inputs = nullptr,
                       progress_sink progress = nullptr)
      : abandoned_(abandoned), cancel_requested_(cancel_requested),
        inputs_(std::move(inputs)), progress_(std::move(progress)) {}

  /// Reports how far the handler has come: `fraction` from 0 to 1 and a
  /// short text (valid UTF-8 without control characters, at most
  /// `max_progress_text` bytes). Listeners receive it as a `job_progress`
  /// event and it is stored with the job (`instance::get_job`, the command
  /// line, the dashboard), both at most once per progress interval
  /// (`builder::with_progress_interval`, 1 s by default); a report inside
  /// the interval replaces the one waiting, and the last one is delivered
  /// when the handler returns. Stored only while the attempt still holds
  /// its reservation: a rescued attempt's reports change nothing.
  /// `invalid_argument` for a fraction outside 0 to 1 (or not a number)
  /// or a text that is not allowed; nothing is reported then. An error of
  /// the store is returned too; the report stays waiting.
  caf::error report_progress(double fraction, std::string text = {}) const;

  /// The outputs of the tasks this one depends on that succeeded with one
  /// (`outcome::success(output)`), by task name, read from the store; empty
  /// for a job that is not a workflow's task, or where no store is at hand
  /// (`testing::run_job` without one).
  caf::expected<std::map<std::string, nlohmann::json>> parent_outputs() const {
    if (!inputs_)
      return std::map<std::string, nlohmann::json>{};
    return inputs_();
  }

  /// True once the job was cancelled (`instance::cancel`: the job is
  /// recorded as cancelled whatever the handler returns) or the attempt
  /// was abandoned (timeout or shutdown: its result is ignored).
  bool cancelled() const {
    return (abandoned_ && abandoned_->load()) ||
           (cancel_requested_ && cancel_requested_->load());
  }

private:
  const std::atomic<bool>* abandoned_;
  const std::atomic<bool>* cancel_requested_;
  inputs_reader inputs_;
  progress_sink progress_;
};

/// Why a progress report cannot be taken (`job_context::report_progress`),
/// or empty.
std::string progress_problem(double fraction, std::string_view text);

/// Runs jobs of one name. A handler returns an `outcome`; a handler that
/// returns `void` succeeds unless it throws; an exception is a failure that
/// carries its `what()`.
class worker {
public:
  using handler_type = std::function<outcome(const job&, const job_context&)>;

  template <class F>
  worker(std::string job_name, F handler)
      : job_name_(std::move(job_name)), handler_(wrap(std::move(handler))) {}

  const std::string& job_name() const { return job_name_; }

  /// Abandons an attempt that runs longer than `t`; the attempt counts as a
  /// failure and the handler's cancellation flag is raised.
  worker& with_timeout(std::chrono::milliseconds t) {
    timeout_ = t;
    return *this;
  }

  const std::optional<std::chrono::milliseconds>& timeout() const {
    return timeout_;
  }

  /// Retries of a failed job of this name (after its first attempt) and
  /// their backoff, in place of its queue's.
  worker& with_retries(int max_retries, backoff b = backoff::exponential()) {
    max_retries_ = max_retries;
    backoff_ = b;
    return *this;
  }

  /// The retries set by `with_retries`, if any.
  const std::optional<int>& max_retries() const { return max_retries_; }
  const std::optional<bg_jobs::backoff>& retry_backoff() const {
    return backoff_;
  }

  /// Derives a job's concurrency key from its payload ("" for none).
  using key_function = std::function<std::string(const nlohmann::json&)>;

  /// Gives each job of this name the concurrency key `f` derives from its
  /// payload (say, `p["tenant"]`), when it is enqueued through a node that
  /// runs this worker (`instance::enqueue`, the bg_jobs actor, a remote
  /// enqueue) without a key of its own. A key `f` returns that is not valid
  /// (see `job_request::with_concurrency_key`), or an exception from `f`,
  /// refuses the enqueue with `invalid_argument`. Enqueues that bypass the
  /// nodes (the command line, an adapter) carry only the keys they give.
  worker& with_concurrency_key(key_function f) {
    key_of_ = std::move(f);
    return *this;
  }

  /// The function set by `with_concurrency_key(key_function)`, if any.
  const key_function& concurrency_key_of() const { return key_of_; }

  /// Runs the handler and turns every exception into a failure outcome.
  outcome run(const job& j,
              const job_context& ctx = job_context{}) const noexcept;

private:
  template <class>
  static constexpr bool always_false = false;

  /// Whether `F`, called as a handler, returns `void` or an `outcome`.
  template <class F>
  static constexpr bool returns_outcome() {
    using result = typename std::conditional_t<
        std::is_invocable_v<F&, const job&, const job_context&>,
        std::invoke_result<F&, const job&, const job_context&>,
        std::invoke_result<F&, const job&>>::type;
    return std::is_void_v<result> || std::is_convertible_v<result, outcome>;
  }

  template <class F>
  static handler_type wrap(F f) {
    if constexpr (!std::is_invocable_v<F&, const job&, const job_context&> &&
                  !std::is_invocable_v<F&, const job&>) {
      static_assert(always_false<F>, "a handler takes (const job&) or "
                                     "(const job&, const job_context&)");
      return {};
    } else if constexpr (!returns_outcome<F>()) {
      static_assert(always_false<F>,
                    "a handler returns bg_jobs::outcome or void");
      return {};
    } else if constexpr (std::is_invocable_v<F&, const job&,
                                             const job_context&>) {
      using result = std::invoke_result_t<F&, const job&, const job_context&>;
      if constexpr (std::is_void_v<result>)
        return [f = std::move(f)](const job& j, const job_context& c) mutable {
          f(j, c);
          return outcome::success();
        };
      else
        return handler_type{std::move(f)};
    } else {
      using result = std::invoke_result_t<F&, const job&>;
      if constexpr (std::is_void_v<result>)
        return [f = std::move(f)](const job& j, const job_context&) mutable {
          f(j);
          return outcome::success();
        };
      else
        return [f = std::move(f)](const job& j, const job_context&) mutable {
          return outcome{f(j)};
        };
    }
  }

  std::string job_name_;
  handler_type handler_;
  std::optional<std::chrono::milliseconds> timeout_;
  std::optional<int> max_retries_;
  std::optional<bg_jobs::backoff> backoff_;
  key_function key_of_;
};

} // namespace bg_jobs
