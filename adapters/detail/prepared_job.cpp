#include "bg_jobs/adapters/detail/prepared_job.hpp"

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
  p.payload = std::move(*text);
  return p;
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
