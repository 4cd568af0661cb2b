// The message types on the wire: every one survives CAF's binary
// serialization, and a hostile text fails cleanly with invalid_payload.
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/deep_to_string.hpp>
#include <doctest/doctest.h>

#include "bg_jobs/actors/messages.hpp"
#include "bg_jobs/core/errc.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

const timestamp t0 = *parse_iso8601("2024-09-29T10:30:00.123Z");

template <class T>
T round_trip(caf::actor_system& sys, T x) {
  std::vector<char> buf;
  caf::binary_serializer out{sys, buf};
  REQUIRE_FALSE(out(x));
  T y;
  caf::binary_deserializer in{sys, buf};
  auto err = in(y);
  REQUIRE_MESSAGE(!err, sys.render(err));
  return y;
}

} // namespace

TEST_SUITE("wire") {

  TEST_CASE("every message type survives serialization") {
    caf::actor_system_config cfg;
    add_message_types(cfg);
    caf::actor_system sys{cfg};
    job j;
    j.id = 7;
    j.name = "mail";
    j.payload = {{"to", "ada"}, {"n", {1, 2, 3}}};
    j.attempts = 2;
    j.priority = 3;
    j.created_at = t0;
    j.available_at = t0 + 1s;
    j.reserved_at = t0 + 2s;
    j.reserved_by = "n/q/1";
    j.cancel_reason = "stop";
    j.conflict = true;
    j.meta = {{"by", "ops"}};
    j.tags = {"eu", "b"};
    j.trace = {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
               "a=1"};
    CHECK(round_trip(sys, j) == j);
    unique_options u;
    u.key = "k";
    u.period = 5min;
    u.include_succeeded = true;
    auto r = round_trip(sys, job_request{"mail", {{"x", "\u00e9\"'"}}}
                                 .available_in(90s)
                                 .with_priority(4)
                                 .with_unique(u)
                                 .with_meta({{"m", 1}})
                                 .with_tags({"t"})
                                 .with_trace(j.trace.traceparent, "a=1"));
    CHECK(r.meta() == nlohmann::json{{"m", 1}});
    CHECK(r.tags() == std::vector<std::string>{"t"});
    CHECK(r.trace() == j.trace);
    CHECK(r.name() == "mail");
    CHECK(r.payload() == nlohmann::json{{"x", "\u00e9\"'"}});
    CHECK(r.priority() == 4);
    CHECK(std::get<std::chrono::milliseconds>(r.when()) == 90s);
    REQUIRE(r.unique());
    CHECK(r.unique()->key == "k");
    CHECK(r.unique()->period == 5min);
    CHECK(r.unique()->include_succeeded);
    auto at = round_trip(sys, job_request{"m"}.available_at(t0));
    CHECK(std::get<timestamp>(at.when()) == t0);
    job_record rec;
    rec.id = 3;
    rec.name = "m";
    rec.state = job_state::cancelled;
    rec.finished_at = t0;
    rec.error = "why";
    rec.errors = nlohmann::json::array({{{"attempt", 1}}});
    rec.tags = {"eu"};
    rec.trace.traceparent = j.trace.traceparent;
    job_page page{{rec}, "0.1.2"};
    auto back = round_trip(sys, page);
    REQUIRE(back.jobs.size() == 1);
    CHECK(back.jobs[0].state == job_state::cancelled);
    CHECK(back.jobs[0].finished_at == t0);
    CHECK(back.jobs[0].errors == rec.errors);
    CHECK(back.jobs[0].tags == rec.tags);
    CHECK(back.jobs[0].trace == rec.trace);
    CHECK(back.next == "0.1.2");
    job_query q;
    q.state = job_state::failed;
    q.names = {"a", "b"};
    q.after = "0.5.6";
    q.tag = "eu";
    auto q2 = round_trip(sys, q);
    CHECK(q2.tag == "eu");
    CHECK(q2.state == job_state::failed);
    CHECK(q2.names == q.names);
    CHECK(q2.after == "0.5.6");
    stats_report st;
    st.at = t0;
    queue_stats qs;
    qs.queue = "q";
    qs.counts.available = 4;
    qs.lag = 1500ms;
    qs.paused = true;
    st.queues.push_back(qs);
    auto st2 = round_trip(sys, st);
    REQUIRE(st2.queues.size() == 1);
    CHECK(st2.queues[0].counts.available == 4);
    CHECK(st2.queues[0].lag == 1500ms);
    CHECK(st2.queues[0].paused);
    // Printable, too.
    CHECK(caf::deep_to_string(j).find("mail") != std::string::npos);
  }

  TEST_CASE("a hostile text from the wire is refused cleanly") {
    job_request r;
    auto deep = std::string(100000, '[') + std::string(100000, ']');
    for (auto text :
         {std::string{"not json"}, std::string{"[1, 2]"},
          std::string{"{\"name\": 5}"}, std::string{"{\"name\": \"x\"}"},
          "{\"name\":\"x\",\"payload\":" + deep + "}"}) {
      auto err = wire::decode(text, r);
      REQUIRE(err);
      CHECK(code_of(err) == errc::invalid_payload);
    }
    job_record rec;
    auto err = wire::decode(
        R"({"id":1,"name":"x","payload":{},"priority":0,"attempts":0,)"
        R"("state":"exploded","created_at":0,"available_at":0,"errors":[]})",
        rec);
    REQUIRE(err);
    CHECK(describe(err).find("malformed") != std::string::npos);
  }

} // TEST_SUITE
