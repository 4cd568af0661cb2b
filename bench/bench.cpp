// The bg_jobs benchmark.
//
//   bg_jobs_bench <drain|latency|enqueue> <default|fast>
//   bg_jobs_bench <backlog|steady-readers|steady-held> <default|fast>
//   bg_jobs_bench <workflows|nodes> <default|fast>
//
// Parameters come from the environment: BENCH_N (20000), BENCH_CONCURRENCY
// (10), BENCH_LAT_JOBS (500), BENCH_LAT_RATE (100 jobs/s), BENCH_LAT_IDLE_MS
// (2000), BENCH_LAT_GRACE_MS (15000), BENCH_ENQ_JOBS (5000),
// BENCH_TIMEOUT_MS (60000), BENCH_KEYS (0: the drain's jobs carry no
// concurrency key; N: job i carries key i mod N, and the queue limits each
// key to BENCH_KEY_LIMIT, by default twice the concurrency plus the
// queue's prefetch, which never binds: a key's reserved jobs are those
// running, those held ahead, and those finished whose outcomes go with the
// next claim, at most as many again), BENCH_RATE_LIMIT (0: no rate limit;
// N: the queue has the rate limit "bench" of N starts a second with
// bursts of N, which never binds for N large enough; the drain's jobs
// carry the rate key of their concurrency key, or none),
// BENCH_SUCCEEDED_HISTORY (1: succeeded jobs are
// kept in history, the default; 0: they are deleted, the adapters' option
// `succeeded_history`),
// and the store: BENCH_PG_URL (an empty
// PostgreSQL database) or BENCH_SQLITE_PATH (a file in an empty directory).
// Logs go to stderr; the last line on stdout is `RESULT {json}`.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_set>

#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/config.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <sqlite3.h>

#include "bg_jobs/actors/builder.hpp"
#include "bg_jobs/actors/system_config.hpp"
#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"
#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/scheduling/cron_schedule.hpp"

using namespace std::chrono;
using nlohmann::json;

namespace {

long env(const char* name, long fallback) {
  auto v = std::getenv(name);
  return v && *v ? std::atol(v) : fallback;
}

std::string env_text(const char* name) {
  auto v = std::getenv(name);
  return v ? v : "";
}

int64_t now_us() {
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch())
      .count();
}

double cpu_ms() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
}

struct settings {
  bool fast = false;
  bool postgres = false;
  std::string url;
  std::string path;
  long concurrency = 10;
  long keys = 0;
  long key_limit = 10;
  long rate = 0;
  bool succeeded_history = true;

  bg_jobs::adapter_factory factory() const {
    if (postgres) {
      bg_jobs::postgres_options opts{url};
      opts.succeeded_history = succeeded_history;
      return bg_jobs::postgres_adapter::factory(opts);
    }
    bg_jobs::sqlite_options opts{path};
    opts.succeeded_history = succeeded_history;
    // Durable across process crashes; FULL adds an fsync per commit.
    opts.synchronous_full = !fast;
    return bg_jobs::sqlite_adapter::factory(opts);
  }

  bg_jobs::queue_spec queue(bg_jobs::worker w) const {
    auto q = bg_jobs::queue_spec{"bench"}
                 .with_max_concurrent_jobs(static_cast<int>(concurrency))
                 .with_worker(std::move(w));
    if (keys > 0)
      q.with_key_limit(static_cast<int>(key_limit));
    if (rate > 0)
      q.with_rate_limit({"bench", rate, std::chrono::seconds{1}, rate});
    // Queues are woken by enqueues (LISTEN/NOTIFY or the WAL watch) and
    // when their next waiting job comes due; the library's default poll
    // for a node that listens (5 s) is the fallback in both profiles.
    return q;
  }

  json describe() const {
    return {
        {"mode", fast ? "fast" : "default"},
        {"store", postgres ? "postgres" : "sqlite"},
        {"concurrency", concurrency},
        {"keys", keys},
        {"key_limit", keys > 0 ? json(key_limit) : json(nullptr)},
        {"rate", rate > 0 ? json(rate) : json(nullptr)},
        {"succeeded_history", succeeded_history},
        {"sqlite_synchronous", postgres ? "n/a" : (fast ? "NORMAL" : "FULL")},
        {"poll_interval_ms",
         bg_jobs::queue_spec{"q"}.poll_interval(true).count()},
        {"prefetch", bg_jobs::queue_spec{"q"}.prefetch()},
        {"actor_system", "bg_jobs::configure, 2 scheduler threads"}};
  }
};

json versions() {
  return {{"bg_jobs", "0.1.0"},
          {"caf", CAF_VERSION},
          {"libpqxx", PQXX_VERSION},
          {"sqlite", sqlite3_libversion()}};
}

std::unique_ptr<bg_jobs::db_adapter> connect(const settings& s) {
  auto db = s.factory()();
  if (!db) {
    std::cerr << "bench: " << bg_jobs::describe(db.error()) << std::endl;
    std::exit(1);
  }
  return std::move(*db);
}

/// Whether any job is left in `jobs`, by a query that stays cheap however
/// much history the drain leaves behind (counting it every few milliseconds
/// would take the CPU the workers are measured on).
class remaining_probe {
public:
  explicit remaining_probe(const settings& s) : s_(s) {
    if (s.postgres)
      pg_ = std::make_unique<pqxx::connection>(s.url);
    else
      sqlite3_open(s.path.c_str(), &lite_);
  }

  ~remaining_probe() {
    if (lite_)
      sqlite3_close(lite_);
  }

  bool any_left() {
    const char* sql = "SELECT EXISTS (SELECT 1 FROM jobs)";
    if (pg_) {
      pqxx::nontransaction tx{*pg_};
      return tx.exec(sql)[0][0].as<bool>();
    }
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(lite_, sql, -1, &st, nullptr);
    bool left = sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return left;
  }

private:
  const settings& s_;
  std::unique_ptr<pqxx::connection> pg_;
  sqlite3* lite_ = nullptr;
};

caf::actor_system_config& system_config() {
  static caf::actor_system_config cfg;
  static bool once = [] {
    cfg.set("scheduler.max-threads", 2);
    // What the README's programs do: idle scheduler threads sleep.
    bg_jobs::configure(cfg);
    return true;
  }();
  (void)once;
  return cfg;
}

// -- drain ------------------------------------------------------------------

/// Enqueues `n` jobs "bench" in transactions of 10,000: job i carries key
/// i mod BENCH_KEYS (if set), and that rate key under a rate limit.
void insert_jobs(const settings& s, bg_jobs::db_adapter& db, long n) {
  constexpr long batch = 10000;
  for (long i = 0; i < n; i += batch) {
    std::vector<bg_jobs::job_request> reqs;
    for (long k = i; k < std::min(n, i + batch); ++k) {
      bg_jobs::job_request r{"bench", json{{"seq", k}}};
      if (s.keys > 0)
        r.with_concurrency_key("k" + std::to_string(k % s.keys));
      if (s.rate > 0 && s.keys > 0)
        r.with_rate("k" + std::to_string(k % s.keys));
      reqs.push_back(std::move(r));
    }
    if (auto ids = db.enqueue_jobs(reqs); !ids) {
      std::cerr << "bench: " << bg_jobs::describe(ids.error()) << std::endl;
      std::exit(1);
    }
  }
}

json drain(const settings& s) {
  long n = env("BENCH_N", 20000);
  auto timeout = milliseconds{env("BENCH_TIMEOUT_MS", 60000)};
  auto db = connect(s);
  if (!db->migrate_up()) {
    std::cerr << "bench: migration failed" << std::endl;
    std::exit(1);
  }
  auto t0 = steady_clock::now();
  insert_jobs(s, *db, n);
  double insert_ms =
      duration<double, std::milli>(steady_clock::now() - t0).count();
  std::cerr << "inserted " << n << " jobs in " << insert_ms << " ms"
            << std::endl;
  int64_t done = 0;
  bool partial = true;
  double drain_ms = 0;
  double first_job_ms = -1;
  double handlers_done_ms = -1;
  {
    caf::actor_system sys{system_config()};
    remaining_probe probe{s};
    std::atomic<long> calls{0};
    std::atomic<int64_t> first_us{0};
    std::atomic<int64_t> last_us{0};
    auto started = steady_clock::now();
    auto bg = bg_jobs::builder{s.factory()}
                  .with_node_name("bench")
                  .with_queue(s.queue(bg_jobs::worker{"bench",
                                                      [&](const bg_jobs::job&) {
                                                        auto k = calls++;
                                                        if (k == 0)
                                                          first_us = now_us();
                                                        if (k + 1 == n)
                                                          last_us = now_us();
                                                      }}))
                  .build(sys);
    if (!bg) {
      std::cerr << "bench: " << bg_jobs::describe(bg.error()) << std::endl;
      std::exit(1);
    }
    auto deadline = started + timeout;
    // As the peer benchmark times its peers: until every handler has been
    // called, with a probe of the store every 500 ms in case a count is
    // missed; then until the store holds no job. Probing the store all
    // along would load the server the drain is timed on (the probe reads
    // past the dead rows the drain leaves at the head of `jobs`).
    auto next_probe = started + milliseconds{500};
    while (calls.load() < n && steady_clock::now() < deadline) {
      if (steady_clock::now() >= next_probe) {
        if (!probe.any_left())
          break;
        next_probe = steady_clock::now() + milliseconds{500};
      }
      std::this_thread::sleep_for(milliseconds{1});
    }
    for (;;) {
      if (!probe.any_left()) {
        partial = false;
        break;
      }
      if (steady_clock::now() > deadline)
        break;
      std::this_thread::sleep_for(milliseconds{2});
    }
    drain_ms =
        duration<double, std::milli>(steady_clock::now() - started).count();
    auto since_start = [&](int64_t us) {
      return us == 0
                 ? -1.0
                 : (us - duration_cast<microseconds>(started.time_since_epoch())
                             .count()) /
                       1000.0;
    };
    first_job_ms = since_start(first_us.load());
    handlers_done_ms = since_start(last_us.load());
    // Done means out of `jobs`: pruning may already have removed some
    // succeeded rows of a long drain.
    if (auto st = db->stats())
      done = n - (st->pending() + st->reserved);
    bg->shutdown();
  }
  std::cerr << "drained " << done << " jobs in " << drain_ms << " ms"
            << std::endl;
  return {{"insert",
           {{"jobs", n},
            {"ms", insert_ms},
            {"rate", n / (insert_ms / 1000.0)},
            {"method", "bulk: enqueue_jobs, one transaction per 10000 jobs" +
                           std::string{s.postgres ? " (one INSERT ... SELECT "
                                                    "FROM json_to_recordset)"
                                                  : " (prepared INSERT)"}}}},
          {"drain",
           {{"jobs", n},
            {"completed", done},
            {"partial", partial},
            {"ms", drain_ms},
            {"rate", done / (drain_ms / 1000.0)},
            // From the start of the node to the first handler's call, and
            // to the last one's (the rest is the last outcomes' writing).
            {"first_job_ms", first_job_ms},
            {"handlers_done_ms", handlers_done_ms}}}};
}

// -- latency ------------------------------------------------------------------

/// The worker process: reports READY, its CPU while idle, then the start
/// time of each job.
int latency_worker(const settings& s) {
  long jobs = env("BENCH_LAT_JOBS", 500);
  auto idle = milliseconds{env("BENCH_LAT_IDLE_MS", 2000)};
  auto grace = milliseconds{env("BENCH_LAT_GRACE_MS", 15000)};
  auto timeout = milliseconds{env("BENCH_TIMEOUT_MS", 60000)};
  std::mutex mtx;
  std::map<int64_t, int64_t> starts;
  caf::actor_system sys{system_config()};
  auto bg = bg_jobs::builder{s.factory()}
                .with_node_name("bench-worker")
                .with_queue(s.queue(
                    bg_jobs::worker{"bench",
                                    [&](const bg_jobs::job& j) {
                                      auto t = now_us();
                                      std::lock_guard<std::mutex> guard{mtx};
                                      starts.emplace(j.id, t);
                                    }}))
                .build(sys);
  if (!bg) {
    std::cerr << "bench worker: " << bg_jobs::describe(bg.error()) << std::endl;
    return 1;
  }
  std::cout << "READY" << std::endl;
  // Idle CPU is measured once start-up has settled: the first quarter of
  // the idle window (at most 500 ms) is left out.
  auto settle = std::min(idle / 4, milliseconds{500});
  std::this_thread::sleep_for(settle);
  auto c0 = cpu_ms();
  auto t0 = steady_clock::now();
  std::this_thread::sleep_for(idle - settle);
  auto secs = duration<double>(steady_clock::now() - t0).count();
  std::cout << "IDLE_CPU " << (cpu_ms() - c0) / secs << std::endl;
  auto deadline = steady_clock::now() + timeout + grace;
  for (;;) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (static_cast<long>(starts.size()) >= jobs)
        break;
    }
    if (steady_clock::now() > deadline)
      break;
    std::this_thread::sleep_for(milliseconds{10});
  }
  bg->shutdown();
  std::lock_guard<std::mutex> guard{mtx};
  for (auto& [id, t] : starts)
    std::cout << "START " << id << ' ' << t << '\n';
  std::cout << "END" << std::endl;
  return 0;
}

json latency(const settings& s, const char* self_path, const char* mode) {
  long jobs = env("BENCH_LAT_JOBS", 500);
  double rate = static_cast<double>(env("BENCH_LAT_RATE", 100));
  auto db = connect(s);
  if (!db->migrate_up())
    std::exit(1);
  std::string cmd = std::string{self_path} + " latency-worker " + mode;
  FILE* worker = popen(cmd.c_str(), "r");
  if (!worker)
    std::exit(1);
  char line[256];
  double idle_cpu = -1;
  while (std::fgets(line, sizeof(line), worker)) {
    std::string l{line};
    if (l.rfind("IDLE_CPU ", 0) == 0) {
      idle_cpu = std::atof(l.c_str() + 9);
      break;
    }
  }
  std::cerr << "worker idle CPU: " << idle_cpu << " ms/s" << std::endl;
  std::map<int64_t, int64_t> returned;
  auto start = steady_clock::now();
  auto deadline = start + milliseconds{env("BENCH_TIMEOUT_MS", 60000)};
  for (long i = 0; i < jobs && steady_clock::now() < deadline; ++i) {
    auto due = start + duration_cast<nanoseconds>(duration<double>(i / rate));
    std::this_thread::sleep_until(due);
    auto j = db->enqueue_job(bg_jobs::job_request{"bench", json{{"seq", i}}});
    auto t = now_us();
    if (j)
      returned.emplace(j->id, t);
  }
  std::vector<double> lat;
  while (std::fgets(line, sizeof(line), worker)) {
    long long id = 0, t = 0;
    if (std::sscanf(line, "START %lld %lld", &id, &t) == 2)
      if (auto i = returned.find(id); i != returned.end())
        lat.push_back((t - i->second) / 1000.0);
  }
  pclose(worker);
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    if (lat.empty())
      return -1.0;
    auto idx = static_cast<size_t>(p * (lat.size() - 1) + 0.5);
    return lat[std::min(idx, lat.size() - 1)];
  };
  return {{"latency",
           {{"jobs", jobs},
            {"started", lat.size()},
            {"partial", static_cast<long>(lat.size()) < jobs},
            {"latency_ms",
             {{"p50", pct(0.50)}, {"p95", pct(0.95)}, {"p99", pct(0.99)}}},
            {"worker_idle_cpu_ms_per_s", idle_cpu}}}};
}

// -- enqueue
// ---------------------------------------------------------------------

json enqueue(const settings& s) {
  long jobs = env("BENCH_ENQ_JOBS", 5000);
  auto timeout = milliseconds{env("BENCH_TIMEOUT_MS", 60000)};
  auto db = connect(s);
  if (!db->migrate_up())
    std::exit(1);
  // Single enqueues of one client, first through the path an application
  // uses (an enqueue-only node's instance::enqueue, i.e. the enqueue
  // message), then straight through the adapter, for comparison.
  auto measure = [&](auto&& one) {
    long done = 0;
    auto t0 = steady_clock::now();
    auto deadline = t0 + timeout;
    for (; done < jobs && steady_clock::now() < deadline; ++done)
      if (!one(done))
        break;
    double ms = duration<double, std::milli>(steady_clock::now() - t0).count();
    return json{{"jobs", jobs},
                {"done", done},
                {"partial", done < jobs},
                {"ms", ms},
                {"rate", done / (ms / 1000.0)}};
  };
  json pub;
  {
    caf::actor_system sys{system_config()};
    auto bg = bg_jobs::builder{s.factory()}
                  .with_node_name("bench-enqueue")
                  .with_enqueued_job_names({"bench"})
                  .build(sys);
    if (!bg) {
      std::cerr << "bench: " << bg_jobs::describe(bg.error()) << std::endl;
      std::exit(1);
    }
    pub = measure([&](long i) {
      auto j = bg->enqueue(bg_jobs::job_request{"bench", json{{"seq", i}}});
      if (!j)
        std::cerr << "bench: " << bg_jobs::describe(j.error()) << std::endl;
      return bool(j);
    });
    bg->shutdown();
  }
  auto direct = measure([&](long i) {
    auto j = db->enqueue_job(bg_jobs::job_request{"bench", json{{"seq", i}}});
    if (!j)
      std::cerr << "bench: " << bg_jobs::describe(j.error()) << std::endl;
    return bool(j);
  });
  auto result = pub;
  result["method"] = "instance::enqueue (the enqueue message) of an "
                     "enqueue-only node, one transaction per job";
  result["adapter"] = direct;
  result["adapter"]["method"] =
      "db_adapter::enqueue_job, one transaction per job";
  result["public_to_adapter"] =
      direct["rate"].get<double>() > 0
          ? pub["rate"].get<double>() / direct["rate"].get<double>()
          : 0.0;
  return {{"enqueue", result}};
}

// -- sustained load (PostgreSQL) ----------------------------------------------
//
// Three situations that churn the `jobs` table for minutes: a backlog held
// at BENCH_BACKLOG (4000) jobs ("backlog"); a steady BENCH_RATE (800) jobs/s
// with four REPEATABLE READ readers counting `jobs` every 100 ms
// ("steady-readers"); the same rate with one transaction held open for
// BENCH_HOLD_S (120) seconds from the 15th ("steady-held"). Jobs take 1 ms
// and carry 256-byte payloads; BENCH_SECONDS (180) long; an operator's
// `instance::stats()` is read once a second throughout. Reported per 5 s
// window: completions per second, and the claim latency (from when a job
// was stored, or became due, to its start in a worker) of the jobs started.

struct load_window {
  long completed = 0;
  long max_depth = 0;
  std::vector<double> latency_ms;
};

class load_recorder {
public:
  explicit load_recorder(steady_clock::time_point start) : start_(start) {}

  void started(double latency_ms) {
    std::lock_guard<std::mutex> guard{mtx_};
    at(steady_clock::now()).latency_ms.push_back(latency_ms);
  }

  void completed() {
    std::lock_guard<std::mutex> guard{mtx_};
    at(steady_clock::now()).completed += 1;
  }

  void depth(long d) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto& w = at(steady_clock::now());
    w.max_depth = std::max(w.max_depth, d);
  }

  std::vector<load_window> windows() {
    std::lock_guard<std::mutex> guard{mtx_};
    return windows_;
  }

  static constexpr seconds width{5};

private:
  load_window& at(steady_clock::time_point t) {
    auto i = static_cast<size_t>((t - start_) / width);
    if (windows_.size() <= i)
      windows_.resize(i + 1);
    return windows_[i];
  }

  steady_clock::time_point start_;
  std::mutex mtx_;
  std::vector<load_window> windows_;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  auto idx = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(idx, v.size() - 1)];
}

double median_of(std::vector<double> v) {
  return percentile(std::move(v), 0.5);
}

// -- workflows ----------------------------------------------------------------

/// Two-step chains and one fan-out / fan-in, through `enqueue_workflow` and
/// a node: jobs per second, and how long a child starts after its parent's
/// handler returned (the parent's completion is recorded in between).
json workflows(const settings& s) {
  long chains = env("BENCH_CHAINS", 10000);
  long width = env("BENCH_FANOUT", 1000);
  auto timeout = milliseconds{env("BENCH_TIMEOUT_MS", 120000)};
  auto db = connect(s);
  if (!db->migrate_up()) {
    std::cerr << "bench: migration failed" << std::endl;
    std::exit(1);
  }
  std::mutex mtx;
  std::map<int64_t, std::pair<int64_t, int64_t>> times; // id: start, end
  auto record = [&](const bg_jobs::job& j) {
    auto start = now_us();
    std::lock_guard<std::mutex> guard{mtx};
    times[j.id] = {start, now_us()};
  };
  auto ran = [&] {
    std::lock_guard<std::mutex> guard{mtx};
    return static_cast<long>(times.size());
  };
  // Runs a node until `jobs` handlers have run; returns the milliseconds.
  auto drain_until = [&](long jobs) {
    caf::actor_system sys{system_config()};
    auto started = steady_clock::now();
    auto bg = bg_jobs::builder{s.factory()}
                  .with_node_name("bench")
                  .with_queue(s.queue(bg_jobs::worker{"bench", record}))
                  .build(sys);
    if (!bg) {
      std::cerr << "bench: " << bg_jobs::describe(bg.error()) << std::endl;
      std::exit(1);
    }
    while (ran() < jobs && steady_clock::now() < started + timeout)
      std::this_thread::sleep_for(milliseconds{2});
    auto ms =
        duration<double, std::milli>(steady_clock::now() - started).count();
    bg->shutdown();
    return ms;
  };
  auto ms_of = [](int64_t us) { return static_cast<double>(us) / 1000.0; };
  auto summary = [&](std::vector<double> v) {
    if (v.empty())
      return json{{"p50", nullptr}, {"p99", nullptr}};
    return json{{"p50", percentile(v, 0.50)}, {"p99", percentile(v, 0.99)}};
  };
  // Chains: a then b.
  auto t0 = steady_clock::now();
  std::vector<std::pair<int64_t, int64_t>> pairs;
  pairs.reserve(static_cast<size_t>(chains));
  for (long k = 0; k < chains; ++k) {
    bg_jobs::workflow w{"chain"};
    w.add("a", bg_jobs::job_request{"bench", json{{"chain", k}}});
    w.add("b", bg_jobs::job_request{"bench", json{{"chain", k}}}, {"a"});
    auto ids = db->enqueue_workflow(w);
    if (!ids) {
      std::cerr << "bench: " << bg_jobs::describe(ids.error()) << std::endl;
      std::exit(1);
    }
    pairs.emplace_back(ids->tasks.at("a"), ids->tasks.at("b"));
  }
  double chain_insert_ms =
      duration<double, std::milli>(steady_clock::now() - t0).count();
  double chain_ms = drain_until(2 * chains);
  long chain_done = ran();
  std::vector<double> chain_lat;
  {
    std::lock_guard<std::mutex> guard{mtx};
    for (auto& [a, b] : pairs) {
      auto pa = times.find(a), pb = times.find(b);
      if (pa != times.end() && pb != times.end())
        chain_lat.push_back(ms_of(pb->second.first - pa->second.second));
    }
    times.clear();
  }
  std::cerr << "chains: " << chain_done << " jobs in " << chain_ms << " ms"
            << std::endl;
  // Fan-out / fan-in: root, `width` leaves, join.
  bg_jobs::workflow w{"fan"};
  w.add("root", bg_jobs::job_request{"bench", json{{"fan", "root"}}});
  std::vector<std::string> leaves;
  for (long i = 0; i < width; ++i) {
    leaves.push_back("leaf" + std::to_string(i));
    w.add(leaves.back(), bg_jobs::job_request{"bench", json{{"leaf", i}}},
          {"root"});
  }
  w.add("join", bg_jobs::job_request{"bench", json{{"fan", "join"}}}, leaves);
  t0 = steady_clock::now();
  auto fan = db->enqueue_workflow(w);
  if (!fan) {
    std::cerr << "bench: " << bg_jobs::describe(fan.error()) << std::endl;
    std::exit(1);
  }
  double fan_insert_ms =
      duration<double, std::milli>(steady_clock::now() - t0).count();
  double fan_ms = drain_until(width + 2);
  long fan_done = ran();
  std::vector<double> out_lat;
  double in_lat = -1;
  {
    std::lock_guard<std::mutex> guard{mtx};
    auto root = times.find(fan->tasks.at("root"));
    auto join = times.find(fan->tasks.at("join"));
    int64_t last_leaf_end = 0;
    for (auto& name : leaves) {
      auto leaf = times.find(fan->tasks.at(name));
      if (leaf == times.end())
        continue;
      last_leaf_end = std::max(last_leaf_end, leaf->second.second);
      if (root != times.end())
        out_lat.push_back(ms_of(leaf->second.first - root->second.second));
    }
    if (join != times.end() && last_leaf_end > 0)
      in_lat = ms_of(join->second.first - last_leaf_end);
  }
  return {{"chains",
           {{"chains", chains},
            {"jobs", 2 * chains},
            {"completed", chain_done},
            {"insert_ms", chain_insert_ms},
            {"insert_rate", chains / (chain_insert_ms / 1000.0)},
            {"ms", chain_ms},
            {"rate", chain_done / (chain_ms / 1000.0)},
            {"parent_to_child_ms", summary(chain_lat)}}},
          {"fan",
           {{"width", width},
            {"jobs", width + 2},
            {"completed", fan_done},
            {"insert_ms", fan_insert_ms},
            {"ms", fan_ms},
            {"rate", fan_done / (fan_ms / 1000.0)},
            {"root_to_leaf_start_ms", summary(out_lat)},
            {"last_leaf_to_join_ms", in_lat}}}};
}

json table_state(const std::string& url) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  auto r =
      tx.exec("SELECT n_live_tup, n_dead_tup, pg_total_relation_size(relid),"
              " coalesce(autovacuum_count, 0) + coalesce(vacuum_count, 0),"
              " coalesce(autoanalyze_count, 0) + coalesce(analyze_count, 0),"
              " n_tup_hot_upd, n_tup_upd"
              " FROM pg_stat_user_tables WHERE relname = 'jobs'");
  if (r.empty())
    return {};
  return {
      {"live_tuples", r[0][0].as<long>()}, {"dead_tuples", r[0][1].as<long>()},
      {"total_bytes", r[0][2].as<long>()}, {"vacuums", r[0][3].as<long>()},
      {"analyzes", r[0][4].as<long>()},    {"hot_updates", r[0][5].as<long>()},
      {"updates", r[0][6].as<long>()}};
}

json sustained(const settings& s, const std::string& kind) {
  if (!s.postgres) {
    std::cerr << "bench: " << kind << " needs BENCH_PG_URL" << std::endl;
    std::exit(2);
  }
  const auto total = seconds{env("BENCH_SECONDS", 180)};
  const long backlog = env("BENCH_BACKLOG", 4000);
  const double rate = static_cast<double>(env("BENCH_RATE", 800));
  const auto hold = seconds{env("BENCH_HOLD_S", 120)};
  const auto hold_from = seconds{15};
  {
    auto db = connect(s);
    if (!db->migrate_up()) {
      std::cerr << "bench: migration failed" << std::endl;
      std::exit(1);
    }
  }
  const std::string padding(200, 'x');
  std::atomic<long> enqueued{0}, completed{0};
  std::atomic<bool> stop{false};
  // Every job id started, to count the runs of a job that ran before.
  std::mutex seen_mtx;
  std::unordered_set<int64_t> seen;
  long reruns = 0;
  auto start = steady_clock::now();
  load_recorder rec{start};
  caf::actor_system sys{system_config()};
  auto bg = bg_jobs::builder{s.factory()}
                .with_node_name("bench-load")
                .with_queue(s.queue(bg_jobs::worker{
                    "bench",
                    [&](const bg_jobs::job& j) {
                      auto t = now_us();
                      // Latency from when the job was stored or became due,
                      // whichever is later (a held backlog's jobs wait their
                      // turn behind it: there the time stored is its depth /
                      // rate).
                      auto stored = j.payload.value("t", int64_t{0});
                      rec.started((t - stored) / 1000.0);
                      {
                        std::lock_guard<std::mutex> guard{seen_mtx};
                        if (!seen.insert(j.id).second)
                          ++reruns;
                      }
                      std::this_thread::sleep_for(milliseconds{1});
                      completed.fetch_add(1);
                      rec.completed();
                    }}))
                .build(sys);
  if (!bg) {
    std::cerr << "bench: " << bg_jobs::describe(bg.error()) << std::endl;
    std::exit(1);
  }
  auto make = [&](long n) {
    std::vector<bg_jobs::job_request> reqs;
    auto t = now_us();
    for (long i = 0; i < n; ++i)
      reqs.emplace_back("bench", json{{"t", t}, {"pad", padding}});
    return reqs;
  };
  auto enqueue = [&](long n) {
    while (n > 0) {
      auto k = std::min(n, 1000L);
      if (auto ids = bg->enqueue_many(make(k)); !ids) {
        std::cerr << "bench: enqueue: " << bg_jobs::describe(ids.error())
                  << std::endl;
        return;
      }
      enqueued += k;
      n -= k;
    }
  };
  // Producer: keeps the backlog, or enqueues at the rate, every 10 ms.
  std::thread producer{[&] {
    while (!stop) {
      auto elapsed = duration<double>(steady_clock::now() - start).count();
      long want = kind == "backlog"
                      ? backlog - (enqueued - completed)
                      : static_cast<long>(elapsed * rate) - enqueued;
      if (want > 0)
        enqueue(want);
      rec.depth(enqueued - completed);
      std::this_thread::sleep_for(milliseconds{10});
    }
  }};
  // Readers, or the held transaction.
  std::vector<std::thread> others;
  std::atomic<long> reads{0};
  if (kind == "steady-readers")
    for (int i = 0; i < 4; ++i)
      others.emplace_back([&] {
        pqxx::connection c{s.url};
        while (!stop) {
          pqxx::transaction<pqxx::isolation_level::repeatable_read> tx{c};
          tx.exec("SELECT count(*) FROM jobs");
          tx.commit();
          reads += 1;
          std::this_thread::sleep_for(milliseconds{100});
        }
      });
  if (kind == "steady-held")
    others.emplace_back([&] {
      std::this_thread::sleep_until(start + hold_from);
      pqxx::connection c{s.url};
      pqxx::transaction<pqxx::isolation_level::repeatable_read> tx{c};
      tx.exec("SELECT count(*) FROM jobs");
      std::cerr << "transaction open" << std::endl;
      auto until = steady_clock::now() + hold;
      while (!stop && steady_clock::now() < until)
        std::this_thread::sleep_for(milliseconds{100});
      tx.commit();
      std::cerr << "transaction closed" << std::endl;
    });
  // An operator's dashboard: the stats once a second.
  std::vector<double> stats_ms;
  std::thread operator_view{[&] {
    while (!stop) {
      auto t0 = steady_clock::now();
      auto st = bg->stats();
      stats_ms.push_back(
          duration<double, std::milli>(steady_clock::now() - t0).count());
      if (!st)
        std::cerr << "bench: stats: " << bg_jobs::describe(st.error())
                  << std::endl;
      std::this_thread::sleep_for(seconds{1});
    }
  }};
  // Progress, one line per window.
  size_t shown = 0;
  while (steady_clock::now() < start + total) {
    std::this_thread::sleep_for(milliseconds{200});
    auto ws = rec.windows();
    for (; shown + 1 < ws.size(); ++shown) {
      auto& w = ws[shown];
      std::cerr << kind << " t=" << shown * 5
                << "s completed/s=" << w.completed / 5.0
                << " depth<=" << w.max_depth
                << " claim_p99_ms=" << percentile(w.latency_ms, 0.99)
                << std::endl;
    }
  }
  stop = true;
  producer.join();
  for (auto& t : others)
    t.join();
  operator_view.join();
  auto state = table_state(s.url);
  long enqueued_at_end = enqueued, completed_at_end = completed;
  bg->shutdown();
  // The last window is cut short by the end of the run: left out.
  auto ws = rec.windows();
  auto full = static_cast<size_t>(total / load_recorder::width);
  if (ws.size() > full)
    ws.resize(full);
  json windows = json::array();
  std::vector<double> rates;
  double first30 = 0;
  long zero_waiting = 0;
  double worst_rate = -1, worst_p99 = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    auto& w = ws[i];
    double r = w.completed / 5.0;
    double p99 = percentile(w.latency_ms, 0.99);
    rates.push_back(r);
    if (i < 6)
      first30 += r / 6.0;
    if (w.completed == 0 && w.max_depth > 0)
      ++zero_waiting;
    if (worst_rate < 0 || r < worst_rate)
      worst_rate = r;
    worst_p99 = std::max(worst_p99, p99);
    windows.push_back({{"t_s", i * 5},
                       {"rate", r},
                       {"claim_p50_ms", percentile(w.latency_ms, 0.5)},
                       {"claim_p99_ms", p99},
                       {"max_depth", w.max_depth}});
  }
  return {{kind,
           {{"seconds", total.count()},
            {"concurrency", s.concurrency},
            {"backlog", kind == "backlog" ? backlog : 0},
            {"rate_offered", kind == "backlog" ? 0.0 : rate},
            {"enqueued", enqueued_at_end},
            {"completed", completed_at_end},
            {"reruns", reruns},
            {"median_rate", median_of(rates)},
            {"first_30s_rate", first30},
            {"worst_window_rate", worst_rate},
            {"worst_window_claim_p99_ms", worst_p99},
            {"zero_windows_while_waiting", zero_waiting},
            {"reader_queries", reads.load()},
            {"stats_ms",
             {{"p50", percentile(stats_ms, 0.5)},
              {"max", percentile(stats_ms, 1.0)}}},
            {"jobs_table_at_end", state},
            {"windows", windows}}}};
}

// -- nodes ------------------------------------------------------------------

/// `url` with the connection's application name set to `name`, so that the
/// parent can count each worker process's connections.
std::string with_application_name(const std::string& url,
                                  const std::string& name) {
  if (url.find("://") != std::string::npos)
    return url + (url.find('?') == std::string::npos ? "?" : "&") +
           "application_name=" + name;
  return url + " application_name=" + name;
}

/// A worker process of the nodes workload: one node named BENCH_NODE_NAME
/// runs the queue until a line "STOP" on stdin, then reports how many jobs
/// its handlers ran.
int nodes_worker(settings s) {
  auto name = env_text("BENCH_NODE_NAME");
  if (s.postgres)
    s.url = with_application_name(s.url, name);
  std::atomic<long> ran{0};
  caf::actor_system sys{system_config()};
  auto bg = bg_jobs::builder{s.factory()}
                .with_node_name(name)
                .with_queue(s.queue(bg_jobs::worker{
                    "bench", [&](const bg_jobs::job&) { ++ran; }}))
                .build(sys);
  if (!bg) {
    std::cerr << "bench node: " << bg_jobs::describe(bg.error()) << std::endl;
    return 1;
  }
  std::cout << "READY" << std::endl;
  std::string line;
  while (std::getline(std::cin, line) && line != "STOP") {
  }
  bg->shutdown();
  std::cout << "DONE " << ran.load() << std::endl;
  return 0;
}

/// A child process with a pipe to its stdin and one from its stdout.
struct child {
  pid_t pid = -1;
  FILE* in = nullptr;  // its stdin
  FILE* out = nullptr; // its stdout

  static child spawn(const char* self, const char* mode,
                     const std::string& name) {
    int to[2], from[2];
    if (pipe(to) != 0 || pipe(from) != 0)
      std::exit(1);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from[1], 1);
    posix_spawn_file_actions_addclose(&fa, to[1]);
    posix_spawn_file_actions_addclose(&fa, from[0]);
    setenv("BENCH_NODE_NAME", name.c_str(), 1);
    std::string arg0 = self, arg1 = "nodes-worker", arg2 = mode;
    char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};
    child c;
    if (posix_spawn(&c.pid, self, &fa, nullptr, argv, environ) != 0)
      std::exit(1);
    posix_spawn_file_actions_destroy(&fa);
    close(to[0]);
    close(from[1]);
    c.in = fdopen(to[1], "w");
    c.out = fdopen(from[0], "r");
    return c;
  }

  /// The next line of its stdout that starts with `prefix` (empty at end).
  std::string line_starting(const std::string& prefix) {
    char buf[256];
    while (std::fgets(buf, sizeof(buf), out))
      if (std::string l{buf}; l.rfind(prefix, 0) == 0)
        return l;
    return {};
  }

  /// Asks it to stop; its count of jobs run (-1: none reported) and status.
  std::pair<long, int> stop() {
    std::fputs("STOP\n", in);
    std::fflush(in);
    auto done = line_starting("DONE ");
    std::fclose(in);
    std::fclose(out);
    int status = 0;
    waitpid(pid, &status, 0);
    long ran = done.empty() ? -1 : std::atol(done.c_str() + 5);
    return {ran, WIFEXITED(status) ? WEXITSTATUS(status) : 128};
  }
};

/// Clears the history the rounds before left and vacuums `jobs`, so that
/// every round of the nodes workload starts from the same store: a later
/// round otherwise drains beside the history and dead rows of the earlier
/// ones (4 processes ran 14-19 % below one after 1 and 2, and at or above
/// it in 3 of 4 runs in the order 4, 2, 1).
void clear_history(bg_jobs::db_adapter& db) {
  bg_jobs::prune_params all;
  all.succeeded_max_age = all.failed_max_age = milliseconds{0};
  all.max_succeeded = all.max_failed = 0;
  all.batch = 100000;
  for (;;) {
    auto n = db.prune_jobs(all);
    if (!n) {
      std::cerr << "bench: " << bg_jobs::describe(n.error()) << std::endl;
      std::exit(1);
    }
    if (*n == 0)
      break;
  }
  if (auto v = db.vacuum_jobs(0); !v) {
    std::cerr << "bench: " << bg_jobs::describe(v.error()) << std::endl;
    std::exit(1);
  }
}

/// Rounds of BENCH_NODES_N (40,000) jobs drained by 1, 2 and 4 worker
/// processes (BENCH_NODES) on one store: each round enqueues the jobs with
/// the queue paused, starts the processes, resumes the queue and times the
/// drain (each from the same store: `clear_history`); each process reports
/// how many jobs its handlers ran. On PostgreSQL the connections each
/// process holds are sampled during the drain (by application name).
json nodes(const settings& s, const char* self, const char* mode) {
  long n = env("BENCH_NODES_N", 40000);
  auto timeout = milliseconds{env("BENCH_TIMEOUT_MS", 60000)};
  std::vector<long> counts;
  {
    std::stringstream list{env_text("BENCH_NODES").empty()
                               ? std::string{"1,2,4"}
                               : env_text("BENCH_NODES")};
    for (std::string item; std::getline(list, item, ',');) {
      long k = std::atol(item.c_str());
      if (k < 1 || k > 16 || std::to_string(k) != item) {
        std::cerr << "bench: BENCH_NODES takes 1 to 16 processes, "
                     "comma-separated"
                  << std::endl;
        std::exit(2);
      }
      counts.push_back(k);
    }
  }
  auto db = connect(s);
  if (!db->migrate_up())
    std::exit(1);
  std::unique_ptr<pqxx::connection> pg;
  if (s.postgres)
    pg = std::make_unique<pqxx::connection>(s.url);
  json rounds = json::array();
  for (long k : counts) {
    if (!db->pause(bg_jobs::pause_kind::queue, "bench"))
      std::exit(1);
    clear_history(*db);
    insert_jobs(s, *db, n);
    std::vector<child> procs;
    std::vector<std::string> names;
    for (long i = 0; i < k; ++i) {
      names.push_back("bench_node_" + std::to_string(k) + "_" +
                      std::to_string(i));
      procs.push_back(child::spawn(self, mode, names.back()));
    }
    bool ready = true;
    for (auto& p : procs)
      ready = ready && !p.line_starting("READY").empty();
    std::map<std::string, long> conns;
    auto started = steady_clock::now();
    if (!ready || !db->resume(bg_jobs::pause_kind::queue, "bench"))
      std::exit(1);
    remaining_probe probe{s};
    bool partial = true;
    int samples = 0;
    for (;;) {
      if (!probe.any_left()) {
        partial = false;
        break;
      }
      if (steady_clock::now() > started + timeout)
        break;
      if (pg && samples++ % 10 == 0) {
        pqxx::nontransaction tx{*pg};
        for (const auto& r :
             tx.exec("SELECT application_name, count(*) FROM pg_stat_activity"
                     " WHERE application_name LIKE 'bench_node_%'"
                     " GROUP BY 1")) {
          auto& c = conns[r[0].as<std::string>()];
          c = std::max(c, r[1].as<long>());
        }
      }
      std::this_thread::sleep_for(milliseconds{5});
    }
    double ms =
        duration<double, std::milli>(steady_clock::now() - started).count();
    json per = json::array();
    long least = n;
    bool clean = true;
    for (size_t i = 0; i < procs.size(); ++i) {
      auto [ran, status] = procs[i].stop();
      clean = clean && status == 0;
      least = std::min(least, ran);
      per.push_back(
          {{"node", names[i]},
           {"jobs", ran},
           {"exit", status},
           {"connections", pg ? json(conns[names[i]]) : json(nullptr)}});
    }
    double fair = static_cast<double>(n) / k;
    rounds.push_back({{"processes", k},
                      {"jobs", n},
                      {"partial", partial},
                      {"ms", ms},
                      {"rate", n / (ms / 1000.0)},
                      {"least_share", least / fair},
                      {"clean_exit", clean},
                      {"per_process", per}});
    std::cerr << k << " processes: " << n / (ms / 1000.0)
              << " jobs/s, least share " << least / fair << std::endl;
  }
  return {{"nodes", rounds}};
}

/// Microseconds per `next_after` of a cron schedule in a zone, for a run
/// about a year away (the store plays no part).
json cron_next() {
  json zones = json::object();
  for (auto zone : {"UTC", "America/New_York", "Australia/Lord_Howe"}) {
    auto plain = bg_jobs::cron_schedule::parse("0 9 1 3 *");
    auto s = plain->in_time_zone(zone);
    if (!s)
      return {{"error", bg_jobs::describe(s.error())}};
    auto from = *bg_jobs::parse_iso8601("2025-03-02T00:00:00Z");
    constexpr int n = 20000;
    auto t0 = std::chrono::steady_clock::now();
    int64_t sink = 0;
    for (int i = 0; i < n; ++i)
      sink +=
          bg_jobs::to_unix_ms(*s->next_after(from + std::chrono::seconds{i}));
    double us = std::chrono::duration<double, std::micro>(
                    std::chrono::steady_clock::now() - t0)
                    .count() /
                n;
    zones[zone] = {{"us_per_next", us}, {"checksum", sink % 1000}};
  }
  return {{"cron_next", zones}};
}

} // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string{argv[1]} == "cron-next") {
    std::cout << "RESULT " << cron_next().dump() << std::endl;
    return 0;
  }
  if (argc != 3) {
    std::cerr << "usage: bg_jobs_bench <drain|latency|enqueue|backlog|"
                 "steady-readers|steady-held|workflows|nodes> <default|fast>"
              << "\n       bg_jobs_bench cron-next" << std::endl;
    return 2;
  }
  std::string workload = argv[1];
  std::string mode = argv[2];
  if (mode != "default" && mode != "fast") {
    std::cerr << "bench: mode must be default or fast" << std::endl;
    return 2;
  }
  settings s;
  s.fast = mode == "fast";
  setenv("BENCH_MODE", mode.c_str(), 1);
  s.url = env_text("BENCH_PG_URL");
  s.path = env_text("BENCH_SQLITE_PATH");
  s.postgres = !s.url.empty();
  s.concurrency = env("BENCH_CONCURRENCY", 10);
  s.keys = env("BENCH_KEYS", 0);
  s.rate = env("BENCH_RATE_LIMIT", 0);
  s.succeeded_history = env("BENCH_SUCCEEDED_HISTORY", 1) != 0;
  s.key_limit =
      env("BENCH_KEY_LIMIT",
          2 * (s.concurrency + bg_jobs::queue_spec{"bench"}.prefetch()));
  if (!s.postgres && s.path.empty()) {
    std::cerr << "bench: set BENCH_PG_URL or BENCH_SQLITE_PATH" << std::endl;
    return 2;
  }
  if (workload == "latency-worker")
    return latency_worker(s);
  if (workload == "nodes-worker")
    return nodes_worker(s);
  json result;
  if (workload == "drain")
    result = drain(s);
  else if (workload == "latency")
    result = latency(s, argv[0], argv[2]);
  else if (workload == "enqueue")
    result = enqueue(s);
  else if (workload == "workflows")
    result = workflows(s);
  else if (workload == "nodes")
    result = nodes(s, argv[0], argv[2]);
  else if (workload == "backlog" || workload == "steady-readers" ||
           workload == "steady-held")
    result = sustained(s, workload);
  else {
    std::cerr << "bench: unknown workload " << workload << std::endl;
    return 2;
  }
  result["versions"] = versions();
  result["settings"] = s.describe();
  std::cout << "RESULT " << result.dump() << std::endl;
  return 0;
}
