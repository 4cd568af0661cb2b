// Fills a store with jobs in every state, for the command-line and browser
// tests, and prints their ids as JSON:
//   {"waiting": [...], "scheduled": [...], "running": [...],
//    "succeeded": [...], "failed": [...], "cancelled": [...], "xss": id}
//
//   seed_store --store <sqlite-path | postgres-url> [--prefix P] [--hostile 1]
//
// --hostile 1 adds a waiting job whose concurrency key is markup, and a
// failed job whose stored error holds terminal escapes
// (ESC, OSC, BEL), a direction override and, on SQLite, bytes that are not
// UTF-8 (as a handler or an older version could have stored them), printed
// as "hostile": id.
//
// --workflow 1 adds the schedule "digest" (mail, 02:30 in Berlin), and a
// workflow whose task "c" failed, holding "d" (it is
// stuck; a and b have the output {"rows": 7}), with a task named as
// markup, printed as "workflow": {"id": id,
// "tasks": {name: job id}}; and a progress report on the running job,
// printed as "progress": id.
#include <iostream>

#include <nlohmann/json.hpp>

#include "bg_jobs/adapters/detail/store_spec.hpp"
#include "bg_jobs/control/detail/control_plane.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/workflow.hpp"

using namespace bg_jobs;

namespace {

template <class T>
T must(caf::expected<T> x) {
  if (!x) {
    std::cerr << "seed_store: " << describe(x.error()) << std::endl;
    std::exit(1);
  }
  return std::move(*x);
}

void must(caf::expected<void> x) {
  if (!x) {
    std::cerr << "seed_store: " << describe(x.error()) << std::endl;
    std::exit(1);
  }
}

} // namespace

int main(int argc, char** argv) {
  std::string store, prefix;
  bool hostile = false, with_workflow = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string arg = argv[i];
    if (arg == "--store")
      store = argv[i + 1];
    else if (arg == "--prefix")
      prefix = argv[i + 1];
    else if (arg == "--hostile")
      hostile = std::string{argv[i + 1]} == "1";
    else if (arg == "--workflow")
      with_workflow = std::string{argv[i + 1]} == "1";
  }
  if (store.empty()) {
    std::cerr << "usage: seed_store --store <path|url> [--prefix P]\n";
    return 2;
  }
  auto factory = factory_for(store, prefix);
  auto db = must(factory());
  must(db->migrate_up());
  must(db->announce_queues(
      "seed-node", {{"mail", {"mail", "xss"}, 4}, {"reports", {"report"}, 2}}));
  // "mail" is declared with a limit per concurrency key.
  must(db->set_limits("mail", {{limit_kind::per_key, "", 2}}));
  // A rate limit "api" (10 a second, 5 at once), of which "acct:1" took 3.
  must(db->set_rate_limit({"api", 10, std::chrono::seconds{1}, 5}));
  must(db->consume_rate("api", "acct:1", 3));
  nlohmann::json out = {{"waiting", nlohmann::json::array()},
                        {"scheduled", nlohmann::json::array()},
                        {"running", nlohmann::json::array()},
                        {"succeeded", nlohmann::json::array()},
                        {"failed", nlohmann::json::array()},
                        {"cancelled", nlohmann::json::array()}};
  auto reserve = [&](const std::string& name) {
    auto got = must(db->reserve_jobs({{name}, 1, "seed-node/q/1", ""}));
    if (got.size() != 1) {
      std::cerr << "seed_store: nothing to reserve" << std::endl;
      std::exit(1);
    }
    return got[0];
  };
  // Succeeded, failed (one with a retry before, one with a hostile error)
  // and running jobs go through reservations, one at a time.
  for (int i = 0; i < 2; ++i) {
    auto j = must(db->enqueue_job(job_request{"mail", {{"to", "done"}}}));
    must(db->move_job_to_succeeded(reserve("mail")));
    out["succeeded"].push_back(j.id);
  }
  {
    auto j = must(db->enqueue_job(job_request{"mail", {{"to", "bounce"}}}));
    auto first = reserve("mail");
    completion c;
    c.what = completion::kind::retry;
    c.job_id = first.id;
    c.reserved_by = first.reserved_by;
    c.error = "smtp down";
    c.available_at = first.available_at;
    must(db->complete_jobs({c}));
    must(db->move_job_to_failed(reserve("mail"), "smtp down again"));
    out["failed"].push_back(j.id);
    auto k = must(db->enqueue_job(job_request{"mail", {{"to", "evil"}}}));
    must(db->move_job_to_failed(reserve("mail"),
                                "<img src=x onerror=\"window.__xss=1\">"));
    out["failed"].push_back(k.id);
  }
  {
    auto j = must(db->enqueue_job(job_request{"report", {{"day", 1}}}));
    auto held = reserve("report");
    out["running"].push_back(j.id);
    if (with_workflow) {
      if (!must(db->record_progress(held.id, *held.reserved_by, held.attempts,
                                    0.42, "page 42 of 100 <b>bold</b>"))) {
        std::cerr << "seed_store: the progress was not stored" << std::endl;
        return 1;
      }
      out["progress"] = j.id;
    }
  }
  if (with_workflow) {
    // a -> b, a -> c, b and c -> d (held if c does not succeed), a -> the
    // task named as markup; a and b succeed, c fails for good.
    workflow w{"nightly <script>"};
    w.add("a", job_request{"wf", {{"task", "a"}}});
    w.add("b", job_request{"wf", {{"task", "b"}}}, {"a"});
    w.add("c", job_request{"wf", {{"task", "c"}}}, {"a"});
    w.add("d", job_request{"wf", {{"task", "d"}}},
          {{"b", parent_failure::cancel}, {"c", parent_failure::hold}});
    w.add("<img src=x onerror=window.__xss=3>",
          job_request{"wf", {{"task", "x"}}}, {"a"});
    auto ids = must(db->enqueue_workflow(w));
    auto run = [&](const std::string& task, bool ok) {
      for (;;) {
        auto got = must(db->reserve_jobs({{"wf"}, 10, "seed-node/q/2", ""}));
        for (auto& j : got) {
          if (j.id == ids.tasks[task]) {
            if (ok) {
              completion c;
              c.what = completion::kind::succeeded;
              c.job_id = j.id;
              c.reserved_by = j.reserved_by;
              c.output = "{\"rows\":7}";
              must(db->complete_jobs({c}));
            } else
              must(db->move_job_to_failed(j, "c broke"));
          } else {
            must(db->release_jobs_reserved_by(*j.reserved_by));
          }
        }
        if (!got.empty())
          return;
      }
    };
    run("a", true);
    run("b", true);
    run("c", false);
    out["workflow"] = {{"id", ids.workflow_id}, {"tasks", ids.tasks}};
    // A schedule added at run time.
    detail::control_plane cp{*db};
    schedule_definition d;
    d.name = "digest";
    d.job = "mail";
    d.cron = "0 30 2 * * *";
    d.time_zone = "Europe/Berlin";
    d.payload = {{"to", "ops"}};
    must(cp.put_schedule(d));
    out["schedule"] = d.name;
  }
  for (int i = 0; i < 2; ++i)
    out["waiting"].push_back(
        must(db->enqueue_job(job_request{"mail", {{"to", "ada"}, {"n", i}}}))
            .id);
  auto xss = must(db->enqueue_job(
      job_request{"xss", {{"html", "<script>window.__xss=1</script>"}}}));
  out["waiting"].push_back(xss.id);
  out["xss"] = xss.id;
  out["scheduled"].push_back(
      must(db->enqueue_job(job_request{"report", {{"day", 2}}}.available_in(
               std::chrono::hours{1})))
          .id);
  auto c = must(db->enqueue_job(job_request{"mail", {{"to", "nobody"}}}));
  must(db->cancel_job(c.id, "not needed"));
  out["cancelled"].push_back(c.id);
  if (hostile) {
    auto h = must(db->enqueue_job(job_request{"hostile", {{"to", "term"}}}));
    std::string text = "\x1b]0;pwned\x07\x1b[2Jgone \xe2\x80\xae"
                       "desrever";
    if (!is_postgres_spec(store))
      text += " raw\xff\xfe";
    must(db->move_job_to_failed(reserve("hostile"), text));
    out["failed"].push_back(h.id);
    out["hostile"] = h.id;
    // A concurrency key is text a page must show as text.
    auto keyed = must(db->enqueue_job(
        job_request{"mail", {{"to", "keyed"}}}.with_concurrency_key(
            "<img src=x onerror=window.__xss=2>")));
    out["waiting"].push_back(keyed.id);
  }
  std::cout << out.dump() << std::endl;
  return 0;
}
