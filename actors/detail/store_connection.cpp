#include "bg_jobs/actors/detail/store_connection.hpp"

#include "bg_jobs/actors/detail/spare_connections.hpp"

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

std::shared_ptr<db_adapter> store_connection::get() {
  if (db_)
    return db_;
  auto now = std::chrono::steady_clock::now();
  if (now < next_attempt_)
    return nullptr;
  if (ctx_.spares)
    if (auto spare = ctx_.spares->take(who_)) {
      db_ = std::move(spare);
      return db_;
    }
  auto conn = ctx_.connect();
  if (!conn) {
    report(who_ + " cannot connect: " + describe(conn.error()) +
           "; retrying in " + std::to_string(backoff_.count()) + " ms");
    next_attempt_ = now + backoff_;
    backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds{5000});
    lost_ = true;
    return nullptr;
  }
  backoff_ = std::chrono::milliseconds{50};
  db_ = std::shared_ptr<db_adapter>{std::move(*conn)};
  if (lost_) {
    lost_ = false;
    event e{event_kind::db_reconnected};
    e.queue = queue_;
    e.message = who_ + " is connected to the store again";
    ctx_.emit(std::move(e));
  }
  return db_;
}

bool store_connection::outcome_unknown(const caf::error& err) {
  return code_of(err) == errc::connection_lost;
}

void store_connection::failed(const caf::error& err, const std::string& what) {
  report(what + ": " + describe(err));
  auto code = code_of(err);
  if (code == errc::connection_lost || code == errc::database_unavailable) {
    db_.reset();
    lost_ = true;
  }
}

caf::error
store_connection::run_now(const std::string& what,
                          const std::function<caf::error(db_adapter&)>& fn) {
  caf::error err;
  for (int round = 0; round < 2; ++round) {
    if (round > 0)
      next_attempt_ = {};
    auto db = get();
    if (!db)
      continue;
    err = fn(*db);
    if (!err)
      return err;
    failed(err, what);
    if (!db_ && round == 0)
      continue;
    return err;
  }
  if (!err)
    err = make_error(errc::database_unavailable, what + ": no connection");
  return err;
}

void store_connection::report(std::string message) const {
  event e{event_kind::db_error};
  e.queue = queue_;
  e.message = std::move(message);
  ctx_.emit(std::move(e));
}

} // namespace bg_jobs::detail
