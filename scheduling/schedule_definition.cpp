#include "bg_jobs/scheduling/schedule_definition.hpp"

#include <limits>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

namespace {

using std::chrono::milliseconds;

constexpr milliseconds max_span{std::chrono::hours{24 * 366}};

caf::error bad(const std::string& name, const std::string& why) {
  return make_error(errc::invalid_argument,
                    "schedule '" + printable(name) + "': " + why);
}

} // namespace

const char* to_string(missed_runs m) {
  switch (m) {
  case missed_runs::run_latest_once:
    return "run_latest_once";
  case missed_runs::skip:
    return "skip";
  case missed_runs::catch_up:
    return "catch_up";
  }
  return "run_latest_once";
}

const char* to_string(overlap_policy o) {
  switch (o) {
  case overlap_policy::skip:
    return "skip";
  case overlap_policy::one_waiting:
    return "one_waiting";
  case overlap_policy::allow:
    return "allow";
  }
  return "skip";
}

std::optional<missed_runs> missed_runs_named(std::string_view s) {
  for (auto m :
       {missed_runs::run_latest_once, missed_runs::skip, missed_runs::catch_up})
    if (s == to_string(m))
      return m;
  return std::nullopt;
}

std::optional<overlap_policy> overlap_policy_named(std::string_view s) {
  for (auto o : {overlap_policy::skip, overlap_policy::one_waiting,
                 overlap_policy::allow})
    if (s == to_string(o))
      return o;
  return std::nullopt;
}

caf::expected<schedule> schedule_definition::build() const {
  caf::expected<schedule> s = make_error(errc::invalid_schedule, "");
  if (!cron.empty()) {
    auto c = cron_schedule::parse(cron);
    if (c && !time_zone.empty())
      c = c->in_time_zone(time_zone);
    if (c)
      s = schedule::from(std::move(*c));
    else
      s = std::move(c.error());
  } else {
    s = schedule::every(every);
  }
  if (!s)
    return make_error(errc::invalid_schedule, "schedule '" + printable(name) +
                                                  "': " + message_of(s.error()));
  return s;
}

caf::error schedule_definition::validate() const {
  if (auto why = name_problem(name); !why.empty())
    return make_error(errc::invalid_argument,
                      "schedule name '" + printable(name) + "' " + why);
  if (auto why = name_problem(job); !why.empty())
    return bad(name, "job name '" + printable(job) + "' " + why);
  if (cron.empty() == (every.count() <= 0))
    return bad(name, "give either a cron expression or a positive interval");
  if (cron.empty() && !time_zone.empty())
    return bad(name, "a time zone applies to a cron expression only");
  if (every > max_span)
    return bad(name, "the interval is longer than 366 days");
  if (priority < min_priority || priority > max_priority)
    return bad(name, "priority " + std::to_string(priority) +
                         " is out of range " + std::to_string(min_priority) +
                         " to " + std::to_string(max_priority));
  if (late_after.count() <= 0 || late_after > max_span)
    return bad(name, "late_after must be positive and at most 366 days");
  if (catch_up_max < 1 || catch_up_max > max_catch_up)
    return bad(name, "catch_up_max must be 1 to " +
                         std::to_string(max_catch_up));
  if (catch_up_window.count() <= 0 || catch_up_window > max_span)
    return bad(name, "catch_up_window must be positive and at most 366 days");
  if (missed == missed_runs::catch_up && cron.empty())
    return bad(name, "catch_up applies to cron schedules (an interval counts "
                     "from the end of the previous run)");
  if (auto s = build(); !s)
    return std::move(s.error());
  if (auto text = request().validate(); !text)
    return bad(name, message_of(text.error()));
  return caf::none;
}

job_request schedule_definition::request() const {
  return job_request{job, payload}.with_priority(priority);
}

nlohmann::json schedule_definition::to_json() const {
  nlohmann::json j{{"name", name},
                   {"job", job},
                   {"payload", payload},
                   {"priority", priority},
                   {"overlap", to_string(overlap)},
                   {"missed", to_string(missed)},
                   {"late_after_ms", late_after.count()},
                   {"catch_up_max", catch_up_max},
                   {"catch_up_window_ms", catch_up_window.count()}};
  if (!cron.empty()) {
    j["cron"] = cron;
    if (!time_zone.empty())
      j["time_zone"] = time_zone;
  } else {
    j["every_ms"] = every.count();
  }
  return j;
}

caf::expected<schedule_definition>
schedule_definition::from_json(const nlohmann::json& j) {
  if (!j.is_object())
    return make_error(errc::invalid_argument,
                      "a schedule must be a JSON object");
  schedule_definition d;
  if (auto n = j.find("name"); n != j.end() && n->is_string())
    d.name = n->get<std::string>();
  for (auto it = j.begin(); it != j.end(); ++it) {
    auto& key = it.key();
    auto& v = it.value();
    auto text = [&](std::string& out) -> caf::error {
      if (!v.is_string())
        return bad(d.name, "'" + key + "' must be a string");
      out = v.get<std::string>();
      return caf::none;
    };
    auto integer = [&](int64_t lo, int64_t hi,
                       int64_t& out) -> caf::error {
      if (!v.is_number_integer())
        return bad(d.name, "'" + key + "' must be an integer");
      if (v.is_number_unsigned() &&
          v.get<uint64_t>() >
              static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return bad(d.name, "'" + key + "' is out of range");
      out = v.get<int64_t>();
      if (out < lo || out > hi)
        return bad(d.name, "'" + key + "' must be " + std::to_string(lo) +
                               " to " + std::to_string(hi));
      return caf::none;
    };
    caf::error err;
    int64_t n = 0;
    constexpr int64_t span = max_span.count();
    if (key == "name") {
      err = text(d.name);
    } else if (key == "job") {
      err = text(d.job);
    } else if (key == "payload") {
      d.payload = v;
    } else if (key == "priority") {
      if (!(err = integer(min_priority, max_priority, n)))
        d.priority = static_cast<int>(n);
    } else if (key == "cron") {
      err = text(d.cron);
    } else if (key == "time_zone") {
      err = text(d.time_zone);
    } else if (key == "every_ms") {
      if (!(err = integer(1, span, n)))
        d.every = milliseconds{n};
    } else if (key == "late_after_ms") {
      if (!(err = integer(1, span, n)))
        d.late_after = milliseconds{n};
    } else if (key == "catch_up_max") {
      if (!(err = integer(1, max_catch_up, n)))
        d.catch_up_max = static_cast<int>(n);
    } else if (key == "catch_up_window_ms") {
      if (!(err = integer(1, span, n)))
        d.catch_up_window = milliseconds{n};
    } else if (key == "overlap") {
      std::string s;
      if (!(err = text(s))) {
        auto o = overlap_policy_named(s);
        if (!o)
          err = bad(d.name, "overlap must be skip, one_waiting or allow");
        else
          d.overlap = *o;
      }
    } else if (key == "missed") {
      std::string s;
      if (!(err = text(s))) {
        auto m = missed_runs_named(s);
        if (!m)
          err = bad(d.name,
                    "missed must be run_latest_once, skip or catch_up");
        else
          d.missed = *m;
      }
    } else {
      err = bad(d.name, "unknown field '" + printable(key) + "'");
    }
    if (err)
      return err;
  }
  if (auto err = d.validate())
    return err;
  return d;
}

caf::expected<schedule_definition>
schedule_definition::parse(const std::string& text) {
  if (text.size() > max_payload_size + 64 * 1024)
    return make_error(errc::invalid_argument,
                      "a schedule's definition is " +
                          std::to_string(text.size()) + " bytes long");
  if (exceeds_payload_depth(text))
    return make_error(errc::invalid_argument,
                      "a schedule's definition nests too deeply");
  auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded())
    return make_error(errc::invalid_argument,
                      "a schedule's definition is not JSON");
  return from_json(json);
}

nlohmann::json schedule_info::to_json() const {
  nlohmann::json j{{"name", definition.name},
                   {"definition", definition.to_json()},
                   {"declared", declared},
                   {"paused", paused},
                   {"seen_at", to_iso8601(seen_at)},
                   {"updated_at", to_iso8601(updated_at)}};
  if (last_at)
    j["last"] = {{"at", to_iso8601(*last_at)},
                 {"job_id", last_job},
                 {"state", last_state}};
  if (!problem.empty())
    j["problem"] = problem;
  return j;
}

caf::expected<schedule_info> schedule_info::from_json(const nlohmann::json& j) {
  try {
    schedule_info x;
    x.declared = j.at("declared").get<bool>();
    x.paused = j.at("paused").get<bool>();
    auto time = [&](const nlohmann::json& v) -> timestamp {
      auto t = parse_iso8601(v.get<std::string>());
      if (!t)
        throw std::invalid_argument("bad time");
      return *t;
    };
    x.seen_at = time(j.at("seen_at"));
    x.updated_at = time(j.at("updated_at"));
    if (auto p = j.find("problem"); p != j.end()) {
      x.problem = p->get<std::string>();
      x.definition.name = j.at("name").get<std::string>();
    } else {
      auto d = schedule_definition::from_json(j.at("definition"));
      if (!d)
        return std::move(d.error());
      x.definition = std::move(*d);
    }
    if (auto l = j.find("last"); l != j.end()) {
      x.last_at = time(l->at("at"));
      x.last_job = l->at("job_id").get<int64_t>();
      x.last_state = l->at("state").get<std::string>();
    }
    return x;
  } catch (const std::exception& e) {
    return make_error(errc::invalid_argument,
                      std::string{"a schedule's description: "} + e.what());
  }
}

} // namespace bg_jobs
