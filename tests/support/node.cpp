// A bg_jobs node for tests that need several processes on one store. It runs
// queue "work" (job name "work") until the store holds no pending or
// reserved job, then shuts down and exits 0 (3 on timeout).
//
//   test_node --store <sqlite-path | postgres-url> --node NAME
//             [--concurrency N] [--record] [--sleep-ms N] [--timeout-ms N]
//             [--lease-ms N] [--report FILE]
//   test_node --store <sqlite-path | postgres-url> --enqueue-unique N
//
// --enqueue-unique makes the node enqueue one unique job ("once") N times
// from 10 threads through its instance, run nothing, and exit 0 when every
// enqueue returned a job (1 otherwise).
//
// --default-name leaves the node name to bg_jobs (--node is then only a
// label in messages) and records the name bg_jobs chose.
// --record makes each run insert (job_id, node) into the table `runs` of the
// same store, so that a test can count how often each job ran. --report
// writes "rescued <n>" (jobs this node rescued from dead nodes) to FILE.
// --no-record turns an earlier --record off. --start-log FILE appends each job id to FILE as its handler starts (one
// write, so that a test sees what started before a pause).
// --key-limit N limits queue "work" to N running jobs per concurrency key
// (across every node). --span-log FILE appends "S <job> <key> <us>" as a
// handler starts and "E <job> <key> <us>" as it ends (wall-clock
// microseconds; one write each).
// Then the job's reservation time, ms since the epoch.
// --sequence makes queue "work" sequenced (a failed job holds its key; no
// retries), and a job whose payload has "fail": true fails after its span.
// --until-left N: the node is done when N jobs are left pending (those a
// blocked key holds back) and none is reserved.
// --rate A:P:B gives queue "work" the rate limit "api" (A starts per P ms,
// bursts of B); a job whose payload has "back_off_ms": N and "once": PATH
// reports back-pressure for N ms the first time any node runs it (PATH is
// created then). --prefetch N sets how many jobs the queue holds ahead.
// --run-ms N runs for N ms, whatever the store holds, then shuts down;
// --stop-file PATH runs until PATH exists (or the timeout), then shuts down.
// --prune-ms N prunes history every N ms (so that every periodic service
// is busy). On PostgreSQL the node's connections carry its name as their
// application_name, so that a test can find (and kill) them.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <pqxx/pqxx>
#include <sqlite3.h>

#include "bg_jobs/actors/builder.hpp"
#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"
#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"
#include "bg_jobs/adapters/detail/store_spec.hpp"
#include "bg_jobs/core/errc.hpp"

using namespace std::chrono_literals;

namespace {

void record_run(const std::string& store, const std::string& node,
                int64_t job_id) {
  if (bg_jobs::is_postgres_spec(store)) {
    // Recorded once the server takes it: a killed backend or a restarting
    // server delays the run instead of failing the job (a failure would be
    // this harness's, not the library's).
    thread_local std::unique_ptr<pqxx::connection> conn;
    auto deadline = std::chrono::steady_clock::now() + 60s;
    for (;;) {
      try {
        if (!conn)
          conn = std::make_unique<pqxx::connection>(store);
        pqxx::work tx{*conn};
        tx.exec_params("INSERT INTO runs (job_id, node) VALUES ($1, $2)",
                       job_id, node);
        tx.commit();
        return;
      } catch (...) {
        conn.reset();
        if (std::chrono::steady_clock::now() > deadline)
          throw;
        std::this_thread::sleep_for(20ms);
      }
    }
  }
  thread_local sqlite3* db = nullptr;
  if (!db) {
    sqlite3_open(store.c_str(), &db);
    sqlite3_busy_timeout(db, 10000);
  }
  auto sql = "INSERT INTO runs (job_id, node) VALUES (" +
             std::to_string(job_id) + ", '" + node + "')";
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
    throw std::runtime_error(sqlite3_errmsg(db));
}

} // namespace

int main(int argc, char** argv) {
  std::string store, node = "node", report;
  std::chrono::milliseconds lease{30000};
  int concurrency = 10, sleep_ms = 0;
  bool record = false;
  bool succeeded_history = true;
  std::chrono::milliseconds prune_every{60000};
  int start_log = -1;
  int enqueue_unique = 0;
  int key_limit = 0;
  int span_log = -1;
  bool default_name = false;
  bool sequence = false;
  int64_t until_left = 0;
  int64_t run_ms = -1;
  std::string stop_file;
  std::optional<bg_jobs::rate_limit> rate;
  int prefetch = -1;
  std::chrono::milliseconds timeout{60000};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string{argv[++i]} : ""; };
    if (arg == "--store")
      store = next();
    else if (arg == "--node")
      node = next();
    else if (arg == "--concurrency")
      concurrency = std::stoi(next());
    else if (arg == "--sleep-ms")
      sleep_ms = std::stoi(next());
    else if (arg == "--timeout-ms")
      timeout = std::chrono::milliseconds{std::stol(next())};
    else if (arg == "--lease-ms")
      lease = std::chrono::milliseconds{std::stol(next())};
    else if (arg == "--report")
      report = next();
    else if (arg == "--record")
      record = true;
    else if (arg == "--no-record")
      record = false;
    else if (arg == "--no-history")
      succeeded_history = false;
    else if (arg == "--start-log")
      start_log = ::open(next().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    else if (arg == "--key-limit")
      key_limit = std::stoi(next());
    else if (arg == "--span-log")
      span_log = ::open(next().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    else if (arg == "--prune-ms")
      prune_every = std::chrono::milliseconds{std::stol(next())};
    else if (arg == "--default-name")
      default_name = true;
    else if (arg == "--sequence")
      sequence = true;
    else if (arg == "--until-left")
      until_left = std::stol(next());
    else if (arg == "--run-ms")
      run_ms = std::stol(next());
    else if (arg == "--stop-file")
      stop_file = next();
    else if (arg == "--rate") {
      auto v = next();
      auto c1 = v.find(':'), c2 = v.rfind(':');
      rate = bg_jobs::rate_limit{
          "api", std::stol(v.substr(0, c1)),
          std::chrono::milliseconds{std::stol(v.substr(c1 + 1, c2 - c1 - 1))},
          std::stol(v.substr(c2 + 1))};
    } else if (arg == "--prefetch")
      prefetch = std::stoi(next());
    else if (arg == "--enqueue-unique")
      enqueue_unique = std::stoi(next());
  }
  if (store.empty()) {
    std::cerr << "usage: test_node --store <path|url> --node NAME ..."
              << std::endl;
    return 2;
  }
  // libpq names this process's connections after the node.
  setenv("PGAPPNAME", node.c_str(), 1);
  auto factory = bg_jobs::factory_for(store, {}, "bg_jobs", succeeded_history);
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  int rc = 0;
  std::atomic<int> rescued{0};
  if (enqueue_unique > 0) {
    caf::actor_system sys{cfg};
    auto bg = bg_jobs::builder{factory}
                  .with_node_name(node)
                  .with_enqueued_job_names({"once"})
                  .build(sys);
    if (!bg) {
      std::cerr << node << ": " << bg_jobs::describe(bg.error()) << std::endl;
      return 1;
    }
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 10; ++t)
      threads.emplace_back([&, t] {
        for (int i = t; i < enqueue_unique; i += 10) {
          auto j = bg->enqueue(
              bg_jobs::job_request{"once", {{"k", 1}}}.with_unique());
          if (!j) {
            std::cerr << bg_jobs::describe(j.error()) << std::endl;
            ++failures;
          }
        }
      });
    for (auto& t : threads)
      t.join();
    bg->shutdown();
    return failures == 0 ? 0 : 1;
  }
  {
    caf::actor_system sys{cfg};
    auto spec = bg_jobs::queue_spec{"work"}
                    .with_max_concurrent_jobs(concurrency)
                    .with_poll_interval(50ms)
                    .with_worker(bg_jobs::worker{
                        "work",
                        [&](const bg_jobs::job& j) -> bg_jobs::outcome {
                          // The owner's first part: the name held.
                          auto held = j.reserved_by->substr(
                              0, j.reserved_by->find('/'));
                          if (start_log >= 0) {
                            auto line = std::to_string(j.id) + "\n";
                            if (::write(start_log, line.data(), line.size()) <
                                0)
                              throw std::runtime_error("start log");
                          }
                          auto span = [&](char what) {
                            if (span_log < 0)
                              return;
                            auto us = std::chrono::duration_cast<
                                          std::chrono::microseconds>(
                                          std::chrono::system_clock::now()
                                              .time_since_epoch())
                                          .count();
                            // Then when the claim counted it.
                            auto line = std::string(1, what) + " " +
                                        std::to_string(j.id) + " " +
                                        j.concurrency_key + " " +
                                        std::to_string(us) + " " +
                                        std::to_string(bg_jobs::to_unix_ms(
                                            j.reserved_at.value_or(
                                                bg_jobs::timestamp{}))) +
                                        "\n";
                            if (::write(span_log, line.data(), line.size()) <
                                0)
                              throw std::runtime_error("span log");
                          };
                          span('S');
                          if (j.payload.is_object() &&
                              j.payload.contains("back_off_ms")) {
                            auto once = j.payload.at("once").get<std::string>();
                            int fd = ::open(once.c_str(),
                                            O_WRONLY | O_CREAT | O_EXCL, 0644);
                            if (fd >= 0) {
                              ::close(fd);
                              span('B');
                              return bg_jobs::outcome::rate_limited(
                                  std::chrono::milliseconds{
                                      j.payload.at("back_off_ms")
                                          .get<int64_t>()});
                            }
                          }
                          if (sleep_ms > 0)
                            std::this_thread::sleep_for(
                                std::chrono::milliseconds{sleep_ms});
                          span('E');
                          if (record)
                            record_run(store, held, j.id);
                          if (j.payload.is_object() &&
                              j.payload.value("fail", false))
                            throw std::runtime_error("asked to fail");
                          return bg_jobs::outcome::success();
                        }});
    if (key_limit > 0)
      spec.with_key_limit(key_limit);
    if (sequence)
      spec.with_sequences().with_max_retries(0);
    if (rate)
      spec.with_rate_limit(*rate);
    if (prefetch >= 0)
      spec.with_prefetch(prefetch);
    auto config = bg_jobs::builder{factory}
                      .with_node_lease(lease)
                      .with_retention(bg_jobs::prune_params{}, prune_every)
                      .with_event_listener([&](const bg_jobs::event& e) {
                        if (e.kind == bg_jobs::event_kind::job_rescued)
                          ++rescued;
                      })
                      .with_queue(spec);
    if (!default_name)
      config.with_node_name(node);
    auto bg = config.build(sys);
    if (!bg) {
      std::cerr << node << ": " << bg_jobs::describe(bg.error()) << std::endl;
      return 1;
    }
    // Watches the store on a connection of its own, opened again after
    // it was lost.
    std::unique_ptr<bg_jobs::db_adapter> db;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int idle_checks = 0;
    if (run_ms >= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds{run_ms});
      idle_checks = 2;
    }
    if (!stop_file.empty()) {
      while (::access(stop_file.c_str(), F_OK) != 0) {
        if (std::chrono::steady_clock::now() > deadline) {
          rc = 3;
          break;
        }
        std::this_thread::sleep_for(50ms);
      }
      idle_checks = 2;
    }
    while (idle_checks < 2) {
      if (std::chrono::steady_clock::now() > deadline) {
        rc = 3;
        break;
      }
      std::this_thread::sleep_for(50ms);
      if (!db) {
        if (auto opened = factory())
          db = std::move(*opened);
        continue;
      }
      auto st = db->stats();
      if (!st)
        db.reset();
      idle_checks =
          st && st->pending() + st->reserved == until_left ? idle_checks + 1
                                                           : 0;
    }
    bg->shutdown();
  }
  if (!report.empty())
    std::ofstream{report} << "rescued " << rescued.load() << "\n";
  std::cerr << node << (rc == 0 ? ": done" : ": timed out") << std::endl;
  return rc;
}
