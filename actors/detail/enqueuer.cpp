#include "bg_jobs/actors/detail/enqueuer.hpp"

#include <map>

#include <set>

#include <caf/send.hpp>

#include "bg_jobs/actors/detail/sealing.hpp"
#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

enqueuer::enqueuer(node_context ctx, std::string who)
    : ctx_(ctx), store_(std::move(ctx), std::move(who), {}) {}

caf::error enqueuer::check_name(const job_request& r) {
  if (ctx_.plan->accepts(r.name())) {
    // A cost its queue's rate limit could never admit, where this node
    // runs the queue (elsewhere the claim charges it as the burst).
    if (r.rate_cost() > 1)
      if (auto q = ctx_.plan->queue_of_job.find(r.name());
          q != ctx_.plan->queue_of_job.end())
        for (auto& spec : ctx_.plan->queues)
          if (spec.name() == q->second && spec.rate_limit() &&
              r.rate_cost() > spec.rate_limit()->bucket())
            return make_error(
                errc::invalid_argument,
                "the rate cost " + std::to_string(r.rate_cost()) +
                    " is above the burst of rate limit '" +
                    spec.rate_limit()->name + "' (" +
                    std::to_string(spec.rate_limit()->bucket()) + ")");
    return caf::none;
  }
  event e{event_kind::no_worker_for_job};
  e.message = "no worker for job '" + printable(r.name()) + "'";
  ctx_.emit(std::move(e));
  return make_error(errc::no_worker_for_job,
                    "no worker is registered for job '" + printable(r.name()) +
                        "' (declare names enqueued for other processes with "
                        "with_enqueued_job_names)");
}

bool enqueuer::derives_key(const job_request& r) const {
  return r.concurrency_key().empty() && ctx_.plan->key_of_job.count(r.name());
}

caf::error enqueuer::derive_key(job_request& r) const {
  if (!derives_key(r))
    return caf::none;
  auto fail = [&](const std::string& why) {
    return make_error(errc::invalid_argument,
                      "the concurrency key of a job '" + printable(r.name()) +
                          "' " + why);
  };
  std::string key;
  try {
    key = ctx_.plan->key_of_job.at(r.name())(r.payload());
  } catch (const std::exception& ex) {
    return fail(std::string{"could not be derived: "} + ex.what());
  } catch (...) {
    return fail("could not be derived");
  }
  if (key.empty())
    return caf::none;
  if (auto problem = concurrency_key_problem(key); !problem.empty())
    return fail("derived from its payload " + problem);
  r.with_concurrency_key(std::move(key), r.second_concurrency_key());
  return caf::none;
}

caf::expected<std::shared_ptr<db_adapter>> enqueuer::connection() {
  if (auto db = store_.get())
    return db;
  return make_error(errc::database_unavailable,
                    "the store is unreachable; retrying in " +
                        std::to_string(store_.backoff().count()) + " ms");
}

std::optional<std::chrono::milliseconds> enqueuer::due_in(timestamp at) const {
  // Beyond an hour the queues' polls find it; no timer waits that long.
  auto wait =
      std::chrono::duration_cast<std::chrono::milliseconds>(at - ctx_.now());
  if (wait.count() <= 0 || wait >= std::chrono::hours{1})
    return std::nullopt;
  return wait + std::chrono::milliseconds{1};
}

bool enqueuer::runs_here(const std::string& job_name) const {
  return ctx_.plan->queue_of_job.count(job_name) > 0;
}

std::string enqueuer::queue_of(const std::string& job_name) const {
  auto i = ctx_.plan->queue_of_job.find(job_name);
  return i == ctx_.plan->queue_of_job.end() ? std::string{} : i->second;
}

action_sink in_node(node_context ctx) {
  return [ctx](action_effects fx) {
    auto router = ctx.dir->get(actor_directory::router);
    if (router) {
      for (auto& name : fx.wake)
        caf::anon_send(router, wake_atom::value, name);
      for (auto& c : fx.cancels)
        caf::anon_send(router, cancel_atom::value, c.job_id, c.reason,
                       c.job_name);
    }
    for (auto& e : fx.events)
      ctx.emit(std::move(e));
  };
}

void enqueuer::wake(const std::string& job_name,
                    std::chrono::milliseconds delay) {
  auto router = ctx_.dir->get(actor_directory::router);
  if (!router)
    return;
  if (delay.count() == 0)
    caf::anon_send(router, wake_atom::value, job_name);
  else
    caf::delayed_anon_send(router, delay, wake_atom::value, job_name);
}

caf::expected<job> enqueuer::enqueue(const job_request& given) {
  if (auto err = check_name(given))
    return err;
  std::optional<job_request> keyed;
  if (derives_key(given)) {
    keyed = given;
    if (auto err = derive_key(*keyed))
      return err;
  }
  const job_request& plain = keyed ? *keyed : given;
  auto sealed = sealed_request(plain, ctx_.plan->keys.get());
  if (!sealed)
    return std::move(sealed.error());
  const job_request& r = *sealed ? **sealed : plain;
  auto db = connection();
  if (!db)
    return std::move(db.error());
  auto j = (*db)->enqueue_job(r);
  if (!j) {
    store_.failed(j.error(), "enqueueing a job of '" + r.name() + "'");
    return j;
  }
  // The caller and the listeners see the values it gave, not the sealed.
  if (*sealed)
    open_job(*j, ctx_.plan->keys.get());
  if (j->conflict) {
    // A duplicate: nothing new to run, but its job may have a new time.
    if (runs_here(j->name))
      if (auto later = due_in(j->available_at))
        wake(j->name, *later);
    if (ctx_.bus->active()) {
      event e{event_kind::job_absorbed};
      e.queue = queue_of(j->name);
      e.job = *j;
      e.message = "absorbed by job " + std::to_string(j->id);
      ctx_.emit(std::move(e));
    }
    return j;
  }
  if (runs_here(j->name)) {
    wake(j->name, std::chrono::milliseconds{0});
    if (auto later = due_in(j->available_at))
      wake(j->name, *later);
  }
  if (ctx_.bus->active()) {
    event e{event_kind::job_enqueued};
    e.queue = queue_of(j->name);
    e.job = *j;
    ctx_.emit(std::move(e));
  }
  return j;
}

caf::expected<std::vector<int64_t>>
enqueuer::enqueue_many(const std::vector<job_request>& given) {
  std::optional<std::vector<job_request>> keyed;
  for (size_t i = 0; i < given.size(); ++i)
    if (derives_key(given[i])) {
      if (!keyed)
        keyed = given;
      if (auto err = derive_key((*keyed)[i]))
        return err;
    }
  const std::vector<job_request>& plain = keyed ? *keyed : given;
  std::optional<std::vector<job_request>> sealed;
  for (size_t i = 0; i < plain.size(); ++i) {
    auto one = sealed_request(plain[i], ctx_.plan->keys.get());
    if (!one)
      return make_error(code_of(one.error()), "request " + std::to_string(i) +
                                                  ": " +
                                                  message_of(one.error()));
    if (!*one)
      continue;
    if (!sealed)
      sealed = plain;
    (*sealed)[i] = std::move(**one);
  }
  const std::vector<job_request>& rs = sealed ? *sealed : plain;
  std::set<std::string> names;
  // The earliest delayed job of each name, to wake its queues when it is
  // due.
  std::map<std::string, std::chrono::milliseconds> delayed;
  auto now = ctx_.now();
  for (auto& r : rs) {
    if (auto err = check_name(r))
      return err;
    names.insert(r.name());
    if (auto later = due_in(r.resolve_available_at(now))) {
      auto [i, fresh] = delayed.emplace(r.name(), *later);
      if (!fresh)
        i->second = std::min(i->second, *later);
    }
  }
  auto db = connection();
  if (!db)
    return std::move(db.error());
  auto ids = (*db)->enqueue_jobs(rs);
  if (!ids) {
    store_.failed(ids.error(), "enqueueing jobs");
    return ids;
  }
  for (auto& n : names)
    if (runs_here(n))
      wake(n, std::chrono::milliseconds{0});
  for (auto& [n, later] : delayed)
    if (runs_here(n))
      wake(n, later);
  if (ctx_.bus->active())
    for (size_t i = 0; i < rs.size(); ++i) {
      event e{event_kind::job_enqueued};
      e.queue = queue_of(rs[i].name());
      job j;
      j.id = (*ids)[i];
      j.name = rs[i].name();
      j.payload = plain[i].payload(); // not the sealed one
      e.job = std::move(j);
      ctx_.emit(std::move(e));
    }
  return ids;
}

caf::expected<workflow_ids> enqueuer::add_tasks(int64_t id,
                                                const workflow& more) {
  return enqueue_workflow(more, id);
}

caf::expected<workflow_ids> enqueuer::enqueue_workflow(const workflow& given,
                                                       int64_t into) {
  workflow w{given.name()};
  auto now = ctx_.now();
  std::map<std::string, std::chrono::milliseconds> delayed;
  std::set<std::string> roots;
  for (auto& t : given.tasks()) {
    auto refuse = [&](const caf::error& err) {
      return make_error(code_of(err), "task '" + printable(t.name) + "': " +
                                          message_of(err));
    };
    job_request r = t.request;
    if (auto err = check_name(r))
      return refuse(err);
    if (derives_key(r))
      if (auto err = derive_key(r))
        return refuse(err);
    auto sealed = sealed_request(r, ctx_.plan->keys.get());
    if (!sealed)
      return refuse(sealed.error());
    if (*sealed)
      r = std::move(**sealed);
    if (t.after.empty()) {
      roots.insert(r.name());
      if (auto later = due_in(r.resolve_available_at(now))) {
        auto [i, fresh] = delayed.emplace(r.name(), *later);
        if (!fresh)
          i->second = std::min(i->second, *later);
      }
    }
    w.add(t.name, std::move(r), t.after);
  }
  for (size_t role = 0; role < 3; ++role)
    if (auto& c = given.callback(role)) {
      job_request r = *c;
      if (auto err = check_name(r))
        return err;
      if (derives_key(r))
        if (auto err = derive_key(r))
          return err;
      auto sealed = sealed_request(r, ctx_.plan->keys.get());
      if (!sealed)
        return std::move(sealed.error());
      if (*sealed)
        r = std::move(**sealed);
      if (role == 0)
        w.on_success(std::move(r));
      else if (role == 1)
        w.on_finish(std::move(r));
      else
        w.on_failure(std::move(r));
    }
  w.keep_open(given.open());
  auto db = connection();
  if (!db)
    return std::move(db.error());
  auto ids = into > 0 ? (*db)->add_tasks(into, w) : (*db)->enqueue_workflow(w);
  if (!ids) {
    store_.failed(ids.error(), "inserting a workflow");
    return ids;
  }
  for (auto& n : roots)
    if (runs_here(n))
      wake(n, std::chrono::milliseconds{0});
  for (auto& [n, later] : delayed)
    if (runs_here(n))
      wake(n, later);
  // A task added after a finished parent may be ready at once.
  if (into > 0)
    wake("*", std::chrono::milliseconds{0});
  if (into == 0 && ctx_.bus->active()) {
    event e{event_kind::workflow_started};
    e.workflow_id = ids->workflow_id;
    e.message = "workflow " + std::to_string(ids->workflow_id) + " '" +
                printable(w.name()) + "' with " +
                std::to_string(w.tasks().size()) + " tasks";
    ctx_.emit(std::move(e));
  }
  return ids;
}

} // namespace bg_jobs::detail
