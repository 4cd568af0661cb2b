#include "bg_jobs/http/http_server.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <map>
#include <set>
#include <mutex>
#include <random>
#include <thread>

#include <regex>
#include <nlohmann/json.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "bg_jobs/actors/wire.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/parse.hpp"
#include "bg_jobs/core/workflow.hpp"
#include "bg_jobs/http/detail/bounded_server.hpp"
#include "bg_jobs/http/detail/dashboard_page.hpp"
#include "bg_jobs/http/detail/http_access.hpp"

namespace bg_jobs {

// -- metrics -----------------------------------------------------------------

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

/// Run and wait times: 1 ms to about 17 minutes.
prometheus::Histogram::BucketBoundaries seconds_buckets() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1000};
}

} // namespace

struct metrics::impl {
  std::shared_ptr<prometheus::Registry> reg =
      std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& enqueued =
      BuildCounter()
          .Name("bg_jobs_jobs_enqueued_total")
          .Help("Jobs enqueued through this process")
          .Register(*reg);
  prometheus::Family<prometheus::Counter>& started =
      BuildCounter()
          .Name("bg_jobs_jobs_started_total")
          .Help("Attempts started")
          .Register(*reg);
  prometheus::Family<prometheus::Counter>& succeeded =
      BuildCounter()
          .Name("bg_jobs_jobs_succeeded_total")
          .Help("Jobs that succeeded")
          .Register(*reg);
  prometheus::Family<prometheus::Counter>& failed =
      BuildCounter()
          .Name("bg_jobs_jobs_failed_total")
          .Help("Jobs that failed for good")
          .Register(*reg);
  prometheus::Family<prometheus::Counter>& retried =
      BuildCounter()
          .Name("bg_jobs_jobs_retried_total")
          .Help("Failed attempts that will be retried")
          .Register(*reg);
  prometheus::Family<prometheus::Counter>& cancelled =
      BuildCounter()
          .Name("bg_jobs_jobs_cancelled_total")
          .Help("Jobs cancelled")
          .Register(*reg);
  prometheus::Family<prometheus::Counter>& rescued =
      BuildCounter()
          .Name("bg_jobs_jobs_rescued_total")
          .Help("Jobs taken back from dead nodes")
          .Register(*reg);
  prometheus::Family<prometheus::Counter>& db_errors =
      BuildCounter()
          .Name("bg_jobs_db_errors_total")
          .Help("Failed store calls")
          .Register(*reg);
  prometheus::Family<prometheus::Counter>& workflows_started =
      BuildCounter()
          .Name("bg_jobs_workflows_started_total")
          .Help("Workflows stored through this process")
          .Register(*reg);
  prometheus::Family<prometheus::Counter>& workflows_finished =
      BuildCounter()
          .Name("bg_jobs_workflows_finished_total")
          .Help("Workflows that finished, by state, as reported by the node "
                "that holds the upkeep")
          .Register(*reg);
  prometheus::Family<prometheus::Counter>& workflows_stuck =
      BuildCounter()
          .Name("bg_jobs_workflows_stuck_total")
          .Help("Workflows seen stuck (a task held by a parent that did not "
                "succeed), as reported by the node that holds the upkeep")
          .Register(*reg);
  prometheus::Family<prometheus::Histogram>& workflow_time =
      BuildHistogram()
          .Name("bg_jobs_workflow_run_seconds")
          .Help("How long workflows took from start to end")
          .Register(*reg);
  prometheus::Family<prometheus::Histogram>& run_time =
      BuildHistogram()
          .Name("bg_jobs_job_run_seconds")
          .Help("How long handlers ran")
          .Register(*reg);
  prometheus::Family<prometheus::Histogram>& wait_time =
      BuildHistogram()
          .Name("bg_jobs_job_wait_seconds")
          .Help("How long jobs waited between availability and start")
          .Register(*reg);
  prometheus::Family<prometheus::Gauge>& jobs =
      BuildGauge()
          .Name("bg_jobs_jobs")
          .Help("Jobs in the store by queue, job name and state")
          .Register(*reg);
  prometheus::Family<prometheus::Gauge>& keys_full =
      BuildGauge()
          .Name("bg_jobs_limit_keys_full")
          .Help("Concurrency keys of a limited queue that are at their limit")
          .Register(*reg);
  prometheus::Family<prometheus::Gauge>& waiting_on_limit =
      BuildGauge()
          .Name("bg_jobs_jobs_waiting_on_limit")
          .Help("Jobs ready to run that wait because a key of theirs is at "
                "its limit")
          .Register(*reg);
  prometheus::Family<prometheus::Gauge>& rate_keys_held =
      BuildGauge()
          .Name("bg_jobs_rate_keys_held")
          .Help("Keys of a rate limit with no start left now, or blocked by "
                "a handler's back-pressure (of the keys shown in stats)")
          .Register(*reg);
  prometheus::Family<prometheus::Gauge>& busy =
      BuildGauge()
          .Name("bg_jobs_executors_busy")
          .Help("Executors running a job, per queue of this process")
          .Register(*reg);
  prometheus::Family<prometheus::Gauge>& executors =
      BuildGauge()
          .Name("bg_jobs_executors")
          .Help("Executors per queue of this process")
          .Register(*reg);

  std::mutex mtx;
  std::chrono::steady_clock::time_point refreshed;
  bool ever_refreshed = false;
  /// The series of `jobs` set by the last refresh: one that the store no
  /// longer reports (its jobs are gone) is removed, not kept at its last
  /// value.
  std::set<prometheus::Gauge*> job_series;

  std::map<std::string, std::string> labels(const event& e) const {
    return {{"queue", e.queue}, {"job", e.job ? e.job->name : ""}};
  }

  void on_event(const event& e) {
    std::lock_guard<std::mutex> guard{mtx};
    auto l = labels(e);
    auto seconds = [](auto d) {
      return std::chrono::duration<double>(d).count();
    };
    // A job that ran frees its executor.
    auto ran = [&] {
      if (e.job && e.job->reserved_by)
        busy.Add({{"queue", e.queue}}).Decrement();
    };
    switch (e.kind) {
    case event_kind::job_enqueued:
      enqueued.Add(l).Increment();
      break;
    case event_kind::job_started:
      started.Add(l).Increment();
      wait_time.Add(l, seconds_buckets()).Observe(seconds(e.queue_time));
      busy.Add({{"queue", e.queue}}).Increment();
      break;
    case event_kind::job_succeeded:
      succeeded.Add(l).Increment();
      run_time.Add(l, seconds_buckets()).Observe(seconds(e.duration));
      ran();
      break;
    case event_kind::job_failed:
      failed.Add(l).Increment();
      run_time.Add(l, seconds_buckets()).Observe(seconds(e.duration));
      ran();
      break;
    case event_kind::job_exception:
      retried.Add(l).Increment();
      run_time.Add(l, seconds_buckets()).Observe(seconds(e.duration));
      ran();
      break;
    case event_kind::job_snoozed:
      ran();
      break;
    case event_kind::job_cancelled:
      cancelled.Add(l).Increment();
      ran();
      break;
    case event_kind::job_rescued:
      rescued.Add(l).Increment();
      break;
    case event_kind::db_error:
      db_errors.Add({}).Increment();
      break;
    case event_kind::workflow_started:
      workflows_started.Add({}).Increment();
      break;
    case event_kind::workflow_finished:
      workflows_finished.Add({{"state", e.state}}).Increment();
      workflow_time.Add({}, seconds_buckets()).Observe(seconds(e.duration));
      break;
    case event_kind::workflow_stuck:
      workflows_stuck.Add({}).Increment();
      break;
    case event_kind::queue_scaled:
      if (auto at = e.message.rfind("-> "); at != std::string::npos)
        executors.Add({{"queue", e.queue}})
            .Set(std::atof(e.message.c_str() + at + 3));
      break;
    default:
      break;
    }
  }

  void refresh(db_adapter& db) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      auto now = std::chrono::steady_clock::now();
      if (ever_refreshed && now - refreshed < std::chrono::seconds{1})
        return;
      refreshed = now;
      ever_refreshed = true;
    }
    auto names = db.stats_by_name();
    auto queues = db.known_queues();
    if (!names || !queues) {
      std::lock_guard<std::mutex> guard{mtx};
      db_errors.Add({}).Increment();
      return;
    }
    std::map<std::string, std::string> queue_of;
    std::vector<queue_stats> limited;
    for (auto& q : *queues) {
      for (auto& n : q.job_names)
        queue_of[n] = q.queue;
      queue_stats qs;
      qs.queue = q.queue;
      qs.job_names = q.job_names;
      if (auto err = detail::add_limits(db, qs)) {
        std::lock_guard<std::mutex> guard{mtx};
        db_errors.Add({}).Increment();
        return;
      }
      if (!qs.limits.empty())
        limited.push_back(std::move(qs));
    }
    std::lock_guard<std::mutex> guard{mtx};
    for (auto& qs : limited) {
      keys_full.Add({{"queue", utf8_repaired(qs.queue)}})
          .Set(static_cast<double>(qs.keys_full));
      waiting_on_limit.Add({{"queue", utf8_repaired(qs.queue)}})
          .Set(static_cast<double>(qs.waiting_on_limit));
      if (qs.rate) {
        auto held = std::count_if(
            qs.rate->keys.begin(), qs.rate->keys.end(),
            [](const rate_key_state& k) { return k.available == 0; });
        rate_keys_held.Add({{"limit", utf8_repaired(qs.rate->limit.name)}})
            .Set(static_cast<double>(held));
      }
    }
    std::set<prometheus::Gauge*> seen;
    for (auto& n : *names) {
      auto q = queue_of.count(n.name) ? queue_of[n.name] : std::string{};
      auto set = [&](const char* state, int64_t v) {
        auto& g = jobs.Add(
            {{"queue", utf8_repaired(q)}, {"job", utf8_repaired(n.name)},
             {"state", state}});
        g.Set(static_cast<double>(v));
        seen.insert(&g);
      };
      set("waiting", n.counts.available);
      set("scheduled", n.counts.scheduled);
      set("running", n.counts.reserved);
      set("succeeded", n.counts.succeeded);
      set("failed", n.counts.failed);
      set("cancelled", n.counts.cancelled);
    }
    for (auto* g : job_series)
      if (seen.count(g) == 0)
        jobs.Remove(g);
    job_series = std::move(seen);
  }
};

metrics::metrics() : impl_(std::make_shared<impl>()) {}

metrics::~metrics() = default;

event_listener metrics::listener() {
  auto p = impl_;
  return [p](const event& e) { p->on_event(e); };
}

void metrics::set_executors(const std::string& queue, int n) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  impl_->executors.Add({{"queue", queue}}).Set(n);
  impl_->busy.Add({{"queue", queue}});
}

std::string metrics::scrape(db_adapter& db) {
  impl_->refresh(db);
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return prometheus::TextSerializer{}.Serialize(impl_->reg->Collect());
}

// -- the server
// ----------------------------------------------------------------

namespace {

using detail::http_request;
using detail::http_response;

std::string random_token() {
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> dist;
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx",
                static_cast<unsigned long long>(dist(rd)),
                static_cast<unsigned long long>(dist(rd)));
  return buf;
}

/// The addresses that serve without a token: this machine's loopback
/// address and name, exactly.
bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1";
}

bool is_wildcard(const std::string& host) {
  return host == "0.0.0.0" || host == "::";
}

/// Constant-time comparison of a presented token with the expected one.
bool same_token(const std::string& a, const std::string& b) {
  if (a.size() != b.size())
    return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

/// Why `token` cannot be a token (it travels in a header and a cookie), or
/// empty.
std::string token_problem(const std::string& token) {
  if (token.size() > 256)
    return "is longer than 256 bytes";
  for (unsigned char c : token)
    if (!std::isalnum(c) && std::string_view{"-._~+/="}.find(c) ==
                                std::string_view::npos)
      return "may hold only letters, digits and - . _ ~ + / =";
  return {};
}

/// The host part of a Host header or an origin's authority (`[::1]:80` ->
/// `::1`).
std::string host_part(std::string_view authority) {
  if (!authority.empty() && authority.front() == '[') {
    auto end = authority.find(']');
    return end == std::string_view::npos
               ? std::string{}
               : std::string{authority.substr(1, end - 1)};
  }
  auto colon = authority.find(':');
  std::string h{authority.substr(0, colon)};
  for (auto& c : h)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return h;
}

int status_of(const caf::error& err) {
  switch (code_of(err)) {
  case errc::job_not_found:
  case errc::unknown_queue:
    return 404;
  case errc::invalid_state:
    return 409;
  case errc::invalid_argument:
  case errc::invalid_job_name:
  case errc::invalid_payload:
    return 400;
  default:
    return 503;
  }
}

/// The query parameter `key` of `req`; empty when absent.
std::string query_param(const http_request& req, const char* key) {
  auto i = req.query.find(key);
  return i == req.query.end() ? std::string{} : i->second;
}

/// JSON text; stored text that is not UTF-8 shows with U+FFFD instead of
/// failing the whole answer.
std::string json_text(const nlohmann::json& body) {
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace

struct http_server::impl {
  adapter_factory store;
  http_options options;
  std::shared_ptr<bg_jobs::metrics> metrics;
  /// Where the effects of actions go (none: the store's journal).
  detail::action_sink sink;
  std::unique_ptr<detail::bounded_server> server;
  std::string csrf = random_token();
  std::mutex pool_mtx;
  std::vector<std::unique_ptr<db_adapter>> pool;

  /// A connection for one request, returned to the pool afterwards.
  struct lease {
    impl* owner;
    std::unique_ptr<db_adapter> db;
    lease(impl* o, std::unique_ptr<db_adapter> d)
        : owner(o), db(std::move(d)) {}
    lease(lease&& other) noexcept
        : owner(other.owner), db(std::move(other.db)) {}
    lease& operator=(lease&&) = delete;
    ~lease() {
      if (db) {
        std::lock_guard<std::mutex> guard{owner->pool_mtx};
        if (owner->pool.size() < 4)
          owner->pool.push_back(std::move(db));
      }
    }
  };

  caf::expected<lease> connect() {
    {
      std::lock_guard<std::mutex> guard{pool_mtx};
      if (!pool.empty()) {
        lease l{this, std::move(pool.back())};
        pool.pop_back();
        return l;
      }
    }
    auto db = store();
    if (!db)
      return std::move(db.error());
    return lease{this, std::move(*db)};
  }

  static void reply(http_response& res, int status,
                    const nlohmann::json& body) {
    res.status = status;
    res.content_type = "application/json";
    res.body = json_text(body);
  }

  static void fail(http_response& res, const caf::error& err) {
    reply(res, status_of(err),
          {{"error", to_string(code_of(err))}, {"message", message_of(err)}});
  }

  /// Runs `f` on a connection; a connection that failed is not reused.
  template <class F>
  void with_db(http_response& res, F f) {
    auto l = connect();
    if (!l) {
      fail(res, l.error());
      return;
    }
    try {
      if (auto err = f(*l->db)) {
        if (code_of(err) == errc::connection_lost ||
            code_of(err) == errc::database_unavailable)
          l->db.reset();
        fail(res, err);
      }
    } catch (const std::exception& e) {
      l->db.reset();
      reply(res, 500, {{"error", "internal"}, {"message", e.what()}});
    }
  }

  /// Whether `host` (from a Host header or an Origin) names this server:
  /// its address, this machine's loopback names, or a configured name.
  /// A page served under any other name (DNS rebinding) is refused.
  bool known_host(const std::string& host) const {
    if (is_wildcard(options.host))
      return true; // every name reaches it; the token guards it
    if (host == host_part(options.host) || is_loopback(host))
      return true;
    return std::find(options.allowed_hosts.begin(), options.allowed_hosts.end(),
                     host) != options.allowed_hosts.end();
  }

  /// Sets `res` and returns false unless the request may be served.
  bool admitted(const http_request& req, http_response& res) {
    if (!known_host(host_part(req.header("host")))) {
      reply(res, 421,
            {{"error", "unknown_host"},
             {"message", "this server does not answer to that Host name"}});
      return false;
    }
    if (options.token.empty())
      return true;
    auto auth = req.header("authorization");
    if (auth.rfind("Bearer ", 0) == 0 &&
        same_token(auth.substr(7), options.token))
      return true;
    auto cookies = req.header("cookie");
    auto key = std::string{"bg_jobs_token="};
    for (auto at = cookies.find(key); at != std::string::npos;
         at = cookies.find(key, at + 1)) {
      if (at > 0 && cookies[at - 1] != ' ' && cookies[at - 1] != ';')
        continue;
      auto end = cookies.find(';', at);
      auto value = cookies.substr(at + key.size(), end == std::string::npos
                                                       ? std::string::npos
                                                       : end - at - key.size());
      if (same_token(value, options.token))
        return true;
    }
    // `?token=` opens the page once: it sets the cookie and sends the
    // browser on without the token in its address.
    if (req.method == "GET" && req.path == "/" && req.query.count("token") &&
        same_token(req.query.at("token"), options.token)) {
      res.status = 303;
      res.headers.push_back({"Location", "/"});
      res.headers.push_back({"Set-Cookie", "bg_jobs_token=" + options.token +
                                               "; HttpOnly; SameSite=Strict; "
                                               "Path=/"});
      return false;
    }
    reply(res, 401,
          {{"error", "unauthorized"},
           {"message", "a token is required (Authorization: Bearer)"}});
    return false;
  }

  /// An action: POST with the page's CSRF token, from this server's own
  /// origin if the browser names one, refused when read-only.
  bool may_act(const http_request& req, http_response& res) {
    if (options.read_only) {
      reply(
          res, 403,
          {{"error", "read_only"}, {"message", "the dashboard is read-only"}});
      return false;
    }
    auto origin = req.header("origin");
    if (!origin.empty()) {
      auto scheme = origin.find("://");
      if (scheme == std::string::npos ||
          !known_host(host_part(std::string_view{origin}.substr(scheme + 3)))) {
        reply(res, 403,
              {{"error", "origin"},
               {"message", "actions are accepted from this server's own "
                           "page only"}});
        return false;
      }
    }
    if (!same_token(req.header("x-csrf-token"), csrf)) {
      reply(res, 403,
            {{"error", "csrf"}, {"message", "missing or wrong X-CSRF-Token"}});
      return false;
    }
    return true;
  }

  caf::error stats(db_adapter& db, nlohmann::json& out) {
    auto report = detail::store_stats(db, utc_now());
    if (!report)
      return std::move(report.error());
    out = {{"at", to_unix_ms(report->at)},
           {"queues", nlohmann::json::array()},
           {"names", nlohmann::json::array()}};
    for (auto& q : report->queues) {
      nlohmann::json one = {{"queue", q.queue},
                            {"job_names", q.job_names},
                            {"nodes", q.nodes},
                            {"concurrency", q.concurrency},
                            {"paused", q.paused},
                            {"counts", wire::as_json(q.counts)},
                            {"lag_ms", q.lag.count()}};
      one.update(wire::limits_as_json(q));
      out["queues"].push_back(std::move(one));
    }
    for (auto& n : report->names)
      out["names"].push_back(
          {{"name", n.name},
           {"counts", wire::as_json(n.counts)},
           {"oldest_waiting",
            n.oldest_waiting ? nlohmann::json(to_unix_ms(*n.oldest_waiting))
                             : nlohmann::json()}});
    return caf::none;
  }

  http_response handle(const http_request& req) {
    http_response res;
    res.headers = {{"X-Content-Type-Options", "nosniff"},
                   {"Cache-Control", "no-store"}};
    if (admitted(req, res))
      route(req, res);
    return res;
  }

  void route(const http_request& req, http_response& res) {
    static const std::regex job_path{R"(/api/jobs/([^/]+))"};
    static const std::regex job_action{R"(/api/jobs/([^/]+)/(retry|cancel|delete))"};
    static const std::regex queue_action{R"(/api/queues/([^/]+)/(pause|resume))"};
    static const std::regex schedule_action{
        R"(/api/schedules/([^/]+)/(pause|resume|trigger))"};
    static const std::regex workflow_path{R"(/api/workflows/([^/]+))"};
    static const std::regex workflow_action{
        R"(/api/workflows/([^/]+)/(retry|cancel))"};
    std::smatch m;
    auto& path = req.path;
    if (req.method == "GET") {
      if (path == "/")
        return page(res);
      if (path == "/metrics")
        return with_db(res, [&](db_adapter& db) -> caf::error {
          res.content_type = "text/plain; version=0.0.4";
          res.body = metrics->scrape(db);
          return caf::none;
        });
      if (path == "/api/stats")
        return with_db(res, [&](db_adapter& db) -> caf::error {
          nlohmann::json out;
          if (auto err = stats(db, out))
            return err;
          reply(res, 200, out);
          return caf::none;
        });
      if (path == "/api/throughput")
        return throughput(res);
      if (path == "/api/jobs")
        return list_jobs(req, res);
      if (std::regex_match(path, m, job_path))
        return with_db(res, [&](db_adapter& db) -> caf::error {
          auto id = parse_job_id(m[1].str());
          if (!id)
            return std::move(id.error());
          auto r = db.get_job(*id);
          if (!r)
            return std::move(r.error());
          reply(res, 200, wire::as_json(*r));
          return caf::none;
        });
      if (path == "/api/workflows")
        return list_workflows(req, res);
      if (path == "/api/schedules")
        return with_db(res, [&](db_adapter& db) -> caf::error {
          detail::control_plane cp{db};
          auto all = cp.schedules();
          if (!all)
            return std::move(all.error());
          auto out = nlohmann::json::array();
          for (auto& x : *all)
            out.push_back(x.to_json());
          reply(res, 200, out);
          return caf::none;
        });
      if (std::regex_match(path, m, workflow_path))
        return with_db(res, [&](db_adapter& db) -> caf::error {
          auto id = parse_job_id(m[1].str());
          if (!id)
            return std::move(id.error());
          auto w = db.get_workflow(*id);
          if (!w)
            return std::move(w.error());
          reply(res, 200, wire::as_json(*w));
          return caf::none;
        });
    } else if (req.method == "POST") {
      if (std::regex_match(path, m, job_action))
        return job_act(req, res, m[1].str(), m[2].str());
      if (std::regex_match(path, m, workflow_action))
        return workflow_act(req, res, m[1].str(), m[2].str());
      if (std::regex_match(path, m, queue_action))
        return queue_act(req, res, m[1].str(), m[2].str() == "pause");
      if (std::regex_match(path, m, schedule_action))
        return schedule_act(req, res, m[1].str(), m[2].str());
    }
    reply(res, 404, {{"error", "not_found"}, {"message", "no such resource"}});
  }

  void page(http_response& res) {
    res.headers.push_back(
        {"Content-Security-Policy",
         "default-src 'self'; script-src 'self' 'unsafe-inline'; "
         "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
         "frame-ancestors 'none'"});
    res.headers.push_back({"X-Frame-Options", "DENY"});
    res.content_type = "text/html; charset=utf-8";
    res.body = detail::dashboard_page(csrf, options.read_only);
  }

  void throughput(http_response& res) {
    with_db(res, [&](db_adapter& db) -> caf::error {
      auto since = utc_now() - std::chrono::hours{1};
      auto buckets = db.finished_per_bucket(since, std::chrono::minutes{1});
      if (!buckets)
        return std::move(buckets.error());
      auto out = nlohmann::json::array();
      for (auto& b : *buckets)
        out.push_back({{"start", to_unix_ms(b.start)},
                       {"succeeded", b.succeeded},
                       {"failed", b.failed}});
      reply(res, 200, {{"buckets", out}, {"bucket_ms", 60000}});
      return caf::none;
    });
  }

  void list_jobs(const http_request& req, http_response& res) {
    with_db(res, [&](db_adapter& db) -> caf::error {
      auto param = [&](const char* key) { return query_param(req, key); };
      job_query q;
      if (auto state = param("state"); !state.empty()) {
        auto s = parse_job_state(state);
        if (!s)
          return make_error(errc::invalid_argument, "unknown state");
        q.state = *s;
      }
      if (auto name = param("name"); !name.empty())
        q.names = {name};
      if (auto want = param("queue"); !want.empty()) {
        auto names = names_of_queue(db, want);
        if (!names)
          return std::move(names.error());
        if (q.names.empty())
          q.names = std::move(*names);
      }
      q.tag = param("tag");
      q.after = param("after");
      if (req.query.count("order"))
        q.newest_first = param("order") != "oldest";
      if (req.query.count("limit")) {
        auto n = parse_count("limit", param("limit"), 1, 1000);
        if (!n)
          return std::move(n.error());
        q.limit = static_cast<int>(*n);
      }
      auto page = db.list_jobs(q);
      if (!page)
        return std::move(page.error());
      auto jobs = nlohmann::json::array();
      for (auto& r : page->jobs)
        jobs.push_back(wire::as_json(r));
      reply(res, 200, {{"jobs", jobs}, {"next", page->next}});
      return caf::none;
    });
  }

  /// The job names of the queue `queue` as nodes announced it, or
  /// `unknown_queue`.
  static caf::expected<std::vector<std::string>>
  names_of_queue(db_adapter& db, const std::string& queue) {
    auto queues = db.known_queues();
    if (!queues)
      return std::move(queues.error());
    for (auto& k : *queues)
      if (k.queue == queue)
        return k.job_names;
    return make_error(errc::unknown_queue,
                      "no node has announced a queue '" + printable(queue) +
                          "'");
  }

  void job_act(const http_request& req, http_response& res,
               const std::string& id_text, const std::string& op) {
    if (!may_act(req, res))
      return;
    with_db(res, [&](db_adapter& db) -> caf::error {
      auto id = parse_job_id(id_text);
      if (!id)
        return std::move(id.error());
      detail::control_plane cp{db};
      if (op == "delete") {
        if (auto r = cp.remove(*id); !r)
          return std::move(r.error());
        report(db, cp);
        reply(res, 200, {{"deleted", *id}});
        return caf::none;
      }
      auto r = op == "retry" ? cp.retry(*id)
                             : cp.cancel(*id, "cancelled from the dashboard");
      if (!r)
        return std::move(r.error());
      report(db, cp);
      reply(res, 200, wire::as_json(*r));
      return caf::none;
    });
  }

  void list_workflows(const http_request& req, http_response& res) {
    with_db(res, [&](db_adapter& db) -> caf::error {
      auto param = [&](const char* key) { return query_param(req, key); };
      workflow_query q;
      if (auto state = param("state"); !state.empty()) {
        auto s = parse_workflow_state(state);
        if (!s)
          return make_error(errc::invalid_argument, "unknown workflow state");
        q.state = *s;
      }
      if (req.query.count("before")) {
        auto n = parse_count("before", param("before"), 1,
                             std::numeric_limits<int64_t>::max());
        if (!n)
          return std::move(n.error());
        q.before_id = *n;
      }
      if (req.query.count("limit")) {
        auto n = parse_count("limit", param("limit"), 1, 1000);
        if (!n)
          return std::move(n.error());
        q.limit = static_cast<int>(*n);
      }
      auto page = db.list_workflows(q);
      if (!page)
        return std::move(page.error());
      auto out = nlohmann::json::array();
      for (auto& w : *page) {
        auto one = wire::as_json(w);
        one.erase("tasks");
        out.push_back(std::move(one));
      }
      reply(res, 200, {{"workflows", out}});
      return caf::none;
    });
  }

  void workflow_act(const http_request& req, http_response& res,
                    const std::string& id_text, const std::string& op) {
    if (!may_act(req, res))
      return;
    with_db(res, [&](db_adapter& db) -> caf::error {
      auto id = parse_job_id(id_text);
      if (!id)
        return std::move(id.error());
      detail::control_plane cp{db};
      auto w = op == "retry"
                   ? cp.retry_workflow(*id)
                   : cp.cancel_workflow(*id, "cancelled from the dashboard");
      if (!w)
        return std::move(w.error());
      report(db, cp);
      reply(res, 200, wire::as_json(*w));
      return caf::none;
    });
  }

  void queue_act(const http_request& req, http_response& res,
                 const std::string& queue, bool pause) {
    if (!may_act(req, res))
      return;
    with_db(res, [&](db_adapter& db) -> caf::error {
      // As the command line: only a queue some node announced.
      detail::control_plane cp{db};
      if (auto r = cp.set_paused(pause_kind::queue, queue, pause); !r)
        return std::move(r.error());
      report(db, cp);
      reply(res, 200, {{"queue", queue}, {"paused", pause}});
      return caf::none;
    });
  }

  void schedule_act(const http_request& req, http_response& res,
                    const std::string& name, const std::string& action) {
    if (!may_act(req, res))
      return;
    with_db(res, [&](db_adapter& db) -> caf::error {
      detail::control_plane cp{db};
      nlohmann::json out{{"name", name}};
      if (action == "trigger") {
        auto j = cp.trigger_schedule(name);
        if (!j)
          return std::move(j.error());
        out["job_id"] = j->id;
      } else {
        bool pause = action == "pause";
        if (auto r = cp.set_paused(pause_kind::schedule, name, pause); !r)
          return std::move(r.error());
        out["paused"] = pause;
      }
      report(db, cp);
      reply(res, 200, out);
      return caf::none;
    });
  }

  /// Hands what an action means for the nodes on: to the node this server
  /// runs in, or else to the store's journal. The action is done either
  /// way; a journal that cannot be written loses its events only.
  void report(db_adapter& db, detail::control_plane& cp) {
    auto fx = cp.take_effects();
    if (sink)
      sink(std::move(fx));
    else
      detail::record_in_journal(db, fx);
  }
};

http_server::http_server(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

http_server::~http_server() {
  stop();
}

uint16_t http_server::port() const {
  return impl_->server->port();
}

void http_server::stop() {
  if (impl_ && impl_->server)
    impl_->server->stop();
}

namespace detail {

caf::expected<std::unique_ptr<http_server>>
http_access::start(adapter_factory store, http_options options,
                   std::shared_ptr<bg_jobs::metrics> m, action_sink sink) {
  return http_server::launch(std::move(store), std::move(options),
                             std::move(m), std::move(sink));
}

} // namespace detail

caf::expected<std::unique_ptr<http_server>>
http_server::start(adapter_factory store, http_options options,
                   std::shared_ptr<bg_jobs::metrics> m) {
  return launch(std::move(store), std::move(options), std::move(m), {});
}

caf::expected<std::unique_ptr<http_server>>
http_server::launch(adapter_factory store, http_options options,
                    std::shared_ptr<bg_jobs::metrics> m,
                    std::function<void(detail::action_effects)> sink) {
  if (!is_loopback(options.host) && options.token.empty())
    return make_error(errc::invalid_config,
                      "the dashboard listens on " + printable(options.host) +
                          ", beyond this machine's loopback address: give it "
                          "a token (--token or BG_JOBS_DASHBOARD_TOKEN)");
  if (auto why = token_problem(options.token); !why.empty())
    return make_error(errc::invalid_config, "the dashboard token " + why);
  {
    auto probe = store();
    if (!probe)
      return std::move(probe.error());
  }
  auto p = std::make_unique<impl>();
  p->store = std::move(store);
  p->options = std::move(options);
  p->metrics = m ? std::move(m) : std::make_shared<bg_jobs::metrics>();
  p->sink = std::move(sink);
  auto raw = p.get();
  auto server = detail::bounded_server::start(
      p->options.host, p->options.port, p->options.limits,
      [raw](const http_request& req) { return raw->handle(req); });
  if (!server)
    return std::move(server.error());
  p->server = std::move(*server);
  return std::unique_ptr<http_server>{new http_server(std::move(p))};
}

} // namespace bg_jobs
