#include <stdexcept>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <doctest/doctest.h>

#include "bg_jobs/actors/system_config.hpp"
#include "bg_jobs/core/clock.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/event.hpp"
#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/core/typed_job.hpp"
#include "bg_jobs/core/worker.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

struct resize_image {
  static constexpr const char* job_name = "resize_image";
  std::string path;
  int width = 0;
  bool keep_ratio = true;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(resize_image, path, width, keep_ratio)

bg_jobs::job job_with(nlohmann::json payload) {
  bg_jobs::job j;
  j.name = "resize_image";
  j.payload = std::move(payload);
  return j;
}

} // namespace

TEST_SUITE("core") {

  TEST_CASE("a typed job's request carries its type's name and its JSON") {
    auto r = bg_jobs::request_of(resize_image{"a.png", 640, false})
                 .with_priority(2);
    CHECK(r.name() == "resize_image");
    CHECK(r.payload() == nlohmann::json{{"path", "a.png"},
                                        {"width", 640},
                                        {"keep_ratio", false}});
    CHECK(r.priority() == 2);
  }

  TEST_CASE("a typed worker hands its handler the decoded arguments") {
    resize_image seen;
    auto w = bg_jobs::typed_worker<resize_image>(
        [&](const resize_image& a, const bg_jobs::job_context& ctx) {
          CHECK_FALSE(ctx.cancelled());
          seen = a;
        });
    CHECK(w.job_name() == "resize_image");
    auto o = w.run(job_with({{"path", "b.png"}, {"width", 9}, {"keep_ratio", true}}));
    CHECK(o.ok());
    CHECK(seen.path == "b.png");
    CHECK(seen.width == 9);
    auto failing = bg_jobs::typed_worker<resize_image>(
        [](const resize_image& a) {
          return bg_jobs::outcome::failure("too wide: " + std::to_string(a.width));
        });
    auto f = failing.run(job_with({{"path", "b.png"}, {"width", 9}, {"keep_ratio", true}}));
    CHECK(f.what() == bg_jobs::outcome::kind::failure);
    CHECK(f.message() == "too wide: 9");
  }

  TEST_CASE("a payload that does not decode fails its job for good, naming "
            "the field") {
    bool ran = false;
    auto w = bg_jobs::typed_worker<resize_image>(
        [&](const resize_image&) { ran = true; });
    auto wrong_type = w.run(job_with({{"path", 3}, {"width", 9}, {"keep_ratio", true}}));
    CHECK(wrong_type.what() == bg_jobs::outcome::kind::discard);
    CHECK(wrong_type.message() ==
          "payload does not decode as resize_image arguments: field 'path' "
          "should be string, got number");
    auto missing = w.run(job_with({{"path", "a"}, {"keep_ratio", true}}));
    CHECK(missing.what() == bg_jobs::outcome::kind::discard);
    CHECK(missing.message() ==
          "payload does not decode as resize_image arguments: field 'width' "
          "is missing");
    auto not_object = w.run(job_with(nlohmann::json::array({1, 2})));
    CHECK(not_object.message() ==
          "payload does not decode as resize_image arguments: expected an "
          "object, got array");
    CHECK_FALSE(ran);
  }


  TEST_CASE("timestamps print and parse as ISO 8601 UTC with milliseconds") {
    auto t = parse_iso8601("2024-02-29T23:59:58.007Z");
    REQUIRE(t);
    CHECK(to_iso8601(*t) == "2024-02-29T23:59:58.007Z");
    CHECK(to_iso8601(*parse_iso8601("1999-12-31 01:02:03Z")) ==
          "1999-12-31T01:02:03.000Z");
    CHECK_FALSE(parse_iso8601("2023-02-29T00:00:00Z"));
    CHECK_FALSE(parse_iso8601("2024-01-01T24:00:00Z"));
    CHECK_FALSE(parse_iso8601("2024-01-01T00:00:00"));
    CHECK_FALSE(parse_iso8601("yesterday"));
  }

  TEST_CASE("names must be UTF-8 without control characters") {
    CHECK(name_problem("send_email").empty());
    CHECK(name_problem("naïve 名前 🚀").empty());
    CHECK(name_problem("") == "is empty");
    CHECK(name_problem(std::string(256, 'x')).find("256 bytes") !=
          std::string::npos);
    for (std::string bad :
         {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
          "a\x80"
          "b"})
      CHECK(name_problem(bad) == "is not valid UTF-8");
    CHECK(name_problem(std::string{"a\0b", 3}).find("control character") !=
          std::string::npos);
    CHECK(name_problem("tab\there").find("control character") !=
          std::string::npos);
    CHECK(printable(std::string{"a\0\xff", 3}) == "a\\x00\\xff");
  }

  TEST_CASE("errors render as one line, and wrap without a second prefix") {
    auto err =
        make_error(errc::database_error, "ERROR:  boom\nDETAIL:  the detail\n");
    CHECK(describe(err) ==
          "bg_jobs.database_error: ERROR:  boom; DETAIL:  the detail");
    CHECK(message_of(err) == "ERROR:  boom; DETAIL:  the detail");
    auto wrapped = make_error(
        errc::invalid_schedule,
        "scheduled job 'nightly': " +
            message_of(make_error(errc::invalid_schedule, "hour field: bad")));
    CHECK(describe(wrapped) ==
          "bg_jobs.invalid_schedule: scheduled job 'nightly': hour field: bad");
  }

  TEST_CASE("a manual clock stands still until moved") {
    auto t0 = *parse_iso8601("2024-01-01T00:00:00Z");
    manual_clock clk{t0};
    CHECK(clk.now() == t0);
    clk.advance(1500ms);
    CHECK(clk.now() == t0 + 1500ms);
    auto sys = clock::system()->now();
    CHECK(sys > t0);
  }

  TEST_CASE("a job request resolves its availability") {
    auto t0 = *parse_iso8601("2024-01-01T00:00:00Z");
    CHECK(job_request{"a"}.resolve_available_at(t0) == t0);
    CHECK(job_request{"a"}.available_in(2s).resolve_available_at(t0) ==
          t0 + 2s);
    CHECK(job_request{"a"}.available_at(t0 + 1h).resolve_available_at(
              t0 + 5s) == t0 + 1h);
  }

  TEST_CASE("a payload given as text must be valid JSON") {
    auto good = job_request::parse("send_email", R"({"to":"a@b.c"})");
    REQUIRE(good);
    CHECK(good->payload()["to"] == "a@b.c");
    auto bad = job_request::parse("send_email", "{not json");
    REQUIRE_FALSE(bad);
    CHECK(code_of(bad.error()) == errc::invalid_payload);
    CHECK(describe(bad.error()).find("payload is not valid JSON") !=
          std::string::npos);
  }

  TEST_CASE("errors render with their code and message") {
    auto err = make_error(errc::database_locked, "busy for 5000 ms");
    CHECK(code_of(err) == errc::database_locked);
    CHECK(describe(err) == "bg_jobs.database_locked: busy for 5000 ms");
    caf::actor_system_config cfg;
    add_error_category(cfg);
    caf::actor_system sys{cfg};
    CHECK(sys.render(err) == "bg_jobs.database_locked: busy for 5000 ms");
    caf::expected<int> failed = errc::timeout;
    CHECK(code_of(failed.error()) == errc::timeout);
  }

  TEST_CASE("a handler's exception becomes a failure carrying its what()") {
    job j;
    worker throws{"a", [](const job&) -> outcome {
                    throw std::runtime_error("disk full");
                  }};
    auto o = throws.run(j);
    CHECK(o.what() == outcome::kind::failure);
    CHECK(o.message() == "disk full");
    worker odd{"b", [](const job&) { throw 42; }};
    CHECK(odd.run(j).message() == "handler threw a non-standard exception");
    worker plain{"c", [](const job&) {}};
    CHECK(plain.run(j).ok());
    worker fails{"d", [](const job&) { return outcome::failure("nope"); }};
    CHECK(fails.run(j).message() == "nope");
    std::atomic<bool> flag{true};
    worker ctx{"e", [](const job&, const job_context& c) {
                 return c.cancelled() ? outcome::cancel("stop")
                                      : outcome::success();
               }};
    CHECK(ctx.run(j, job_context{&flag}).what() == outcome::kind::cancel);
  }

  TEST_CASE("events have telemetry names, levels and log lines") {
    event e{event_kind::job_failed};
    e.queue = "default";
    e.message = "boom";
    CHECK(std::string{e.name()} == "bg_jobs.job.discard");
    CHECK(e.level() == log_level::error);
    auto line = to_log_line(e);
    CHECK(line.find("error bg_jobs.job.discard queue=default") !=
          std::string::npos);
    CHECK(line.find("message=\"boom\"") != std::string::npos);
  }

  TEST_CASE("configure lets idle scheduler threads sleep, unless the "
            "application chose otherwise, and renders bg_jobs errors") {
    using caf::timespan;
    constexpr const char* key = "work-stealing.relaxed-sleep-duration";
    caf::actor_system_config plain;
    bg_jobs::configure(plain);
    auto set = caf::get_if<timespan>(&plain.content, key);
    REQUIRE(set);
    CHECK(*set == timespan{std::chrono::seconds{1}});
    CHECK(caf::get_or(plain.content, "work-stealing.moderate-poll-attempts",
                      size_t{0}) == 10);
    caf::actor_system_config chosen;
    chosen.set(key, timespan{std::chrono::milliseconds{5}});
    bg_jobs::configure(chosen);
    CHECK(caf::get<timespan>(chosen.content, key) ==
          timespan{std::chrono::milliseconds{5}});
    caf::actor_system sys{plain};
    auto text = sys.render(
        bg_jobs::make_error(bg_jobs::errc::unknown_queue, "no queue 'x'"));
    CHECK(text.find("no queue 'x'") != std::string::npos);
  }

} // TEST_SUITE
