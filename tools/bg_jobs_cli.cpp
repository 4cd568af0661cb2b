// The bg_jobs command-line program: operate a store without writing code.
// `bg_jobs --help` lists the commands; each has its own `--help`.
//
// Exit status: 0 done, 1 the operation failed (a one-line message on
// stderr), 2 a usage error.
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <set>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include <pthread.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "bg_jobs/actors/detail/sealing.hpp"
#include "bg_jobs/actors/wire.hpp"
#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"
#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"
#include "bg_jobs/adapters/detail/store_spec.hpp"
#include "bg_jobs/core/clock.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/control/detail/control_plane.hpp"
#include "bg_jobs/core/parse.hpp"
#include "bg_jobs/http/http_server.hpp"
#include "bg_jobs/scheduling/cron_schedule.hpp"

namespace {

using nlohmann::json;

/// A failed operation: printed on one line, exit status 1.
struct failed {
  std::string message;
};

/// A bad command line found after parsing: exit status 2.
struct usage_error {
  std::string message;
};

/// The password a store spec carries, if any: a URI's userinfo, or a
/// `password` parameter of a URI or conninfo.
std::vector<std::string> passwords_in(const std::string& db) {
  std::vector<std::string> found;
  for (auto key : {"password=", "password%3d", "password%3D"})
    for (auto at = db.find(key); at != std::string::npos;
         at = db.find(key, at + 1)) {
      auto from = at + std::string_view{key}.size();
      auto end = db.find_first_of(" &", from);
      found.push_back(db.substr(from, end == std::string::npos
                                          ? std::string::npos
                                          : end - from));
    }
  if (auto scheme = db.find("://"); scheme != std::string::npos) {
    auto at = db.find('@', scheme);
    auto colon = db.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at)
      found.push_back(db.substr(colon + 1, at - colon - 1));
  }
  std::vector<std::string> all;
  for (auto& p : found) {
    if (p.empty())
      continue;
    all.push_back(p);
    // Also as libpq may quote it back: decoded, or decoded up to an escape
    // it could not read.
    std::string decoded;
    for (size_t i = 0; i < p.size(); ++i) {
      auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); };
      if (p[i] == '%' && i + 2 < p.size() &&
          hex(p[i + 1]) && hex(p[i + 2])) {
        decoded += static_cast<char>(std::stoi(p.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        decoded += p[i];
      }
    }
    if (decoded != p && !decoded.empty())
      all.push_back(decoded);
  }
  return all;
}

/// `message` about the store `db` with every form of its password
/// replaced by `***`.
std::string without_password(std::string message, const std::string& db) {
  for (auto& p : passwords_in(db))
    for (auto at = message.find(p); at != std::string::npos;
         at = message.find(p, at))
      message.replace(at, p.size(), "***");
  // libpq quotes the token it could not decode: never print it.
  if (auto at = message.find("percent-encoded token: \"");
      at != std::string::npos) {
    auto from = at + 24;
    auto end = message.find('"', from);
    message.replace(from, end == std::string::npos ? std::string::npos
                                                   : end - from,
                    "***");
  }
  return message;
}

/// `db` without its password (for messages).
std::string redacted(std::string db) {
  if (auto at = db.find("password="); at != std::string::npos) {
    auto end = db.find(' ', at);
    db.replace(at + 9,
               end == std::string::npos ? std::string::npos : end - at - 9,
               "***");
  }
  if (auto scheme = db.find("://"); scheme != std::string::npos) {
    auto at = db.find('@', scheme);
    auto colon = db.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at)
      db.replace(colon + 1, at - colon - 1, "***");
  }
  return db;
}

struct store_args {
  std::string db;
  std::string prefix;

  bg_jobs::adapter_factory factory() const {
    auto spec = db;
    if (spec.empty())
      if (auto env = std::getenv("BG_JOBS_DATABASE"))
        spec = env;
    if (spec.empty())
      throw usage_error{"no store: pass --db or set BG_JOBS_DATABASE"};
    return bg_jobs::factory_for(spec, prefix, "bg_jobs_cli");
  }

  std::string spec() const {
    if (!db.empty())
      return db;
    auto env = std::getenv("BG_JOBS_DATABASE");
    return env ? env : "";
  }

  /// Opens the store. Only `migrate up` creates a SQLite file
  /// (`may_create`): any other command on a mistyped path says so and
  /// leaves no empty file behind.
  /// The SQLite file the store names, or empty for PostgreSQL.
  std::string sqlite_file() const {
    auto s = spec();
    if (s.empty() || bg_jobs::is_postgres_spec(s))
      return {};
    return s.rfind("sqlite:", 0) == 0 ? s.substr(7) : s;
  }

  /// Whether the store names a SQLite file that does not exist.
  bool missing_file() const {
    auto path = sqlite_file();
    return !path.empty() && ::access(path.c_str(), F_OK) != 0;
  }

  std::unique_ptr<bg_jobs::db_adapter> open(bool need_schema = true,
                                            bool may_create = false) const {
    if (!may_create && missing_file())
      throw failed{"bg_jobs.database_unavailable: no database file '" +
                   bg_jobs::terminal_text(sqlite_file()) +
                   "' (run 'migrate up' to create one)"};
    auto db = factory()();
    if (!db)
      throw failed{bg_jobs::describe(db.error())};
    if (need_schema)
      if (auto ok = (*db)->check_schema(); !ok)
        throw failed{bg_jobs::describe(ok.error())};
    return std::move(*db);
  }
};

/// What a store call refused because of what was asked (a malformed
/// position, a name or payload it will not store) is a usage error.
[[noreturn]] void fail_with(const caf::error& err) {
  switch (bg_jobs::code_of(err)) {
  case bg_jobs::errc::invalid_argument:
  case bg_jobs::errc::invalid_job_name:
  case bg_jobs::errc::invalid_payload:
    throw usage_error{bg_jobs::describe(err)};
  default:
    throw failed{bg_jobs::describe(err)};
  }
}

template <class T>
T value_of(caf::expected<T> x) {
  if (!x)
    fail_with(x.error());
  return std::move(*x);
}

void ok_or_fail(const caf::expected<void>& x) {
  if (!x)
    fail_with(x.error());
}

/// Records the events of the action just done in the store, for the node
/// that holds the upkeep to report as its own. The action is done: a
/// journal that cannot be written is a warning.
void journal(bg_jobs::db_adapter& db, bg_jobs::detail::control_plane& cp) {
  if (auto err = bg_jobs::detail::record_in_journal(db, cp.take_effects()))
    std::cerr << "bg_jobs: warning: the action is done, but its event was not "
                 "recorded for the nodes: "
              << bg_jobs::describe(err) << '\n';
}

/// A value read strictly from the command line, or a usage error.
template <class T>
T arg_of(caf::expected<T> x) {
  if (!x)
    throw usage_error{bg_jobs::describe(x.error())};
  return std::move(*x);
}

std::vector<int64_t> ids_of(const std::vector<std::string>& texts) {
  std::vector<int64_t> ids;
  for (auto& t : texts)
    ids.push_back(arg_of(bg_jobs::parse_job_id(t)));
  return ids;
}

/// JSON text; stored text that is not UTF-8 shows with U+FFFD.
std::string json_text(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// Stored text for the terminal (`bg_jobs::terminal_text`).
std::string shown(const std::string& text) {
  return bg_jobs::terminal_text(text);
}

/// The text of `file` (`-`: standard input), at most `limit` bytes;
/// `what` names it in errors.
std::string read_text(const std::string& file, size_t limit,
                      const std::string& what) {
  std::ifstream f;
  std::istream* in = &std::cin;
  if (file != "-") {
    f.open(file, std::ios::binary);
    if (!f)
      throw usage_error{"cannot read " + what + " '" + shown(file) + "'"};
    in = &f;
  }
  std::string text(limit + 1, '\0');
  in->read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in->gcount()));
  if (text.size() > limit)
    throw usage_error{"the " + what + " is larger than " +
                      std::to_string(limit / 1024) + " KiB"};
  return text;
}

/// A payload from `--payload-file` (`-`: standard input), at most 1 MiB.
std::string read_payload(const std::string& file) {
  return read_text(file, 1024 * 1024, "--payload-file");
}

std::string when(const std::optional<bg_jobs::timestamp>& t) {
  return t ? bg_jobs::to_iso8601(*t) : std::string{"-"};
}

std::string age(std::chrono::milliseconds d) {
  auto s = d.count() / 1000;
  if (s < 120)
    return std::to_string(d.count() / 1000.0).substr(0, 4) + "s";
  if (s < 7200)
    return std::to_string(s / 60) + "m";
  return std::to_string(s / 3600) + "h";
}

/// Prints rows as columns aligned by their widest cell.
void table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      width.resize(std::max(width.size(), r.size()));
      width[i] = std::max(width[i], r[i].size());
    }
  for (auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size())
        line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::cout << line << '\n';
  }
}

/// The counts of `c`; history counts read from PostgreSQL's statistics
/// rather than counted are marked `~`.
std::vector<std::string> counts_cells(const bg_jobs::job_stats& c) {
  std::string mark = c.history_estimated ? "~" : "";
  return {std::to_string(c.available),       std::to_string(c.scheduled),
          std::to_string(c.reserved),        mark + std::to_string(c.succeeded),
          mark + std::to_string(c.failed),   mark + std::to_string(c.cancelled)};
}

/// The job names of `queue` as nodes announced them. An unknown queue is a
/// failure (exit 1), or with `usage` a usage error (exit 2).
std::vector<std::string> names_of_queue(bg_jobs::db_adapter& db,
                                        const std::string& queue,
                                        bool usage = false) {
  for (auto& q : value_of(db.known_queues()))
    if (q.queue == queue)
      return q.job_names;
  if (usage)
    throw usage_error{"no node has announced a queue '" + shown(queue) + "'"};
  throw failed{"bg_jobs.unknown_queue: no node has announced a queue '" +
               bg_jobs::printable(queue) + "'"};
}

/// Checks every job of `ids` before any is changed: each must exist and be
/// in a state `allowed` accepts, else nothing is done (an id given twice is
/// refused too). A job can still change between this check and its turn;
/// then the command stops there, saying which.
template <class F>
void all_or_none(bg_jobs::db_adapter& db, const std::vector<int64_t>& ids,
                 const char* verb, F allowed) {
  std::set<int64_t> seen;
  for (auto id : ids) {
    if (!seen.insert(id).second)
      throw usage_error{"job " + std::to_string(id) + " is named twice"};
    auto r = db.get_job(id);
    if (!r)
      throw failed{bg_jobs::describe(r.error()) + " (nothing was " + verb +
                   ")"};
    if (!allowed(r->state))
      throw failed{"bg_jobs.invalid_state: job " + std::to_string(id) +
                   " is " + to_string(r->state) + " and cannot be " + verb +
                   " (nothing was " + verb + ")"};
  }
}

std::string to_seconds_iso(bg_jobs::timestamp t) {
  auto text = bg_jobs::to_iso8601(t); // ...SS.mmmZ
  return text.substr(0, 19) + "Z";
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"bg_jobs: operate a bg_jobs store (SQLite or PostgreSQL)"};
  app.set_version_flag("--version", "bg_jobs 0.1.0");
  app.require_subcommand(1);
  // Options of the program (--db, --json, ...) may follow a command too.
  app.fallthrough();
  store_args store;
  bool as_json = false;
  app.add_option("--db", store.db,
                 "the store: a SQLite path (or sqlite:PATH) or a PostgreSQL "
                 "URL or conninfo; default $BG_JOBS_DATABASE");
  app.add_option("--prefix", store.prefix,
                 "SQLite table prefix, or PostgreSQL schema, of the tables");
  app.add_flag("--json", as_json, "print data as JSON");

  // -- migrate -------------------------------------------------------------
  auto migrate = app.add_subcommand("migrate", "create, upgrade or remove "
                                               "the schema");
  migrate->require_subcommand(1);
  auto mig_up = migrate->add_subcommand("up", "create or upgrade the schema");
  auto mig_down = migrate->add_subcommand("down", "remove every bg_jobs table");
  bool down_yes = false;
  mig_down->add_flag("--yes", down_yes, "confirm: every job is deleted")
      ->required();
  auto mig_status = migrate->add_subcommand("status", "the schema version");

  // -- stats ---------------------------------------------------------------
  auto stats = app.add_subcommand("stats", "jobs per queue and job name");

  // -- jobs ----------------------------------------------------------------
  auto jobs = app.add_subcommand("jobs", "list, show, enqueue, retry, cancel "
                                         "or delete jobs");
  jobs->require_subcommand(1);
  auto list = jobs->add_subcommand("list", "one page of jobs in one state");
  std::string list_state = "waiting", list_queue, list_after;
  std::vector<std::string> list_names;
  std::string list_limit = "50";
  bool list_oldest = false;
  std::string list_tag;
  list->add_option("--state", list_state,
                   "waiting, scheduled, running, succeeded, failed, cancelled or "
                   "blocked (a workflow's task waiting for its parents)")
      ->check(CLI::IsMember({"waiting", "scheduled", "running", "succeeded",
                             "failed", "cancelled", "blocked"}));
  list->add_option("--name", list_names, "only jobs of these names");
  list->add_option("--queue", list_queue, "only jobs of this queue");
  list->add_option("--limit", list_limit, "jobs per page (1-1000)");
  list->add_option("--after", list_after,
                   "the page after this position (printed as 'next:')");
  list->add_flag("--oldest", list_oldest, "oldest first");
  list->add_option("--tag", list_tag, "only jobs carrying this tag");
  auto show = jobs->add_subcommand("show", "one job, wherever it is kept");
  std::string show_id;
  show->add_option("id", show_id, "the job id")->required();
  std::vector<std::string> show_keys;
  show->add_option("--key", show_keys,
                   "ID:HEX, a key to open encrypted values (repeatable)");
  auto enqueue = jobs->add_subcommand("enqueue", "store a job");
  std::string enq_name, enq_payload = "{}", enq_payload_file, enq_in, enq_at,
      enq_key;
  std::string enq_priority = "0";
  enqueue->add_option("name", enq_name, "the job name")->required();
  auto payload_opt =
      enqueue->add_option("--payload", enq_payload, "the payload as JSON");
  enqueue
      ->add_option("--payload-file", enq_payload_file,
                   "read the payload from a file (- for standard input)")
      ->excludes(payload_opt);
  auto in_opt = enqueue->add_option("--in", enq_in,
                                    "available after a delay (30s, 5m, 2h)");
  enqueue->add_option("--at", enq_at, "available at YYYY-MM-DDTHH:MM:SSZ")
      ->excludes(in_opt);
  enqueue->add_option("--priority", enq_priority, "0 (most urgent) to 9");
  enqueue->add_option("--unique-key", enq_key,
                      "keep a duplicate out while this key counts");
  std::string enq_ckey, enq_ckey2;
  enqueue->add_option("--concurrency-key", enq_ckey,
                      "the key its queue's concurrency limits count it under");
  enqueue->add_option("--second-concurrency-key", enq_ckey2,
                      "a second key that must have room too");
  std::vector<std::string> enq_tags;
  std::string enq_meta, enq_traceparent, enq_tracestate;
  enqueue->add_option("--tag", enq_tags, "a tag (repeatable)");
  enqueue->add_option("--meta", enq_meta, "metadata: a JSON object");
  enqueue->add_option("--traceparent", enq_traceparent,
                      "the W3C traceparent of the enqueuing code");
  enqueue->add_option("--tracestate", enq_tracestate,
                      "the W3C tracestate, with --traceparent");
  auto retry = jobs->add_subcommand("retry", "run failed or cancelled jobs "
                                             "again");
  std::vector<std::string> retry_ids;
  bool retry_failed = false;
  std::string retry_name;
  retry->add_option("ids", retry_ids, "job ids");
  retry->add_flag("--failed", retry_failed,
                  "every failed job (of --name, which it needs)");
  retry->add_option("--name", retry_name, "the job name for --failed");
  auto cancel = jobs->add_subcommand("cancel", "cancel jobs");
  std::vector<std::string> cancel_ids;
  std::string cancel_reason = "cancelled from the command line";
  cancel->add_option("ids", cancel_ids, "job ids")->required();
  cancel->add_option("--reason", cancel_reason, "kept with the job");
  auto del = jobs->add_subcommand("delete", "delete waiting or finished jobs");
  std::vector<std::string> delete_ids;
  del->add_option("ids", delete_ids, "job ids")->required();

  // -- workflows -----------------------------------------------------------
  auto workflows = app.add_subcommand(
      "workflows", "list, show, cancel or retry workflows");
  workflows->require_subcommand(1);
  auto w_list = workflows->add_subcommand("list", "workflows, newest first");
  std::string w_state;
  std::string w_before = "0";
  std::string w_limit = "50";
  w_list->add_option("--state", w_state,
                     "running, succeeded, failed or cancelled");
  w_list->add_option("--before", w_before, "only ids below this one");
  w_list->add_option("--limit", w_limit, "1 to 1000 (default 50)");
  auto w_show = workflows->add_subcommand("show", "one workflow and its tasks");
  auto w_enqueue = workflows->add_subcommand(
      "enqueue", "store a workflow given as JSON ({\"name\", \"tasks\": [{\"name\", "
                 "\"request\", \"after\"}]}, as the wire carries it)");
  std::string w_file;
  w_enqueue->add_option("file", w_file, "the JSON file, or - for stdin")
      ->required();
  auto w_cancel = workflows->add_subcommand(
      "cancel", "cancel what has not finished; running tasks are asked to stop");
  auto w_retry = workflows->add_subcommand(
      "retry", "run failed, cancelled and held tasks again");
  std::string w_id;
  std::string w_reason = "cancelled from the command line";
  for (auto* c : {w_show, w_cancel, w_retry})
    c->add_option("id", w_id, "the workflow id")->required();
  w_cancel->add_option("--reason", w_reason, "kept with its tasks");

  // -- queues --------------------------------------------------------------
  auto queues = app.add_subcommand("queues", "list, pause or resume queues");
  queues->require_subcommand(1);
  auto q_list = queues->add_subcommand("list", "queues the nodes announced");
  auto q_pause = queues->add_subcommand("pause", "stop reserving, on every "
                                                 "node");
  auto q_resume = queues->add_subcommand("resume", "reserve again");
  std::string queue_name;
  q_pause->add_option("queue", queue_name, "the queue")->required();
  q_resume->add_option("queue", queue_name, "the queue")->required();

  // -- limits --------------------------------------------------------------
  auto limits = app.add_subcommand("limits", "list or change the concurrency "
                                             "limits of queues");
  limits->require_subcommand(1);
  auto l_list = limits->add_subcommand("list", "every stored limit");
  auto l_set = limits->add_subcommand(
      "set", "set a limit of a limited queue; every node honours it at its "
             "next claim");
  auto l_remove = limits->add_subcommand("remove", "remove a limit");
  std::string limit_queue, limit_n, limit_key;
  bool limit_total = false;
  for (auto* c : {l_set, l_remove}) {
    c->add_option("queue", limit_queue, "the queue")->required();
    auto key_opt =
        c->add_option("--key", limit_key, "one key's limit (else per key)");
    c->add_flag("--total", limit_total, "the queue's total across nodes")
        ->excludes(key_opt);
  }
  l_set->add_option("max_running", limit_n, "1 to 1000000")->required();
  auto l_keys = limits->add_subcommand(
      "keys", "the keys of a queue with jobs running or waiting, the most "
              "waiting first, against their limits");
  std::string keys_top = "20";
  l_keys->add_option("queue", limit_queue, "the queue")->required();
  l_keys->add_option("--top", keys_top, "how many keys, 1 to 10000 (20)");
  auto l_blocked = limits->add_subcommand(
      "blocked", "the keys of a sequenced queue that a failed job holds");
  l_blocked->add_option("queue", limit_queue, "the queue")->required();
  auto l_unblock = limits->add_subcommand(
      "unblock", "let the jobs of a key go past its failed ones (which stay "
                 "failed)");
  l_unblock->add_option("queue", limit_queue, "the queue")->required();
  l_unblock->add_option("key", limit_key, "the key")->required();
  auto l_rate = limits->add_subcommand(
      "rate", "a rate limit: its numbers and the keys that drew from it "
              "(starts left now, time blocked)");
  std::string rate_name, rate_allowed, rate_period, rate_burst = "0";
  l_rate->add_option("name", rate_name, "the rate limit")->required();
  l_rate->add_option("--top", keys_top, "how many keys, 1 to 10000 (20)");
  auto l_rate_set = limits->add_subcommand(
      "rate-set", "change a rate limit a queue declared; every node honours "
                  "it at its next claim");
  l_rate_set->add_option("name", rate_name, "the rate limit")->required();
  l_rate_set->add_option("allowed", rate_allowed, "starts per period, 1 to "
                                                  "1000000")
      ->required();
  l_rate_set->add_option("period", rate_period, "the period (500ms, 1s, 1m)")
      ->required();
  l_rate_set->add_option("--burst", rate_burst,
                         "starts at once, 1 to 1000000 (allowed)");

  // -- schedules -----------------------------------------------------------
  auto schedules = app.add_subcommand(
      "schedules", "list, add, change, pause, trigger or remove schedules");
  schedules->require_subcommand(1);
  auto s_list = schedules->add_subcommand(
      "list", "every stored schedule, declared in code or added at run time");
  auto s_set = schedules->add_subcommand(
      "set", "add a schedule, or change one added at run time; every node "
             "that runs its job schedules it");
  auto s_remove = schedules->add_subcommand(
      "remove", "remove a schedule added at run time (its waiting run is "
                "cancelled)");
  auto s_pause = schedules->add_subcommand(
      "pause", "enqueue nothing for it, on every node (its waiting run is "
               "skipped)");
  auto s_resume = schedules->add_subcommand("resume", "schedule it again");
  auto s_trigger = schedules->add_subcommand(
      "trigger", "a run now, in place of the one that waits");
  std::string sched_name, sched_job, sched_cron, sched_every, sched_tz,
      sched_payload = "{}", sched_priority = "0", sched_overlap = "one_waiting",
      sched_missed = "run_latest_once", sched_late = "1m",
      sched_catch_max = "10", sched_catch_window = "24h";
  for (auto* c : {s_set, s_remove, s_pause, s_resume, s_trigger})
    c->add_option("name", sched_name, "the schedule")->required();
  s_set->add_option("--job", sched_job, "the job each run enqueues")
      ->required();
  auto cron_opt =
      s_set->add_option("--cron", sched_cron, "a cron expression (5 or 6 "
                                              "fields, or an alias)");
  s_set->add_option("--every", sched_every,
                    "an interval from the end of each run (30s, 5m, 1h)")
      ->excludes(cron_opt);
  s_set->add_option("--tz", sched_tz, "the zone whose wall clock the cron "
                                      "expression matches (UTC)");
  s_set->add_option("--payload", sched_payload, "each run's payload (JSON)");
  s_set->add_option("--priority", sched_priority, "0 (first) to 9");
  s_set->add_option("--overlap", sched_overlap,
                    "times due while a run waits or runs: one_waiting "
                    "(default), skip or allow");
  s_set->add_option("--missed", sched_missed,
                    "runs missed while no node scheduled: run_latest_once "
                    "(default), skip or catch_up");
  s_set->add_option("--late-after", sched_late,
                    "how late a run may start before it counts as missed "
                    "(1m)");
  s_set->add_option("--catch-up-max", sched_catch_max,
                    "catch_up: at most this many missed runs, 1 to 1000 "
                    "(10)");
  s_set->add_option("--catch-up-window", sched_catch_window,
                    "catch_up: none older than this (24h)");

  // -- prune ---------------------------------------------------------------
  auto prune = app.add_subcommand("prune", "delete old history (one batch)");
  bool prune_dry = false;
  std::string prune_succeeded = "24h", prune_failed = "7d";
  prune->add_flag("--dry-run", prune_dry, "count, delete nothing");
  prune->add_option("--succeeded-age", prune_succeeded,
                    "keep succeeded jobs this long (24h)");
  prune->add_option("--failed-age", prune_failed,
                    "keep failed jobs this long (7d)");

  // -- cron ----------------------------------------------------------------
  auto cron = app.add_subcommand("cron", "cron expressions");
  cron->require_subcommand(1);
  auto cron_next = cron->add_subcommand(
      "next", "the next runs of a cron expression, as UTC instants");
  std::string cron_expr, cron_from, cron_tz;
  std::string cron_count = "1";
  cron_next->add_option("expr", cron_expr, "the cron expression")->required();
  cron_next->add_option("--from", cron_from,
                        "after this instant (YYYY-MM-DDTHH:MM:SSZ; now)");
  cron_next->add_option("--count", cron_count, "how many (1-100000)");
  cron_next->add_option("--tz", cron_tz,
                        "the zone whose wall clock it "
                        "matches");

  // -- serve ---------------------------------------------------------------
  auto serve = app.add_subcommand("serve", "the dashboard and /metrics");
  std::string listen = "127.0.0.1:9090", token;
  bool read_only = false;
  serve->add_option("--listen", listen, "HOST:PORT (127.0.0.1:9090)");
  serve->add_option("--token", token,
                    "required of every request; default "
                    "$BG_JOBS_DASHBOARD_TOKEN");
  serve->add_flag("--read-only", read_only, "no actions");
  std::vector<std::string> allowed_hosts;
  serve->add_option("--allow-host", allowed_hosts,
                    "a host name it answers to besides its address and "
                    "localhost (behind a proxy); repeatable");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Help and version are 0; every other parse error is a usage error.
    return app.exit(e) == 0 ? 0 : 2;
  }

  try {
    if (*mig_up) {
      auto db = store.open(false, true);
      ok_or_fail(db->migrate_up());
      std::cout << "schema at version " << value_of(db->schema_version())
                << '\n';
    } else if (*mig_down) {
      auto db = store.open(false);
      ok_or_fail(db->migrate_down());
      std::cout << "every bg_jobs table removed\n";
      (void)down_yes;
    } else if (*mig_status) {
      // A SQLite file that is not there has no schema (and is not made).
      auto v = store.missing_file()
                   ? 0
                   : value_of(store.open(false)->schema_version());
      auto current = bg_jobs::db_adapter::schema_version_current;
      std::string state = v == current  ? "current"
                          : v == 0      ? "missing: run 'migrate up'"
                          : v < current ? "older: run 'migrate up'"
                                        : "newer than this bg_jobs";
      if (as_json)
        std::cout << json_text(
                         {{"version", v}, {"current", current}, {"state", state}})
                  << '\n';
      else
        std::cout << "schema version " << v << " (this bg_jobs: " << current
                  << "): " << state << '\n';
      // A deploy script checks the status by the exit code.
      if (v != current)
        return 1;
    } else if (*stats) {
      auto db = store.open();
      auto now = bg_jobs::utc_now();
      auto report = value_of(bg_jobs::detail::store_stats(*db, now));
      auto& names = report.names;
      json out = {{"queues", json::array()}, {"names", json::array()}};
      std::vector<std::vector<std::string>> rows = {
          {"QUEUE", "WAITING", "SCHEDULED", "RUNNING", "SUCCEEDED", "FAILED",
           "CANCELLED", "OLDEST WAITING", "PAUSED", "NODES"}};
      for (auto& q : report.queues) {
        json one = {{"queue", q.queue},
                    {"job_names", q.job_names},
                    {"counts", bg_jobs::wire::as_json(q.counts)},
                    {"oldest_waiting_age_ms", q.lag.count()},
                    {"paused", q.paused},
                    {"nodes", q.nodes}};
        one.update(bg_jobs::wire::limits_as_json(q));
        out["queues"].push_back(std::move(one));
        auto row = counts_cells(q.counts);
        row.insert(row.begin(), shown(q.queue));
        row.push_back(q.oldest_waiting ? age(q.lag) : "-");
        row.push_back(q.paused ? "yes" : "no");
        row.push_back(q.nodes.empty() ? "none"
                                      : std::to_string(q.nodes.size()));
        rows.push_back(row);
      }
      std::vector<std::vector<std::string>> name_rows = {
          {"JOB NAME", "WAITING", "SCHEDULED", "RUNNING", "SUCCEEDED", "FAILED",
           "CANCELLED", "OLDEST WAITING"}};
      for (auto& n : names) {
        auto lag = n.oldest_waiting
                       ? std::chrono::duration_cast<std::chrono::milliseconds>(
                             now - *n.oldest_waiting)
                       : std::chrono::milliseconds{0};
        out["names"].push_back({{"name", n.name},
                                {"counts", bg_jobs::wire::as_json(n.counts)},
                                {"oldest_waiting_age_ms", lag.count()}});
        auto row = counts_cells(n.counts);
        row.insert(row.begin(), shown(n.name));
        row.push_back(n.oldest_waiting ? age(lag) : "-");
        name_rows.push_back(row);
      }
      if (as_json) {
        std::cout << json_text(out) << '\n';
      } else {
        table(rows);
        std::cout << '\n';
        table(name_rows);
        bool estimated = false;
        for (auto& n : names)
          estimated = estimated || n.counts.history_estimated;
        if (estimated)
          std::cout << "\n~ estimated from the store's statistics (a history"
                       " table past "
                    << bg_jobs::job_stats::exact_history_rows << " rows)\n";
      }
    } else if (*list) {
      auto db = store.open();
      bg_jobs::job_query q;
      q.state = *bg_jobs::parse_job_state(list_state);
      q.names = list_names;
      if (!list_queue.empty()) {
        auto names = names_of_queue(*db, list_queue);
        if (q.names.empty())
          q.names = names;
      }
      q.after = list_after;
      q.limit =
          static_cast<int>(arg_of(bg_jobs::parse_count("--limit", list_limit, 1, 1000)));
      q.newest_first = !list_oldest;
      q.tag = list_tag;
      auto page = value_of(db->list_jobs(q));
      if (as_json) {
        json out = {{"jobs", json::array()}, {"next", page.next}};
        for (auto& r : page.jobs)
          out["jobs"].push_back(bg_jobs::wire::as_json(r));
        std::cout << json_text(out) << '\n';
      } else {
        std::vector<std::vector<std::string>> rows = {
            {"ID", "NAME", "STATE", "ATTEMPTS", "PRIORITY", "AT", "ERROR"}};
        for (auto& r : page.jobs) {
          auto at = r.finished_at   ? r.finished_at
                    : r.reserved_at ? r.reserved_at
                                    : std::optional{r.available_at};
          auto err = shown(bg_jobs::utf8_repaired(r.error.value_or("")));
          if (err.size() > 60)
            err = bg_jobs::utf8_repaired(err.substr(0, 57)) + "...";
          rows.push_back({std::to_string(r.id), shown(r.name),
                          to_string(r.state), std::to_string(r.attempts),
                          std::to_string(r.priority), when(at), err});
        }
        table(rows);
        if (!page.next.empty())
          std::cout << "next: " << page.next << '\n';
      }
    } else if (*show) {
      auto id = arg_of(bg_jobs::parse_job_id(show_id));
      auto db = store.open();
      auto r = value_of(db->get_job(id));
      // Encrypted values show as such unless their key is given.
      bg_jobs::keyring ring;
      for (auto& k : show_keys) {
        auto colon = k.find(':');
        if (colon == std::string::npos)
          throw usage_error{"--key takes ID:HEX"};
        if (auto err = ring.add(k.substr(0, colon), k.substr(colon + 1)))
          throw usage_error{bg_jobs::describe(err)};
      }
      {
        bg_jobs::job opened;
        opened.id = r.id;
        opened.name = r.name;
        opened.payload = r.payload;
        opened.meta = r.meta;
        if (!ring.empty()) {
          if (auto err = bg_jobs::detail::open_job(opened, &ring))
            std::cerr << "bg_jobs: " << shown(bg_jobs::describe(err)) << '\n';
          r.payload = opened.payload;
          r.meta = opened.meta;
        }
        auto hide = [](json& v) {
          if (bg_jobs::keyring::sealed(v))
            v = "(encrypted with key '" + bg_jobs::keyring::key_of(v) + "')";
        };
        if (!as_json) {
          hide(r.payload);
          if (r.meta.is_object())
            for (auto& [k, v] : r.meta.items())
              hide(v);
        }
      }
      if (as_json) {
        std::cout << json_text(bg_jobs::wire::as_json(r)) << '\n';
      } else {
        table({{"id", std::to_string(r.id)},
               {"name", shown(r.name)},
               {"state", to_string(r.state)},
               {"priority", std::to_string(r.priority)},
               {"attempts", std::to_string(r.attempts)},
               {"created", when(r.created_at)},
               {"available", when(r.available_at)},
               {"reserved", when(r.reserved_at)},
               {"reserved by", shown(r.reserved_by.value_or("-"))},
               {"finished", when(r.finished_at)},
               {"error", shown(r.error.value_or("-"))},
               {"cancel asked", shown(r.cancel_reason.value_or("-"))},
               {"concurrency keys",
                r.concurrency_key.empty()
                    ? std::string{"-"}
                    : shown(r.concurrency_key) +
                          (r.second_concurrency_key.empty()
                               ? ""
                               : ", " + shown(r.second_concurrency_key))}});
        if (r.progress) {
          char percent[16];
          std::snprintf(percent, sizeof percent, "%.1f%%",
                        r.progress->fraction * 100);
          std::cout << "progress: " << percent << " (attempt "
                    << r.progress->attempt << ", "
                    << bg_jobs::to_iso8601(r.progress->at) << ")"
                    << (r.progress->text.empty()
                            ? std::string{}
                            : ": " + shown(r.progress->text))
                    << '\n';
        }
        if (!r.tags.empty()) {
          std::string tags;
          for (auto& t : r.tags)
            tags += (tags.empty() ? "" : ", ") + shown(t);
          std::cout << "tags: " << tags << '\n';
        }
        if (!r.trace.empty()) {
          std::cout << "traceparent: " << shown(r.trace.traceparent) << '\n';
          if (!r.trace.tracestate.empty())
            std::cout << "tracestate: " << shown(r.trace.tracestate) << '\n';
        }
        if (!r.meta.empty())
          std::cout << "meta:\n"
                    << bg_jobs::terminal_text(
                           r.meta.dump(2, ' ', false,
                                       json::error_handler_t::replace),
                           true)
                    << '\n';
        // JSON escapes control characters; U+2028-style overrides are
        // escaped for the terminal.
        std::cout << "payload:\n"
                  << bg_jobs::terminal_text(
                         r.payload.dump(2, ' ', false,
                                        json::error_handler_t::replace),
                         true)
                  << '\n';
        if (!r.output.is_null())
          std::cout << "output:\n"
                    << bg_jobs::terminal_text(
                           r.output.dump(2, ' ', false,
                                         json::error_handler_t::replace),
                           true)
                    << '\n';
        for (auto& e : r.errors) {
          auto text = e.contains("error") && e["error"].is_string()
                          ? e["error"].get<std::string>()
                          : std::string{};
          std::cout << "attempt " << e.value("attempt", 0) << " at "
                    << bg_jobs::to_iso8601(
                           bg_jobs::from_unix_ms(e.value("at", int64_t{0})))
                    << ": " << shown(text) << '\n';
        }
      }
    } else if (*enqueue) {
      if (!enq_payload_file.empty())
        enq_payload = read_payload(enq_payload_file);
      auto parsed = bg_jobs::job_request::parse(enq_name, enq_payload);
      if (!parsed)
        throw usage_error{bg_jobs::describe(parsed.error())};
      auto request = std::move(*parsed);
      if (!enq_in.empty())
        request.available_in(arg_of(bg_jobs::parse_duration(enq_in)));
      if (!enq_at.empty()) {
        auto t = bg_jobs::parse_iso8601(enq_at);
        if (!t)
          throw usage_error{"--at expects YYYY-MM-DDTHH:MM:SSZ, got '" +
                            enq_at + "'"};
        request.available_at(*t);
      }
      request.with_priority(static_cast<int>(
          arg_of(bg_jobs::parse_count("--priority", enq_priority, 0, 9))));
      if (!enq_key.empty()) {
        bg_jobs::unique_options u;
        u.key = enq_key;
        request.with_unique(u);
      }
      if (!enq_ckey.empty() || !enq_ckey2.empty())
        request.with_concurrency_key(enq_ckey, enq_ckey2);
      if (!enq_tags.empty())
        request.with_tags(enq_tags);
      if (!enq_meta.empty()) {
        if (bg_jobs::exceeds_payload_depth(enq_meta))
          throw usage_error{"--meta nests too deeply"};
        auto meta = json::parse(enq_meta, nullptr, false);
        if (meta.is_discarded())
          throw usage_error{"--meta is not valid JSON"};
        request.with_meta(std::move(meta));
      }
      if (!enq_traceparent.empty() || !enq_tracestate.empty())
        request.with_trace(enq_traceparent, enq_tracestate);
      // The whole request is checked before the store is touched.
      if (auto ok = request.validate(bg_jobs::clock::system()->now()); !ok)
        throw usage_error{bg_jobs::describe(ok.error())};
      auto db = store.open();
      bool runs_somewhere = false;
      for (auto& q : value_of(db->known_queues()))
        for (auto& n : q.job_names)
          runs_somewhere = runs_somewhere || n == enq_name;
      if (!runs_somewhere)
        std::cerr << "bg_jobs: note: no node has announced a queue that runs '"
                  << shown(enq_name)
                  << "'; the job waits until one does\n";
      auto j = value_of(db->enqueue_job(request));
      if (as_json)
        std::cout << json_text(bg_jobs::wire::as_json(j)) << '\n';
      else
        std::cout << (j.conflict ? "exists: job " : "enqueued job ") << j.id
                  << '\n';
    } else if (*retry) {
      if (!retry_failed && retry_ids.empty())
        throw usage_error{"give job ids, or --failed --name NAME"};
      if (retry_failed && !retry_ids.empty())
        throw usage_error{"give job ids or --failed, not both"};
      if (retry_failed && retry_name.empty())
        throw usage_error{"--failed needs --name NAME"};
      auto ids = ids_of(retry_ids);
      auto db = store.open();
      bg_jobs::detail::control_plane cp{*db};
      if (retry_failed) {
        auto n = value_of(cp.retry_failed(retry_name));
        journal(*db, cp);
        std::cout << (as_json ? json_text({{"retried", n}})
                              : "retried " + std::to_string(n) + " jobs")
                  << '\n';
      } else {
        all_or_none(*db, ids, "retried", [](bg_jobs::job_state s) {
          return s == bg_jobs::job_state::failed ||
                 s == bg_jobs::job_state::cancelled;
        });
        for (auto id : ids) {
          auto r = value_of(cp.retry(id));
          journal(*db, cp);
          std::cout << (as_json ? json_text(bg_jobs::wire::as_json(r))
                                : "retried job " + std::to_string(id))
                    << '\n';
        }
      }
    } else if (*w_list) {
      bg_jobs::workflow_query q;
      if (!w_state.empty()) {
        q.state = bg_jobs::parse_workflow_state(w_state);
        if (!q.state)
          throw usage_error{"--state must be running, succeeded, failed or "
                            "cancelled, not '" +
                            shown(w_state) + "'"};
      }
      q.before_id = w_before == "0" ? 0 : arg_of(bg_jobs::parse_job_id(w_before));
      q.limit = static_cast<int>(
          arg_of(bg_jobs::parse_count("--limit", w_limit, 1, 1000)));
      auto db = store.open();
      auto found = value_of(db->list_workflows(q));
      if (as_json) {
        json out = json::array();
        for (auto& w : found)
          out.push_back(bg_jobs::wire::as_json(w));
        std::cout << json_text(out) << '\n';
      } else {
        std::vector<std::vector<std::string>> rows = {
            {"ID", "NAME", "STATE", "TASKS", "SUCCEEDED", "FAILED", "CANCELLED",
             "HELD", "CREATED", "FINISHED"}};
        for (auto& w : found)
          rows.push_back(
              {std::to_string(w.id), shown(w.name),
               std::string{to_string(w.state)} + (w.stuck() ? " (stuck)" : ""),
               std::to_string(w.total), std::to_string(w.succeeded),
               std::to_string(w.failed), std::to_string(w.cancelled),
               std::to_string(w.held), when(w.created_at),
               when(w.finished_at)});
        table(rows);
      }
    } else if (*w_enqueue) {
      auto text = read_text(w_file, 1024 * 1024, "workflow file");
      bg_jobs::workflow w;
      if (auto err = bg_jobs::wire::decode(text, w))
        throw usage_error{bg_jobs::describe(err)};
      if (auto err = bg_jobs::check_workflow(w))
        throw usage_error{bg_jobs::describe(err)};
      auto db = store.open();
      auto ids = value_of(db->enqueue_workflow(w));
      if (as_json) {
        std::cout << json_text({{"workflow_id", ids.workflow_id},
                                {"tasks", ids.tasks}})
                  << '\n';
      } else {
        std::cout << "enqueued workflow " << ids.workflow_id << " with "
                  << ids.tasks.size() << " tasks\n";
      }
    } else if (*w_show || *w_cancel || *w_retry) {
      auto id = arg_of(bg_jobs::parse_job_id(w_id));
      if (*w_cancel)
        if (auto why = bg_jobs::text_problem(w_reason, 1000); !why.empty())
          throw usage_error{"--reason " + why};
      auto db = store.open();
      bg_jobs::workflow_info w;
      if (*w_show) {
        w = value_of(db->get_workflow(id));
      } else {
        bg_jobs::detail::control_plane cp{*db};
        w = value_of(*w_cancel ? cp.cancel_workflow(id, w_reason)
                               : cp.retry_workflow(id));
        journal(*db, cp);
      }
      if (as_json) {
        std::cout << json_text(bg_jobs::wire::as_json(w)) << '\n';
      } else {
        std::cout << "workflow " << w.id << " '" << shown(w.name) << "': "
                  << to_string(w.state) << (w.stuck() ? " (stuck)" : "")
                  << ", " << w.succeeded << " of " << w.total
                  << " succeeded, " << w.failed << " failed, " << w.cancelled
                  << " cancelled, " << w.held << " held\n";
        std::vector<std::vector<std::string>> rows = {
            {"TASK", "JOB", "JOB NAME", "STATE", "AFTER", "FINISHED"}};
        for (auto& t : w.tasks) {
          std::string after;
          for (auto& d : t.after)
            after += (after.empty() ? "" : ", ") + shown(d.parent) +
                     (d.on_failure == bg_jobs::parent_failure::cancel
                          ? ""
                          : std::string{" ("} + to_string(d.on_failure) + ")");
          rows.push_back({shown(t.name), std::to_string(t.job_id),
                          shown(t.job_name), to_string(t.state),
                          after.empty() ? "-" : after, when(t.finished_at)});
        }
        table(rows);
      }
    } else if (*cancel) {
      if (auto why = bg_jobs::text_problem(cancel_reason, 1000); !why.empty())
        throw usage_error{"--reason " + why};
      auto ids = ids_of(cancel_ids);
      auto db = store.open();
      all_or_none(*db, ids, "cancelled", [](bg_jobs::job_state s) {
        return s == bg_jobs::job_state::waiting ||
               s == bg_jobs::job_state::scheduled ||
               s == bg_jobs::job_state::running;
      });
      bg_jobs::detail::control_plane cp{*db};
      for (auto id : ids) {
        auto r = value_of(cp.cancel(id, cancel_reason));
        journal(*db, cp);
        std::cout << (as_json ? json_text(bg_jobs::wire::as_json(r))
                      : r.state == bg_jobs::job_state::cancelled
                          ? "cancelled job " + std::to_string(id)
                          : "job " + std::to_string(id) +
                                " runs: asked to stop")
                  << '\n';
      }
    } else if (*del) {
      auto ids = ids_of(delete_ids);
      auto db = store.open();
      all_or_none(*db, ids, "deleted", [](bg_jobs::job_state s) {
        return s != bg_jobs::job_state::running;
      });
      bg_jobs::detail::control_plane cp{*db};
      for (auto id : ids) {
        ok_or_fail(cp.remove(id));
        journal(*db, cp);
        std::cout << (as_json ? json_text({{"deleted", id}})
                              : "deleted job " + std::to_string(id))
                  << '\n';
      }
    } else if (*q_list) {
      auto db = store.open();
      auto known = value_of(db->known_queues());
      auto pauses = value_of(db->pauses());
      json out = json::array();
      std::vector<std::vector<std::string>> rows = {
          {"QUEUE", "JOB NAMES", "NODES", "CONCURRENCY", "PAUSED"}};
      for (auto& q : known) {
        bool paused = bg_jobs::queue_paused(pauses, q.queue);
        out.push_back({{"queue", q.queue},
                       {"job_names", q.job_names},
                       {"nodes", q.nodes},
                       {"concurrency", q.concurrency},
                       {"paused", paused}});
        auto join = [](const std::vector<std::string>& xs) {
          std::string s;
          for (auto& x : xs)
            s += (s.empty() ? "" : ",") + x;
          return s;
        };
        rows.push_back({shown(q.queue), shown(join(q.job_names)),
                        q.nodes.empty() ? "none" : shown(join(q.nodes)), std::to_string(q.concurrency),
                        paused ? "yes" : "no"});
      }
      if (as_json)
        std::cout << json_text(out) << '\n';
      else
        table(rows);
    } else if (*q_pause || *q_resume) {
      auto db = store.open();
      // Only a queue some node announced.
      bg_jobs::detail::control_plane cp{*db};
      ok_or_fail(cp.set_paused(bg_jobs::pause_kind::queue, queue_name,
                               bool(*q_pause)));
      journal(*db, cp);
      std::cout << (as_json ? json_text({{"queue", queue_name},
                                         {"paused", bool(*q_pause)}})
                            : std::string{*q_pause ? "paused " : "resumed "} +
                                  shown(queue_name))
                << '\n';
    } else if (*l_list) {
      auto db = store.open();
      json out = json::array();
      std::vector<std::vector<std::string>> rows = {
          {"QUEUE", "LIMIT", "KEY", "MAX RUNNING"}};
      for (auto& q : value_of(db->known_queues()))
        for (auto& l : value_of(db->stored_limits(q.queue))) {
          out.push_back({{"queue", q.queue},
                         {"kind", bg_jobs::to_string(l.kind)},
                         {"key", l.key},
                         {"max_running", l.max_running}});
          rows.push_back({shown(q.queue), bg_jobs::to_string(l.kind),
                          shown(l.key), std::to_string(l.max_running)});
        }
      if (as_json)
        std::cout << json_text(out) << '\n';
      else
        table(rows);
    } else if (*l_blocked) {
      auto db = store.open();
      auto names = names_of_queue(*db, limit_queue, true);
      json out = json::array();
      std::vector<std::vector<std::string>> rows = {
          {"KEY", "FAILED JOB", "WAITING BEHIND"}};
      for (auto& b : value_of(db->blocked_keys(limit_queue, names))) {
        out.push_back({{"key", b.key},
                       {"failed_job", b.failed_job},
                       {"waiting", b.waiting}});
        rows.push_back({shown(b.key), std::to_string(b.failed_job),
                        std::to_string(b.waiting)});
      }
      if (as_json)
        std::cout << json_text(out) << '\n';
      else
        table(rows);
    } else if (*l_unblock) {
      auto db = store.open();
      bg_jobs::detail::control_plane cp{*db};
      auto n = value_of(cp.unblock_key(limit_queue, limit_key));
      journal(*db, cp);
      if (as_json)
        std::cout << json_text({{"queue", limit_queue},
                                {"key", limit_key},
                                {"released", n}})
                  << '\n';
      else
        std::cout << "unblocked key " << shown(limit_key) << " of "
                  << shown(limit_queue) << ": " << n
                  << " failed jobs no longer hold it\n";
    } else if (*l_rate) {
      auto top = static_cast<int>(
          arg_of(bg_jobs::parse_count("--top", keys_top, 1, 10000)));
      if (auto why = bg_jobs::rate_limit_name_problem(rate_name); !why.empty())
        throw usage_error{"rate limit name '" + shown(rate_name) + "' " + why};
      auto db = store.open();
      auto st = value_of(db->rate_state(rate_name, top));
      if (!st)
        throw usage_error{"no rate limit named '" + shown(rate_name) + "'"};
      auto& l = st->limit;
      json keys = json::array();
      std::vector<std::vector<std::string>> rows = {
          {"KEY", "AVAILABLE", "BLOCKED_MS"}};
      for (auto& k : st->keys) {
        keys.push_back({{"key", k.key},
                        {"available", k.available},
                        {"blocked_ms", k.blocked_ms}});
        rows.push_back({shown(k.key), std::to_string(k.available),
                        std::to_string(k.blocked_ms)});
      }
      if (as_json) {
        std::cout << json_text({{"name", l.name},
                                {"allowed", l.allowed},
                                {"period_ms", l.period.count()},
                                {"burst", l.bucket()},
                                {"keys", keys}})
                  << '\n';
      } else {
        std::cout << "rate limit " << shown(l.name) << ": " << l.allowed
                  << " per " << l.period.count() << " ms, burst "
                  << l.bucket() << "\n";
        table(rows);
      }
    } else if (*l_rate_set) {
      bg_jobs::rate_limit l;
      l.name = rate_name;
      l.allowed = arg_of(bg_jobs::parse_count("allowed", rate_allowed, 1,
                                              1000000));
      l.period = arg_of(bg_jobs::parse_duration(rate_period));
      l.burst = arg_of(bg_jobs::parse_count("--burst", rate_burst, 0, 1000000));
      if (auto err = bg_jobs::check_rate_limit(l))
        throw usage_error{bg_jobs::describe(err)};
      auto db = store.open();
      bg_jobs::detail::control_plane cp{*db};
      ok_or_fail(cp.set_rate_limit(l));
      journal(*db, cp);
      if (as_json)
        std::cout << json_text({{"name", l.name},
                                {"allowed", l.allowed},
                                {"period_ms", l.period.count()},
                                {"burst", l.bucket()}})
                  << '\n';
      else
        std::cout << "set rate limit " << shown(l.name) << " to "
                  << l.allowed << " per " << l.period.count()
                  << " ms, burst " << l.bucket() << '\n';
    } else if (*l_keys) {
      auto top = static_cast<int>(
          arg_of(bg_jobs::parse_count("--top", keys_top, 1, 10000)));
      auto db = store.open();
      auto names = names_of_queue(*db, limit_queue, true);
      json out = json::array();
      std::vector<std::vector<std::string>> rows = {
          {"KEY", "RUNNING", "WAITING", "LIMIT", "FULL"}};
      for (auto& k : value_of(db->keys_in_use(limit_queue, names, top))) {
        out.push_back({{"key", k.key},
                       {"running", k.running},
                       {"waiting", k.waiting},
                       {"max_running", k.max_running > 0
                                           ? json(k.max_running)
                                           : json(nullptr)},
                       {"full", k.full()}});
        rows.push_back({shown(k.key), std::to_string(k.running),
                        std::to_string(k.waiting),
                        k.max_running > 0 ? std::to_string(k.max_running)
                                          : "none",
                        k.full() ? "yes" : "no"});
      }
      if (as_json)
        std::cout << json_text(out) << '\n';
      else
        table(rows);
    } else if (*l_set || *l_remove) {
      bg_jobs::concurrency_limit l;
      l.kind = limit_total          ? bg_jobs::limit_kind::total
               : !limit_key.empty() ? bg_jobs::limit_kind::key
                                    : bg_jobs::limit_kind::per_key;
      l.key = limit_key;
      l.max_running =
          *l_set ? static_cast<int>(arg_of(
                       bg_jobs::parse_count("max_running", limit_n, 1, 1000000)))
                 : 0;
      if (auto err = bg_jobs::check_limit_change(limit_queue, l))
        throw usage_error{bg_jobs::describe(err)};
      auto db = store.open();
      bg_jobs::detail::control_plane cp{*db};
      ok_or_fail(cp.set_limit(limit_queue, l));
      journal(*db, cp);
      json out = {{"queue", limit_queue},
                  {"kind", bg_jobs::to_string(l.kind)},
                  {"key", l.key},
                  {"max_running", l.max_running}};
      if (as_json)
        std::cout << json_text(out) << '\n';
      else
        std::cout << (*l_set ? "set " : "removed ") << bg_jobs::to_string(l.kind)
                  << " limit" << (l.key.empty() ? "" : " of key " + shown(l.key))
                  << " of " << shown(limit_queue)
                  << (*l_set ? " to " + std::to_string(l.max_running) : "")
                  << '\n';
    } else if (*s_list) {
      auto db = store.open();
      bg_jobs::detail::control_plane cp{*db};
      auto all = value_of(cp.schedules());
      json out = json::array();
      std::vector<std::vector<std::string>> rows = {
          {"NAME", "JOB", "WHEN", "OVERLAP", "MISSED", "FROM", "PAUSED",
           "LAST RUN", "STATE"}};
      for (auto& x : all) {
        out.push_back(x.to_json());
        auto& d = x.definition;
        std::string when =
            !x.problem.empty() ? "unreadable: " + x.problem
            : d.cron.empty()   ? "every " + std::to_string(d.every.count()) +
                                   " ms"
                               : d.cron + (d.time_zone.empty()
                                               ? std::string{}
                                               : " in " + d.time_zone);
        rows.push_back({shown(d.name), shown(d.job), shown(when),
                        bg_jobs::to_string(d.overlap),
                        bg_jobs::to_string(d.missed),
                        x.declared ? "code" : "run time",
                        x.paused ? "yes" : "no",
                        x.last_at ? bg_jobs::to_iso8601(*x.last_at) : "-",
                        x.last_at ? x.last_state : "-"});
      }
      if (as_json)
        std::cout << json_text(out) << '\n';
      else
        table(rows);
    } else if (*s_set) {
      bg_jobs::schedule_definition d;
      d.name = sched_name;
      d.job = sched_job;
      if (bg_jobs::exceeds_payload_depth(sched_payload))
        throw usage_error{"--payload nests too deeply"};
      d.payload = json::parse(sched_payload, nullptr, false);
      if (d.payload.is_discarded())
        throw usage_error{"--payload is not valid JSON"};
      d.cron = sched_cron;
      d.time_zone = sched_tz;
      if (!sched_every.empty())
        d.every = arg_of(bg_jobs::parse_duration(sched_every));
      if (sched_cron.empty() && sched_every.empty())
        throw usage_error{"give --cron or --every"};
      d.priority = static_cast<int>(
          arg_of(bg_jobs::parse_count("--priority", sched_priority, 0, 9)));
      auto overlap = bg_jobs::overlap_policy_named(sched_overlap);
      if (!overlap)
        throw usage_error{"--overlap is skip, one_waiting or allow"};
      d.overlap = *overlap;
      auto missed = bg_jobs::missed_runs_named(sched_missed);
      if (!missed)
        throw usage_error{"--missed is run_latest_once, skip or catch_up"};
      d.missed = *missed;
      d.late_after = arg_of(bg_jobs::parse_duration(sched_late));
      d.catch_up_max = static_cast<int>(arg_of(bg_jobs::parse_count(
          "--catch-up-max", sched_catch_max, 1,
          bg_jobs::schedule_definition::max_catch_up)));
      d.catch_up_window = arg_of(bg_jobs::parse_duration(sched_catch_window));
      if (auto err = d.validate())
        throw usage_error{bg_jobs::describe(err)};
      auto db = store.open();
      bg_jobs::detail::control_plane cp{*db};
      bool added = value_of(cp.put_schedule(d));
      journal(*db, cp);
      std::cout << (as_json ? json_text({{"name", d.name}, {"added", added}})
                            : std::string{added ? "added " : "changed "} +
                                  "schedule " + shown(d.name))
                << '\n';
    } else if (*s_remove) {
      auto db = store.open();
      bg_jobs::detail::control_plane cp{*db};
      ok_or_fail(cp.remove_schedule(sched_name));
      journal(*db, cp);
      std::cout << (as_json ? json_text({{"name", sched_name},
                                         {"removed", true}})
                            : "removed schedule " + shown(sched_name))
                << '\n';
    } else if (*s_pause || *s_resume) {
      auto db = store.open();
      bg_jobs::detail::control_plane cp{*db};
      ok_or_fail(cp.set_paused(bg_jobs::pause_kind::schedule, sched_name,
                               bool(*s_pause)));
      journal(*db, cp);
      std::cout << (as_json ? json_text({{"name", sched_name},
                                         {"paused", bool(*s_pause)}})
                            : std::string{*s_pause ? "paused " : "resumed "} +
                                  "schedule " + shown(sched_name))
                << '\n';
    } else if (*s_trigger) {
      auto db = store.open();
      bg_jobs::detail::control_plane cp{*db};
      auto j = value_of(cp.trigger_schedule(sched_name));
      journal(*db, cp);
      std::cout << (as_json ? json_text({{"name", sched_name}, {"job_id", j.id}})
                            : "triggered schedule " + shown(sched_name) +
                                  ": job " + std::to_string(j.id))
                << '\n';
    } else if (*prune) {
      bg_jobs::prune_params p;
      p.succeeded_max_age = arg_of(bg_jobs::parse_duration(prune_succeeded));
      p.failed_max_age = arg_of(bg_jobs::parse_duration(prune_failed));
      p.dry_run = prune_dry;
      auto db = store.open();
      auto n = value_of(db->prune_jobs(p));
      if (as_json)
        std::cout << json_text({{"deleted", prune_dry ? 0 : n},
                                {"would_delete", prune_dry ? n : 0}})
                  << '\n';
      else
        std::cout << (prune_dry ? "would delete " : "deleted ") << n
                  << " jobs\n";
    } else if (*cron_next) {
      auto from = bg_jobs::clock::system()->now();
      if (!cron_from.empty()) {
        auto t = bg_jobs::parse_iso8601(cron_from);
        if (!t)
          throw usage_error{"--from expects YYYY-MM-DDTHH:MM:SSZ, got '" +
                            cron_from + "'"};
        from = *t;
      }
      if (cron_next->count("--tz") > 0 && cron_tz.empty())
        throw usage_error{"--tz needs a zone name, e.g. Europe/Berlin"};
      auto schedule = bg_jobs::cron_schedule::parse(cron_expr);
      if (schedule && !cron_tz.empty())
        schedule = schedule->in_time_zone(cron_tz);
      if (!schedule)
        throw usage_error{bg_jobs::describe(schedule.error())};
      auto t = from;
      auto count = arg_of(bg_jobs::parse_count("--count", cron_count, 1, 100000));
      for (int64_t i = 0; i < count; ++i) {
        auto next = schedule->next_after(t);
        if (!next)
          break;
        std::cout << to_seconds_iso(*next) << '\n';
        t = *next;
      }
    } else if (*serve) {
      bg_jobs::http_options o;
      auto colon = listen.rfind(':');
      if (colon == std::string::npos)
        throw usage_error{"--listen expects HOST:PORT, got '" + listen + "'"};
      o.host = listen.substr(0, colon);
      if (o.host.size() > 2 && o.host.front() == '[' && o.host.back() == ']')
        o.host = o.host.substr(1, o.host.size() - 2);
      auto port = bg_jobs::parse_port(listen.substr(colon + 1));
      if (!port)
        throw usage_error{"--listen expects HOST:PORT, got '" + shown(listen) +
                          "'"};
      o.port = *port;
      o.allowed_hosts = allowed_hosts;
      o.token = token;
      if (o.token.empty())
        if (auto env = std::getenv("BG_JOBS_DASHBOARD_TOKEN"))
          o.token = env;
      o.read_only = read_only;
      store.open(); // the store must be there and current
      // SIGINT and SIGTERM stop it; blocked before the server's threads
      // start, so that they arrive here.
      sigset_t stop;
      sigemptyset(&stop);
      sigaddset(&stop, SIGINT);
      sigaddset(&stop, SIGTERM);
      pthread_sigmask(SIG_BLOCK, &stop, nullptr);
      auto server = value_of(bg_jobs::http_server::start(store.factory(), o));
      std::cout << "serving http://" << o.host << ":" << server->port() << "/"
                << (o.read_only ? " (read-only)" : "") << std::endl;
      int sig = 0;
      sigwait(&stop, &sig);
      server->stop();
    }
  } catch (const usage_error& e) {
    std::cerr << "bg_jobs: " << shown(e.message) << std::endl;
    return 2;
  } catch (const failed& e) {
    std::cerr << "bg_jobs: "
              << shown(without_password(redacted(e.message), store.spec()))
              << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "bg_jobs: " << shown(without_password(e.what(), store.spec()))
              << std::endl;
    return 1;
  }
  return 0;
}
