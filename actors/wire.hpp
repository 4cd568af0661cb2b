#pragma once

// How bg_jobs' message types cross a process boundary: each is carried as
// one JSON text (its payload inside), so that CAF's serializers, and its
// printers, handle them, and a remote CAF node can send them. A text that
// does not decode (malformed, nested too deep, a wrong field) fails the
// message with an `invalid_payload` error instead of reaching an actor.

#include <string>

#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <nlohmann/json.hpp>

namespace bg_jobs {

struct job;
class job_request;
struct job_record;
struct job_query;
struct job_page;
struct pause_record;
struct stats_report;
struct job_stats;
struct queue_stats;
class workflow;
struct workflow_ids;
struct workflow_info;
struct workflow_query;

namespace wire {

/// The JSON forms the wire, the command line's `--json` and the HTTP API
/// share (documented in the README).
nlohmann::json as_json(const job& x);
nlohmann::json as_json(const job_record& x);
/// `{"waiting", "scheduled", "running", "succeeded", "failed",
/// "cancelled"}`.
nlohmann::json as_json(const job_stats& x);
/// A queue's `{"limits", "keys", "blocked", "keys_full",
/// "waiting_on_limit"}`.
nlohmann::json limits_as_json(const queue_stats& x);
/// A workflow with its tasks (`{"id", "name", "state", "stuck", "total",
/// "succeeded", "failed", "cancelled", "held", "created_at",
/// "finished_at", "tasks": [{"name", "job_id", "job_name", "state",
/// "after", "finished_at", "output"?}]}`).
nlohmann::json as_json(const workflow_info& x);

std::string encode(const job& x);
std::string encode(const job_request& x);
std::string encode(const job_record& x);
std::string encode(const job_query& x);
std::string encode(const job_page& x);
std::string encode(const pause_record& x);
std::string encode(const stats_report& x);
std::string encode(const workflow& x);
std::string encode(const workflow_ids& x);
std::string encode(const workflow_info& x);
std::string encode(const workflow_query& x);

caf::error decode(const std::string& text, job& x);
caf::error decode(const std::string& text, job_request& x);
caf::error decode(const std::string& text, job_record& x);
caf::error decode(const std::string& text, job_query& x);
caf::error decode(const std::string& text, job_page& x);
caf::error decode(const std::string& text, pause_record& x);
caf::error decode(const std::string& text, stats_report& x);
caf::error decode(const std::string& text, workflow& x);
caf::error decode(const std::string& text, workflow_ids& x);
caf::error decode(const std::string& text, workflow_info& x);
caf::error decode(const std::string& text, workflow_query& x);

/// Inspects `x` as its JSON text under the type name `name`.
template <class Inspector, class T>
typename Inspector::result_type inspect_as_text(Inspector& f, T& x,
                                                const char* name) {
  std::string text;
  if constexpr (Inspector::reads_state)
    text = encode(x);
  return f(caf::meta::type_name(name), text,
           caf::meta::load_callback(
               [&]() -> caf::error { return decode(text, x); }));
}

} // namespace wire

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job& x) {
  return wire::inspect_as_text(f, x, "bg_jobs::job");
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_request& x) {
  return wire::inspect_as_text(f, x, "bg_jobs::job_request");
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_record& x) {
  return wire::inspect_as_text(f, x, "bg_jobs::job_record");
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_query& x) {
  return wire::inspect_as_text(f, x, "bg_jobs::job_query");
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_page& x) {
  return wire::inspect_as_text(f, x, "bg_jobs::job_page");
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pause_record& x) {
  return wire::inspect_as_text(f, x, "bg_jobs::pause_record");
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stats_report& x) {
  return wire::inspect_as_text(f, x, "bg_jobs::stats_report");
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, workflow& x) {
  return wire::inspect_as_text(f, x, "bg_jobs::workflow");
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, workflow_ids& x) {
  return wire::inspect_as_text(f, x, "bg_jobs::workflow_ids");
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, workflow_info& x) {
  return wire::inspect_as_text(f, x, "bg_jobs::workflow_info");
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, workflow_query& x) {
  return wire::inspect_as_text(f, x, "bg_jobs::workflow_query");
}

/// Announces every bg_jobs message type (and the `bg_jobs` error category)
/// to `cfg`: needed on both sides of a remote connection.
void add_message_types(caf::actor_system_config& cfg);

} // namespace bg_jobs
