#include "bg_jobs/http/http_server.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "bg_jobs/actors/wire.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/http/detail/dashboard_page.hpp"

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
    case event_kind::job_retry:
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
    for (auto& q : *queues)
      for (auto& n : q.job_names)
        queue_of[n] = q.queue;
    std::lock_guard<std::mutex> guard{mtx};
    for (auto& n : *names) {
      auto q = queue_of.count(n.name) ? queue_of[n.name] : std::string{};
      auto set = [&](const char* state, int64_t v) {
        jobs.Add({{"queue", q}, {"job", n.name}, {"state", state}})
            .Set(static_cast<double>(v));
      };
      set("waiting", n.counts.available);
      set("scheduled", n.counts.scheduled);
      set("running", n.counts.reserved);
      set("succeeded", n.counts.succeeded);
      set("failed", n.counts.failed);
      set("cancelled", n.counts.cancelled);
    }
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

std::string random_token() {
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> dist;
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx",
                static_cast<unsigned long long>(dist(rd)),
                static_cast<unsigned long long>(dist(rd)));
  return buf;
}

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" ||
         host.rfind("127.", 0) == 0;
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

std::optional<int64_t> to_id(const std::string& text) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || v <= 0)
    return std::nullopt;
  return v;
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

} // namespace

struct http_server::impl {
  adapter_factory store;
  http_options options;
  std::shared_ptr<bg_jobs::metrics> metrics;
  httplib::Server server;
  std::thread thread;
  int port = 0;
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

  static void reply(httplib::Response& res, int status,
                    const nlohmann::json& body) {
    res.status = status;
    res.set_content(body.dump(), "application/json");
  }

  static void fail(httplib::Response& res, const caf::error& err) {
    reply(res, status_of(err),
          {{"error", to_string(code_of(err))}, {"message", message_of(err)}});
  }

  /// Runs `f` on a connection; a connection that failed is not reused.
  template <class F>
  void with_db(httplib::Response& res, F f) {
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

  bool authorized(const httplib::Request& req, httplib::Response& res) {
    if (options.token.empty())
      return true;
    auto auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0 &&
        same_token(auth.substr(7), options.token))
      return true;
    auto cookies = req.get_header_value("Cookie");
    auto key = std::string{"bg_jobs_token="};
    for (auto at = cookies.find(key); at != std::string::npos;
         at = cookies.find(key, at + 1)) {
      auto end = cookies.find(';', at);
      auto value = cookies.substr(at + key.size(), end == std::string::npos
                                                       ? std::string::npos
                                                       : end - at - key.size());
      if (same_token(value, options.token))
        return true;
    }
    if (req.has_param("token") &&
        same_token(req.get_param_value("token"), options.token)) {
      res.set_header("Set-Cookie", "bg_jobs_token=" + options.token +
                                       "; HttpOnly; SameSite=Strict; Path=/");
      return true;
    }
    return false;
  }

  /// An action: POST with the page's CSRF token, refused when read-only.
  bool may_act(const httplib::Request& req, httplib::Response& res) {
    if (options.read_only) {
      reply(
          res, 403,
          {{"error", "read_only"}, {"message", "the dashboard is read-only"}});
      return false;
    }
    if (!same_token(req.get_header_value("X-CSRF-Token"), csrf)) {
      reply(res, 403,
            {{"error", "csrf"}, {"message", "missing or wrong X-CSRF-Token"}});
      return false;
    }
    return true;
  }

  caf::error stats(db_adapter& db, nlohmann::json& out) {
    auto names = db.stats_by_name();
    if (!names)
      return std::move(names.error());
    auto queues = db.known_queues();
    if (!queues)
      return std::move(queues.error());
    auto pauses = db.pauses();
    if (!pauses)
      return std::move(pauses.error());
    auto now = utc_now();
    out = {{"at", to_unix_ms(now)},
           {"queues", nlohmann::json::array()},
           {"names", nlohmann::json::array()}};
    for (auto& q : *queues) {
      auto total = sum_of(*names, q.job_names);
      auto& c = total.counts;
      auto& oldest = total.oldest_waiting;
      bool paused = queue_paused(*pauses, q.queue);
      int64_t lag =
          oldest ? std::max<int64_t>(0, to_unix_ms(now) - to_unix_ms(*oldest))
                 : 0;
      out["queues"].push_back({{"queue", q.queue},
                               {"job_names", q.job_names},
                               {"nodes", q.nodes},
                               {"concurrency", q.concurrency},
                               {"paused", paused},
                               {"counts", wire::as_json(c)},
                               {"lag_ms", lag}});
    }
    for (auto& n : *names)
      out["names"].push_back(
          {{"name", n.name},
           {"counts", wire::as_json(n.counts)},
           {"oldest_waiting",
            n.oldest_waiting ? nlohmann::json(to_unix_ms(*n.oldest_waiting))
                             : nlohmann::json()}});
    return caf::none;
  }

  void routes() {
    server.set_pre_routing_handler(
        [this](const httplib::Request& req, httplib::Response& res) {
          res.set_header("X-Content-Type-Options", "nosniff");
          res.set_header("Cache-Control", "no-store");
          if (authorized(req, res))
            return httplib::Server::HandlerResponse::Unhandled;
          reply(res, 401,
                {{"error", "unauthorized"},
                 {"message", "a token is required (Authorization: Bearer)"}});
          return httplib::Server::HandlerResponse::Handled;
        });
    server.Get("/", [this](const httplib::Request&, httplib::Response& res) {
      res.set_header("Content-Security-Policy",
                     "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                     "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                     "frame-ancestors 'none'");
      res.set_header("X-Frame-Options", "DENY");
      res.set_content(detail::dashboard_page(csrf, options.read_only),
                      "text/html; charset=utf-8");
    });
    server.Get(
        "/metrics", [this](const httplib::Request&, httplib::Response& res) {
          with_db(res, [&](db_adapter& db) -> caf::error {
            res.set_content(metrics->scrape(db), "text/plain; version=0.0.4");
            return caf::none;
          });
        });
    server.Get("/api/stats",
               [this](const httplib::Request&, httplib::Response& res) {
                 with_db(res, [&](db_adapter& db) -> caf::error {
                   nlohmann::json out;
                   if (auto err = stats(db, out))
                     return err;
                   reply(res, 200, out);
                   return caf::none;
                 });
               });
    server.Get("/api/throughput", [this](const httplib::Request&,
                                         httplib::Response& res) {
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
    });
    server.Get("/api/jobs", [this](const httplib::Request& req,
                                   httplib::Response& res) {
      with_db(res, [&](db_adapter& db) -> caf::error {
        job_query q;
        if (req.has_param("state")) {
          auto s = parse_job_state(req.get_param_value("state"));
          if (!s)
            return make_error(errc::invalid_argument, "unknown state");
          q.state = *s;
        }
        if (req.has_param("name") && !req.get_param_value("name").empty())
          q.names = {req.get_param_value("name")};
        if (req.has_param("queue") && !req.get_param_value("queue").empty()) {
          auto queues = db.known_queues();
          if (!queues)
            return std::move(queues.error());
          auto want = req.get_param_value("queue");
          auto i = std::find_if(queues->begin(), queues->end(),
                                [&](auto& k) { return k.queue == want; });
          if (i == queues->end())
            return make_error(errc::unknown_queue,
                              "no queue '" + printable(want) + "' is known");
          if (q.names.empty())
            q.names = i->job_names;
        }
        if (req.has_param("after"))
          q.after = req.get_param_value("after");
        if (req.has_param("order"))
          q.newest_first = req.get_param_value("order") != "oldest";
        if (req.has_param("limit")) {
          auto n = to_id(req.get_param_value("limit"));
          if (!n)
            return make_error(errc::invalid_argument, "bad limit");
          q.limit = static_cast<int>(std::min<int64_t>(*n, 100000));
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
    });
    server.Get(R"(/api/jobs/([^/]+))", [this](const httplib::Request& req,
                                              httplib::Response& res) {
      with_db(res, [&](db_adapter& db) -> caf::error {
        auto id = to_id(req.matches[1]);
        if (!id)
          return make_error(errc::invalid_argument, "a job id is a number");
        auto r = db.get_job(*id);
        if (!r)
          return std::move(r.error());
        reply(res, 200, wire::as_json(*r));
        return caf::none;
      });
    });
    server.Post(
        R"(/api/jobs/([^/]+)/(retry|cancel|delete))",
        [this](const httplib::Request& req, httplib::Response& res) {
          if (!may_act(req, res))
            return;
          with_db(res, [&](db_adapter& db) -> caf::error {
            auto id = to_id(req.matches[1]);
            if (!id)
              return make_error(errc::invalid_argument, "a job id is a number");
            std::string op = req.matches[2];
            if (op == "delete") {
              if (auto r = db.delete_job(*id); !r)
                return std::move(r.error());
              reply(res, 200, {{"deleted", *id}});
              return caf::none;
            }
            auto r = op == "retry" ? db.retry_job(*id)
                                   : db.cancel_job(*id, "cancelled from the "
                                                        "dashboard");
            if (!r)
              return std::move(r.error());
            reply(res, 200, wire::as_json(*r));
            return caf::none;
          });
        });
    server.Post(R"(/api/queues/([^/]+)/(pause|resume))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  if (!may_act(req, res))
                    return;
                  with_db(res, [&](db_adapter& db) -> caf::error {
                    std::string queue = req.matches[1];
                    auto r = std::string{req.matches[2]} == "pause"
                                 ? db.pause(pause_kind::queue, queue)
                                 : db.resume(pause_kind::queue, queue);
                    if (!r)
                      return std::move(r.error());
                    reply(res, 200,
                          {{"queue", queue},
                           {"paused", std::string{req.matches[2]} == "pause"}});
                    return caf::none;
                  });
                });
  }
};

http_server::http_server(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

http_server::~http_server() {
  stop();
}

uint16_t http_server::port() const {
  return static_cast<uint16_t>(impl_->port);
}

void http_server::stop() {
  if (!impl_)
    return;
  impl_->server.stop();
  if (impl_->thread.joinable())
    impl_->thread.join();
}

caf::expected<std::unique_ptr<http_server>>
http_server::start(adapter_factory store, http_options options,
                   std::shared_ptr<bg_jobs::metrics> m) {
  if (!is_loopback(options.host) && options.token.empty())
    return make_error(errc::invalid_config,
                      "the dashboard listens on " + options.host +
                          ", beyond this machine: give it a token "
                          "(--token or BG_JOBS_DASHBOARD_TOKEN)");
  {
    auto probe = store();
    if (!probe)
      return std::move(probe.error());
  }
  auto p = std::make_unique<impl>();
  p->store = std::move(store);
  p->options = std::move(options);
  p->metrics = m ? std::move(m) : std::make_shared<bg_jobs::metrics>();
  p->routes();
  p->server.set_keep_alive_max_count(100);
  p->port =
      p->options.port == 0
          ? p->server.bind_to_any_port(p->options.host.c_str())
          : (p->server.bind_to_port(p->options.host.c_str(), p->options.port)
                 ? p->options.port
                 : -1);
  if (p->port <= 0)
    return make_error(errc::invalid_config,
                      "cannot listen on " + p->options.host + ":" +
                          std::to_string(p->options.port));
  auto raw = p.get();
  p->thread = std::thread{[raw] { raw->server.listen_after_bind(); }};
  return std::unique_ptr<http_server>{new http_server(std::move(p))};
}

} // namespace bg_jobs
