#include "bg_jobs/adapters/detail/prepared_job.hpp"

#include <algorithm>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

caf::expected<prepared_job> prepare_job(const job_request& request,
                                        timestamp now) {
  auto text = request.validate(now);
  if (!text)
    return std::move(text.error());
  prepared_job p;
  p.j.name = request.name();
  p.j.payload = request.payload();
  p.j.created_at = now;
  p.j.available_at = request.resolve_available_at(now);
  p.j.priority = request.priority();
  p.j.concurrency_key = request.concurrency_key();
  p.j.second_concurrency_key = request.second_concurrency_key();
  p.j.meta = request.meta();
  for (auto& t : request.tags())
    if (std::find(p.j.tags.begin(), p.j.tags.end(), t) == p.j.tags.end())
      p.j.tags.push_back(t);
  p.j.trace = request.trace();
  p.payload = std::move(*text);
  p.attrs = attrs_text(p.j.meta, p.j.tags, p.j.trace);
  return p;
}

nlohmann::json attrs_json(const nlohmann::json& meta,
                          const std::vector<std::string>& tags,
                          const trace_context& trace) {
  nlohmann::json j = nlohmann::json::object();
  if (meta.is_object() && !meta.empty())
    j["meta"] = meta;
  if (!tags.empty())
    j["tags"] = tags;
  if (!trace.traceparent.empty())
    j["traceparent"] = trace.traceparent;
  if (!trace.tracestate.empty())
    j["tracestate"] = trace.tracestate;
  return j;
}

std::string attrs_text(const nlohmann::json& meta,
                       const std::vector<std::string>& tags,
                       const trace_context& trace) {
  // Most jobs carry none: no JSON is built for them.
  if ((!meta.is_object() || meta.empty()) && tags.empty() &&
      trace.traceparent.empty() && trace.tracestate.empty())
    return {};
  return attrs_json(meta, tags, trace).dump();
}

void read_attrs(std::string_view text, nlohmann::json& meta,
                 std::vector<std::string>& tags, trace_context& trace) {
  meta = nlohmann::json::object();
  tags.clear();
  trace = {};
  if (text.empty() || exceeds_payload_depth(text))
    return;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object())
    return;
  if (auto m = j.find("meta"); m != j.end() && m->is_object())
    meta = *m;
  if (auto t = j.find("tags"); t != j.end() && t->is_array())
    for (auto& tag : *t)
      if (tag.is_string())
        tags.push_back(tag.get<std::string>());
  if (auto tp = j.find("traceparent"); tp != j.end() && tp->is_string())
    trace.traceparent = tp->get<std::string>();
  if (auto ts = j.find("tracestate"); ts != j.end() && ts->is_string())
    trace.tracestate = ts->get<std::string>();
}

caf::expected<std::optional<absorbed_job>>
absorb(const job& held, const prepared_job& incoming,
       const unique_options& u) {
  switch (u.on_conflict) {
    case unique_conflict::keep:
      return std::optional<absorbed_job>{};
    case unique_conflict::debounce: {
      auto at = incoming.j.available_at;
      if (u.max_wait)
        at = std::min(at, held.created_at + *u.max_wait);
      return std::optional<absorbed_job>{{incoming.payload, at}};
    }
    case unique_conflict::throttle:
      return std::optional<absorbed_job>{
          {incoming.payload, held.available_at}};
    case unique_conflict::merge: {
      auto merged = held.payload.is_object() ? held.payload
                                             : nlohmann::json::object();
      merged.merge_patch(incoming.j.payload);
      auto text = merged.dump();
      if (text.size() > max_payload_size)
        return make_error(errc::invalid_payload,
                          "the merged payload is " +
                              std::to_string(text.size()) +
                              " bytes; the limit is " +
                              std::to_string(max_payload_size));
      return std::optional<absorbed_job>{{std::move(text), held.available_at}};
    }
  }
  return std::optional<absorbed_job>{};
}

caf::expected<std::vector<prepared_job>>
prepare_jobs(const std::vector<job_request>& requests, timestamp now) {
  std::vector<prepared_job> out;
  out.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    auto p = prepare_job(requests[i], now);
    if (!p)
      return make_error(code_of(p.error()), "request " + std::to_string(i) +
                                                ": " + message_of(p.error()));
    out.push_back(std::move(*p));
  }
  return out;
}

} // namespace bg_jobs::detail
