#pragma once

// Helpers for testing one's own workers, as Oban.Testing and River's
// rivertest do: run a handler as a queue would and see what the library
// would record, see what a piece of code enqueued, and drain a queue's jobs
// on the test's thread against a real store, without starting a node.
// Link `bg_jobs::testing`.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "bg_jobs/adapters/db_adapter.hpp"
#include "bg_jobs/core/clock.hpp"
#include "bg_jobs/core/completion.hpp"
#include "bg_jobs/core/keyring.hpp"
#include "bg_jobs/core/job.hpp"
#include "bg_jobs/core/queue_spec.hpp"
#include "bg_jobs/core/typed_job.hpp"
#include "bg_jobs/core/worker.hpp"

namespace bg_jobs::testing {

/// A store for one test: a fresh SQLite file in a temporary directory
/// (removed with the object), or a PostgreSQL database by URL; migrated.
/// Its connections date rows by `clk` when given (a `manual_clock` moves
/// delayed jobs and retries into view).
class test_store {
public:
  static caf::expected<test_store>
  sqlite(std::shared_ptr<bg_jobs::clock> clk = nullptr);
  /// In `schema` (created if need be; empty: the URL's default).
  static caf::expected<test_store>
  postgres(const std::string& url, const std::string& schema = {},
           std::shared_ptr<bg_jobs::clock> clk = nullptr);

  test_store(test_store&&) noexcept;
  test_store& operator=(test_store&&) noexcept;
  ~test_store();

  /// Opens connections to the store (for a node: `builder{store.factory()}`).
  const adapter_factory& factory() const { return factory_; }
  /// One connection, opened with the store.
  db_adapter& db() const { return *db_; }

private:
  test_store() = default;
  adapter_factory factory_;
  std::unique_ptr<db_adapter> db_;
  std::filesystem::path dir_;
};

/// What the library would record for one attempt (number `attempt`) of a
/// job of `w` with `payload`: the handler runs on the caller's thread as an
/// executor runs it (an exception is a failure), and the retry policy of
/// `queue` (or the worker's own) decides: `succeeded`, `retry` (with the
/// time its backoff gives), `failed`, `snooze` or `cancelled`, with the
/// error. No store, no actor: progress reports are checked, then dropped.
completion perform_job(const worker& w,
                       nlohmann::json payload = nlohmann::json::object(),
                       int attempt = 1,
                       const queue_spec& queue = queue_spec{"testing"});

/// `perform_job` with a typed job's arguments.
template <job_args Args>
completion perform_job(const worker& w, const Args& args, int attempt = 1,
                       const queue_spec& queue = queue_spec{"testing"}) {
  return perform_job(w, nlohmann::json(args), attempt, queue);
}

/// The unreserved jobs named `name` in `db` (due now or later) whose
/// payload holds every key of `subset` with an equal value, oldest first.
caf::expected<std::vector<job_record>>
enqueued(db_adapter& db, const std::string& name,
         const nlohmann::json& subset = nlohmann::json::object());

/// `enqueued` for a typed job: its name, and its arguments as the subset.
template <job_args Args>
caf::expected<std::vector<job_record>> enqueued(db_adapter& db,
                                                const Args& args) {
  return enqueued(db, std::string{Args::job_name}, nlohmann::json(args));
}

/// What `drain_queue` did, by how each attempt ended.
struct drain_result {
  int succeeded = 0;
  /// Failed for good (retries used up, or discarded).
  int failed = 0;
  /// Attempts that failed and were retried (run again in the drain when
  /// their backoff ended in it, else waiting).
  int retried = 0;
  int snoozed = 0;
  int cancelled = 0;

  int ran() const { return succeeded + failed + retried + snoozed + cancelled; }
};

/// Runs the jobs of `spec`'s workers that are due in `db`, one at a time on
/// the caller's thread, as the queue would: its workers, its retry policy,
/// the same reservation and completion in the store. What is due is what
/// the store's clock says (a test that opened the store with a
/// `manual_clock` moves retries and delayed jobs into the drain by
/// advancing it, and passes it here so that retries are dated by it too).
/// A job whose retry falls due while draining runs again; one due later
/// stays. Stops when no job is due, or after `max_attempts` attempts (a job
/// that snoozes for ever). Jobs of other names are left alone. `keys`
/// opens encrypted payloads and metadata as a node with those keys would
/// (`builder::with_encryption`); a value that does not open fails the
/// attempt. A handler reads its parents' outputs
/// (`job_context::parent_outputs`), and each progress report it makes is
/// stored (none held back: `db.get_job` shows the last).
caf::expected<drain_result>
drain_queue(db_adapter& db, const queue_spec& spec,
            std::shared_ptr<bg_jobs::clock> clk = nullptr,
            int max_attempts = 10000,
            std::shared_ptr<const keyring> keys = nullptr);

} // namespace bg_jobs::testing
