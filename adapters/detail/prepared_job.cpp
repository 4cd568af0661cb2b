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
