#pragma once

#include <concepts>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/core/worker.hpp"

namespace bg_jobs {

/// The arguments of a typed job: a type that names its job with a static
/// `job_name` and converts to and from JSON by nlohmann's conventions
/// (`to_json`/`from_json`, or `NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE`):
///
///     struct send_email {
///       static constexpr const char* job_name = "send_email";
///       std::string to;
///       int retries_left = 0;
///     };
///     NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(send_email, to, retries_left)
template <class Args>
concept job_args = requires(const Args& a, const nlohmann::json& j) {
  { std::string_view{Args::job_name} };
  { nlohmann::json(a) };
  { j.template get<Args>() } -> std::same_as<Args>;
};

/// The job request of `args`: the job name of its type and its JSON as
/// the payload; set options on it as on any request
/// (`request_of(args).with_priority(2)`).
template <job_args Args>
job_request request_of(const Args& args) {
  return job_request{std::string{Args::job_name}, nlohmann::json(args)};
}

namespace detail {

template <class>
inline constexpr bool always_false = false;

/// Why `payload` does not decode as `Args` (`what` is the decoder's
/// message): the first field whose presence or JSON type differs from a
/// default `Args`'s, when `Args` has a default, else the message alone.
template <class Args>
std::string decode_problem(const nlohmann::json& payload,
                           const std::string& what) {
  std::string about = "payload does not decode as " +
                      std::string{Args::job_name} + " arguments";
  if constexpr (std::is_default_constructible_v<Args>) {
    nlohmann::json shape = Args{};
    if (shape.is_object() && !payload.is_object())
      return about + ": expected an object, got " + payload.type_name();
    if (shape.is_object())
      for (auto& [key, value] : shape.items()) {
        auto it = payload.find(key);
        if (it == payload.end())
          return about + ": field '" + key + "' is missing";
        bool number = value.is_number() && it->is_number();
        if (!number && it->type() != value.type() && !value.is_null())
          return about + ": field '" + key + "' should be " +
                 value.type_name() + ", got " + it->type_name();
      }
  }
  return about + ": " + what;
}

} // namespace detail

/// A worker of the typed job `Args`: its name is `Args::job_name`, and its
/// handler gets the decoded arguments, as `(const Args&)` or
/// `(const Args&, const job_context&)`, and returns an `outcome` or
/// `void`. A payload that does not decode ends the job failed at once,
/// without retries (no retry would decode it), with an error that names
/// the field.
template <job_args Args, class F>
worker typed_worker(F handler) {
  constexpr bool with_context =
      std::is_invocable_v<F&, const Args&, const job_context&>;
  if constexpr (!with_context && !std::is_invocable_v<F&, const Args&>) {
    static_assert(detail::always_false<F>,
                  "a typed handler takes (const Args&) or "
                  "(const Args&, const job_context&)");
    return worker{"", [](const job&) {}};
  } else {
    using result =
        std::conditional_t<with_context,
                           std::invoke_result<F&, const Args&,
                                              const job_context&>,
                           std::invoke_result<F&, const Args&>>::type;
    if constexpr (!std::is_void_v<result> &&
                  !std::is_convertible_v<result, outcome>) {
      static_assert(detail::always_false<F>,
                    "a handler returns bg_jobs::outcome or void");
      return worker{"", [](const job&) {}};
    } else {
      return worker{
          std::string{Args::job_name},
          [f = std::move(handler)](const job& j,
                                   const job_context& ctx) mutable -> outcome {
            std::optional<Args> args;
            try {
              args = j.payload.template get<Args>();
            } catch (const std::exception& e) {
              return outcome::discard(
                  detail::decode_problem<Args>(j.payload, e.what()));
            }
            auto call = [&]() -> decltype(auto) {
              if constexpr (with_context)
                return f(*args, ctx);
              else
                return f(*args);
            };
            if constexpr (std::is_void_v<result>) {
              call();
              return outcome::success();
            } else {
              return call();
            }
          }};
    }
  }
}

} // namespace bg_jobs
