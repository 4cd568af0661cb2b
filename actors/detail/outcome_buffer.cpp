#include "bg_jobs/actors/detail/outcome_buffer.hpp"

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

pending_outcome pending_outcome::of(decision d, job j, const std::string& queue,
                                    std::chrono::microseconds duration) {
  pending_outcome p;
  p.change = std::move(d.change);
  p.report.kind = d.report;
  p.report.queue = queue;
  p.report.message = std::move(d.message);
  p.report.duration = duration;
  p.report.job = std::move(j);
  return p;
}

void outcome_buffer::append(std::vector<pending_outcome> xs) {
  if (pending_.empty()) {
    pending_ = std::move(xs);
    return;
  }
  for (auto& x : xs)
    pending_.push_back(std::move(x));
}

std::vector<int64_t> outcome_buffer::job_ids() const {
  std::vector<int64_t> ids;
  ids.reserve(pending_.size());
  for (auto& p : pending_)
    ids.push_back(p.change.job_id);
  return ids;
}

std::vector<completion> outcome_buffer::changes() const {
  std::vector<completion> xs;
  xs.reserve(pending_.size());
  for (auto& p : pending_)
    xs.push_back(p.change);
  return xs;
}

void outcome_buffer::report(const std::vector<bool>& applied) {
  auto n = std::min(applied.size(), pending_.size());
  for (size_t i = 0; i < n; ++i) {
    // A success the handler committed in its own transaction has left
    // `jobs` already: the change finds nothing to do.
    if (applied[i] || pending_[i].change.committed) {
      ctx_.emit(std::move(pending_[i].report));
      continue;
    }
    event e{event_kind::queue_error};
    e.queue = queue_;
    e.message = "job " + std::to_string(pending_[i].change.job_id) +
                " is no longer reserved by " + owner_ +
                "; its outcome was discarded";
    ctx_.emit(std::move(e));
  }
  pending_.erase(pending_.begin(),
                 pending_.begin() + static_cast<ptrdiff_t>(n));
}

caf::error outcome_buffer::flush(store_connection& store, bool now) {
  if (pending_.empty())
    return caf::none;
  auto persist = [this](db_adapter& db) -> caf::error {
    auto applied = db.complete_jobs(changes());
    if (!applied)
      return std::move(applied.error());
    report(*applied);
    return caf::none;
  };
  if (now)
    return store.run_now("recording job outcomes", persist);
  auto db = store.get();
  if (!db)
    return make_error(errc::database_unavailable, "no connection");
  auto err = persist(*db);
  if (err)
    store.failed(err, "recording job outcomes");
  return err;
}

} // namespace bg_jobs::detail
