// What a job carries beside its payload, on every store: metadata, tags and
// the trace context, kept through claims, retries and every move between
// tables, filtered on in listings, and refused with nothing written when
// malformed.
#include <doctest/doctest.h>

#include "adapters/stores.hpp"
#include "support/expect.hpp"
#include "support/store_reads.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;

namespace {

using test::error_of;
using test::value_of;

const std::string parent =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

job_request carrying(std::string name) {
  return std::move(job_request{std::move(name), {{"n", 1}}}
                       .with_meta({{"customer", 42}, {"source", "api"}})
                       .with_tags({"billing", "eu", "billing"})
                       .with_trace(parent, "vendor=abc,other=x1"));
}

void check_carried(const nlohmann::json& meta,
                   const std::vector<std::string>& tags,
                   const trace_context& trace, const char* where) {
  INFO(std::string{where});
  CHECK(meta == nlohmann::json{{"customer", 42}, {"source", "api"}});
  // A repeated tag is kept once.
  CHECK(tags == std::vector<std::string>{"billing", "eu"});
  CHECK(trace.traceparent == parent);
  CHECK(trace.tracestate == "vendor=abc,other=x1");
}

completion outcome(const job& j, completion::kind k) {
  completion c;
  c.what = k;
  c.job_id = j.id;
  c.reserved_by = *j.reserved_by;
  c.error = "boom";
  return c;
}

} // namespace

TEST_SUITE("job attributes") {

  TEST_CASE_TEMPLATE("metadata, tags and trace context stay with a job "
                     "wherever it moves",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto enqueued = value_of(db->enqueue_job(carrying("a")));
    check_carried(enqueued.meta, enqueued.tags, enqueued.trace, "enqueued");
    auto stored = value_of(db->get_job(enqueued.id));
    check_carried(stored.meta, stored.tags, stored.trace, "stored");
    // Claimed: the handler gets them.
    auto claimed = value_of(db->reserve_jobs({{"a"}, 1, "n/q/1", ""}));
    REQUIRE(claimed.size() == 1);
    check_carried(claimed[0].meta, claimed[0].tags, claimed[0].trace,
                  "claimed");
    // Failed, then retried by hand and claimed again: still there.
    REQUIRE(value_of(db->complete_jobs(
                {outcome(claimed[0], completion::kind::failed)})) ==
            std::vector<bool>{true});
    auto failed = value_of(db->get_job(enqueued.id));
    CHECK(failed.state == job_state::failed);
    check_carried(failed.meta, failed.tags, failed.trace, "failed");
    value_of(db->retry_job(enqueued.id));
    auto again = value_of(db->reserve_jobs({{"a"}, 1, "n/q/1", ""}));
    REQUIRE(again.size() == 1);
    check_carried(again[0].meta, again[0].tags, again[0].trace, "retried");
    // Succeeded: the record keeps them.
    REQUIRE(value_of(db->complete_jobs(
                {outcome(again[0], completion::kind::succeeded)})) ==
            std::vector<bool>{true});
    auto done = value_of(db->get_job(enqueued.id));
    CHECK(done.state == job_state::succeeded);
    check_carried(done.meta, done.tags, done.trace, "succeeded");
    // Cancelled while waiting: kept too.
    auto waiting = value_of(db->enqueue_job(carrying("b")));
    value_of(db->cancel_job(waiting.id, "no longer needed"));
    auto cancelled = value_of(db->get_job(waiting.id));
    CHECK(cancelled.state == job_state::cancelled);
    check_carried(cancelled.meta, cancelled.tags, cancelled.trace,
                  "cancelled");
  }

  TEST_CASE_TEMPLATE("a job without attributes has none, and bulk enqueues "
                     "carry them",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto ids = value_of(db->enqueue_jobs(
        {job_request{"plain"}, carrying("rich"),
         std::move(job_request{"tagged"}.with_tags({"eu"}))}));
    REQUIRE(ids.size() == 3);
    auto plain = value_of(db->get_job(ids[0]));
    CHECK(plain.meta == nlohmann::json::object());
    CHECK(plain.tags.empty());
    CHECK(plain.trace.empty());
    CHECK(plain.trace.tracestate.empty());
    auto rich = value_of(db->get_job(ids[1]));
    check_carried(rich.meta, rich.tags, rich.trace, "bulk");
    auto tagged = value_of(db->get_job(ids[2]));
    CHECK(tagged.tags == std::vector<std::string>{"eu"});
    CHECK(tagged.meta == nlohmann::json::object());
    // Jobs with a rate key or a unique key take the other enqueue path.
    auto unique = value_of(db->enqueue_job(
        std::move(carrying("u").with_unique({}).with_rate("k", 1))));
    auto stored = value_of(db->get_job(unique.id));
    check_carried(stored.meta, stored.tags, stored.trace, "unique");
  }

  TEST_CASE_TEMPLATE("listings filter by tag", S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto eu = value_of(db->enqueue_job(
        std::move(job_request{"j"}.with_tags({"eu", "billing"}))));
    auto us = value_of(
        db->enqueue_job(std::move(job_request{"j"}.with_tags({"us"}))));
    value_of(db->enqueue_job(job_request{"j"}));
    job_query q;
    q.tag = "eu";
    auto page = value_of(db->list_jobs(q));
    REQUIRE(page.jobs.size() == 1);
    CHECK(page.jobs[0].id == eu.id);
    q.tag = "us";
    page = value_of(db->list_jobs(q));
    REQUIRE(page.jobs.size() == 1);
    CHECK(page.jobs[0].id == us.id);
    q.tag = "none";
    CHECK(value_of(db->list_jobs(q)).jobs.empty());
    q.tag = "";
    CHECK(value_of(db->list_jobs(q)).jobs.size() == 3);
    // A tag that no job could carry is refused.
    q.tag = "a,b";
    CHECK(error_of(db->list_jobs(q)) == errc::invalid_argument);
    q.tag = std::string{"a\x01"};
    CHECK(error_of(db->list_jobs(q)) == errc::invalid_argument);
  }

  TEST_CASE_TEMPLATE("malformed attributes are refused and nothing is "
                     "written",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto refused = [&](job_request r) {
      INFO(r.name());
      CHECK(error_of(db->enqueue_job(r)) == errc::invalid_argument);
      CHECK(error_of(db->enqueue_jobs({job_request{"fine"}, r})) ==
            errc::invalid_argument);
    };
    refused(std::move(job_request{"meta-array"}.with_meta({1, 2})));
    refused(std::move(job_request{"meta-big"}.with_meta(
        {{"x", std::string(max_meta_size, 'a')}})));
    refused(std::move(
        job_request{"meta-nan"}.with_meta({{"x", std::nan("")}})));
    std::vector<std::string> many;
    for (size_t i = 0; i <= max_tags; ++i)
      many.push_back("t" + std::to_string(i));
    refused(std::move(job_request{"tags-many"}.with_tags(many)));
    refused(std::move(job_request{"tag-comma"}.with_tags({"a,b"})));
    refused(std::move(job_request{"tag-empty"}.with_tags({""})));
    refused(std::move(job_request{"tag-control"}.with_tags({"a\nb"})));
    refused(std::move(
        job_request{"tag-long"}.with_tags({std::string(max_tag_length + 1,
                                                       't')})));
    for (auto bad : {
             // upper case, all-zero ids, version ff, short, long for 00,
             // wrong separators, not hex
             "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
             "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
             "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
             "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
             "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
             "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
             "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
             "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
             "x"})
      refused(std::move(job_request{"traceparent"}.with_trace(bad)));
    refused(std::move(job_request{"tracestate-alone"}.with_trace("", "a=b")));
    for (auto bad : {"novalue", "=x", "Upper=x", "a=b=c", "a=\x01",
                     "a=b,c"})
      refused(std::move(job_request{"tracestate"}.with_trace(parent, bad)));
    refused(std::move(job_request{"tracestate-long"}.with_trace(
        parent, "a=" + std::string(max_tracestate_length, 'x'))));
    CHECK(value_of(test::all_in(*db, job_state::waiting)).empty());
    // A later version may carry more after its flags; empty tracestate
    // members and spaces around members are allowed.
    value_of(db->enqueue_job(std::move(job_request{"future"}.with_trace(
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        " a=1 ,, b@tenant=2"))));
  }
}
