#include "bg_jobs/testing/testing.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <random>
#include <set>

#include "bg_jobs/actors/detail/job_rules.hpp"
#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"
#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"
#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::testing {

namespace {

caf::expected<std::unique_ptr<db_adapter>> open_migrated(adapter_factory& f) {
  auto db = f();
  if (!db)
    return std::move(db.error());
  if (auto up = (*db)->migrate_up(); !up)
    return std::move(up.error());
  return std::move(*db);
}

} // namespace

test_store::test_store(test_store&&) noexcept = default;
test_store& test_store::operator=(test_store&&) noexcept = default;

test_store::~test_store() {
  db_.reset();
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

caf::expected<test_store>
test_store::sqlite(std::shared_ptr<bg_jobs::clock> clk) {
  auto pattern =
      (std::filesystem::temp_directory_path() / "bg_jobs-test-XXXXXX").string();
  if (!mkdtemp(pattern.data()))
    return make_error(errc::database_unavailable,
                      "cannot make a temporary directory for a test store");
  test_store s;
  s.dir_ = pattern;
  sqlite_options o;
  o.path = (s.dir_ / "jobs.db").string();
  if (clk)
    o.clock = std::move(clk);
  s.factory_ = sqlite_adapter::factory(o);
  auto db = open_migrated(s.factory_);
  if (!db)
    return std::move(db.error());
  s.db_ = std::move(*db);
  return s;
}

caf::expected<test_store>
test_store::postgres(const std::string& url, const std::string& schema,
                     std::shared_ptr<bg_jobs::clock> clk) {
  test_store s;
  postgres_options o;
  o.url = url;
  o.schema = schema;
  if (clk)
    o.clock = std::move(clk);
  s.factory_ = postgres_adapter::factory(o);
  auto db = open_migrated(s.factory_);
  if (!db)
    return std::move(db.error());
  s.db_ = std::move(*db);
  return s;
}

completion perform_job(const worker& w, nlohmann::json payload, int attempt,
                       const queue_spec& queue) {
  auto spec = queue;
  spec.with_worker(w);
  detail::job_rules rules{spec, "testing"};
  job j;
  j.name = w.job_name();
  j.payload = std::move(payload);
  j.attempts = attempt;
  j.created_at = j.available_at = clock::system()->now();
  j.reserved_by = rules.owner();
  std::minstd_rand rng{std::random_device{}()};
  auto start = std::chrono::steady_clock::now();
  auto o = w.run(j);
  return rules
      .decide(j, o, clock::system()->now(), rng,
              std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - start))
      .change;
}

caf::expected<std::vector<job_record>>
enqueued(db_adapter& db, const std::string& name,
         const nlohmann::json& subset) {
  std::vector<job_record> out;
  std::set<int64_t> seen;
  // Scheduled first: a job may become due between the two reads, never the
  // other way round.
  for (auto state : {job_state::scheduled, job_state::waiting}) {
    job_query q;
    q.state = state;
    q.names = {name};
    q.newest_first = false;
    q.limit = 1000;
    for (;;) {
      auto page = db.list_jobs(q);
      if (!page)
        return std::move(page.error());
      for (auto& r : page->jobs) {
        bool holds = r.payload.is_object() || subset.empty();
        if (r.payload.is_object())
          for (auto& [key, value] : subset.items())
            if (!r.payload.contains(key) || r.payload.at(key) != value) {
              holds = false;
              break;
            }
        if (holds && seen.insert(r.id).second)
          out.push_back(std::move(r));
      }
      if (page->next.empty())
        break;
      q.after = page->next;
    }
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) {
    return a.created_at != b.created_at ? a.created_at < b.created_at
                                        : a.id < b.id;
  });
  return out;
}

caf::expected<drain_result> drain_queue(db_adapter& db, const queue_spec& spec,
                                        std::shared_ptr<bg_jobs::clock> clk,
                                        int max_attempts,
                                        std::shared_ptr<const keyring> keys) {
  if (auto err = spec.validate())
    return err;
  detail::job_rules rules{spec, "testing/" + spec.name() + "/drain",
                          std::move(keys)};
  if (!clk)
    clk = db.store_clock();
  if (!clk)
    clk = clock::system();
  std::minstd_rand rng{std::random_device{}()};
  drain_result result;
  while (result.ran() < max_attempts) {
    auto got =
        db.reserve_jobs({rules.job_names(), 1, rules.owner(), spec.name()});
    if (!got)
      return std::move(got.error());
    if (got->empty())
      break;
    auto& j = got->front();
    auto& policy = rules.policy(j);
    completion change;
    if (policy.exhausted(j)) {
      change = detail::pending_outcome::of(
                   policy.on_exhausted(j, rules.owner()), j, spec.name())
                   .change;
    } else {
      auto start = std::chrono::steady_clock::now();
      auto o = outcome::success();
      if (auto sealed = rules.open(j))
        o = outcome::failure(describe(sealed));
      else
        o = rules.worker_of(j.name)->run(
            j, job_context{nullptr, nullptr,
                           [&db, id = j.id] { return db.parent_outputs(id); },
                           // Every report is stored, none held back.
                           [&db, id = j.id, owner = j.reserved_by.value_or(""),
                            attempt = j.attempts](double fraction,
                                                  std::string text)
                               -> caf::error {
                             auto r = db.record_progress(id, owner, attempt,
                                                         fraction, text);
                             if (!r)
                               return std::move(r.error());
                             return caf::none;
                           }});
      change = rules
                   .decide(j, o, clk->now(), rng,
                           std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::steady_clock::now() - start))
                   .change;
    }
    auto applied = db.complete_jobs({change});
    if (!applied)
      return std::move(applied.error());
    switch (change.what) {
    case completion::kind::succeeded:
      ++result.succeeded;
      break;
    case completion::kind::failed:
      ++result.failed;
      break;
    case completion::kind::retry:
      ++result.retried;
      break;
    case completion::kind::snooze:
      ++result.snoozed;
      break;
    case completion::kind::cancelled:
      ++result.cancelled;
      break;
    }
  }
  return result;
}

} // namespace bg_jobs::testing
