#include "bg_jobs/adapters/db_adapter.hpp"

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

caf::expected<void> db_adapter::check_schema() {
  auto v = schema_version();
  if (!v)
    return std::move(v.error());
  if (*v == 0)
    return make_error(errc::schema_missing,
                      "the bg_jobs tables do not exist: run migrate_up");
  if (*v < schema_version_current)
    return make_error(
        errc::schema_missing,
        "schema version " + std::to_string(*v) + " is older than " +
            std::to_string(schema_version_current) + ": run migrate_up");
  if (*v > schema_version_current)
    return make_error(errc::schema_too_new,
                      "schema version " + std::to_string(*v) +
                          " is newer than this bg_jobs understands (" +
                          std::to_string(schema_version_current) + ")");
  return caf::unit;
}

caf::expected<complete_reserve_result>
db_adapter::complete_and_reserve(const std::vector<completion>& completions,
                                 const reserve_params& params) {
  if (auto err = check_reserve(params))
    return err;
  complete_reserve_result result;
  if (!completions.empty()) {
    auto r = complete_jobs(completions);
    if (!r)
      return std::move(r.error());
    result.applied = std::move(*r);
  }
  auto jobs = reserve_jobs(params);
  if (!jobs) {
    if (completions.empty())
      return std::move(jobs.error());
    result.reserve_error = std::move(jobs.error());
    return result;
  }
  result.reserved = std::move(*jobs);
  return result;
}

caf::error db_adapter::check_limit(int limit) {
  if (limit > 0)
    return caf::none;
  return make_error(errc::invalid_argument,
                    "limit must be positive, got " + std::to_string(limit));
}

caf::error db_adapter::check_reserve(const reserve_params& params) {
  if (params.limit <= 0)
    return make_error(errc::invalid_argument,
                      "reserve limit must be positive, got " +
                          std::to_string(params.limit));
  if (params.reserved_by.empty())
    return make_error(errc::invalid_argument, "reserved_by is empty");
  return caf::none;
}

caf::expected<std::vector<std::string>>
db_adapter::await_wakeups(std::chrono::milliseconds) {
  return make_error(errc::invalid_argument,
                    "this store cannot notify other processes");
}

namespace {

caf::expected<void> complete_one(db_adapter& db, completion c) {
  std::vector<completion> cs{std::move(c)};
  auto applied = db.complete_jobs(cs);
  if (!applied)
    return std::move(applied.error());
  if (applied->empty() || !applied->front())
    return make_error(errc::reservation_lost,
                      "job " + std::to_string(cs.front().job_id) +
                          " is not in jobs with the expected reservation");
  return caf::unit;
}

} // namespace

caf::expected<void> db_adapter::move_job_to_succeeded(const job& j) {
  completion c;
  c.what = completion::kind::succeeded;
  c.job_id = j.id;
  c.reserved_by = j.reserved_by;
  return complete_one(*this, std::move(c));
}

caf::expected<void> db_adapter::move_job_to_failed(const job& j,
                                                   const std::string& exc) {
  completion c;
  c.what = completion::kind::failed;
  c.job_id = j.id;
  c.reserved_by = j.reserved_by;
  c.error = exc;
  return complete_one(*this, std::move(c));
}

} // namespace bg_jobs
