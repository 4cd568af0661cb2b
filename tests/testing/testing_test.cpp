#include <stdexcept>
#include <string>
#include <unistd.h>

#include <doctest/doctest.h>

#include "adapters/stores.hpp"
#include "bg_jobs/testing/testing.hpp"
#include "support/expect.hpp"
#include "support/pg.hpp"
#include "support/store_reads.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;
using test::value_of;

namespace {

struct charge_card {
  static constexpr const char* job_name = "charge_card";
  std::string customer;
  int cents = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(charge_card, customer, cents)

worker card_worker(int* attempts_of_negative = nullptr) {
  return typed_worker<charge_card>([=](const charge_card& c) {
    if (c.cents < 0) {
      if (attempts_of_negative)
        ++*attempts_of_negative;
      return outcome::failure("negative amount");
    }
    if (c.cents == 0)
      return outcome::cancel("nothing to charge");
    if (c.cents == 1)
      return outcome::snooze(30s);
    return outcome::success();
  });
}

} // namespace

TEST_SUITE("testing") {

  TEST_CASE("perform_job reports what the library would record") {
    auto w = card_worker();
    auto ok = testing::perform_job(w, charge_card{"ann", 500});
    CHECK(ok.what == completion::kind::succeeded);
    auto before = clock::system()->now();
    auto retry = testing::perform_job(
        w, charge_card{"cy", -1}, 1,
        queue_spec{"billing"}.with_max_retries(2).with_backoff(
            backoff::constant(10s)));
    CHECK(retry.what == completion::kind::retry);
    CHECK(retry.error == "negative amount");
    CHECK(retry.available_at >= before + 10s);
    auto last = testing::perform_job(
        w, charge_card{"cy", -1}, 3,
        queue_spec{"billing"}.with_max_retries(2));
    CHECK(last.what == completion::kind::failed);
    CHECK(testing::perform_job(w, charge_card{"bob", 0}).what ==
          completion::kind::cancelled);
    auto snoozed = testing::perform_job(w, charge_card{"dee", 1});
    CHECK(snoozed.what == completion::kind::snooze);
    CHECK(snoozed.available_at >= before + 30s);
    worker throws{"j", [](const job&) { throw std::runtime_error("boom"); }};
    auto thrown = testing::perform_job(throws);
    CHECK(thrown.what == completion::kind::retry);
    CHECK(thrown.error == "boom");
    auto undecodable = testing::perform_job(w, {{"customer", 3}});
    CHECK(undecodable.what == completion::kind::failed);
  }

  TEST_CASE("a test store is a migrated SQLite file that goes with it") {
    std::string dir;
    {
      auto s = testing::test_store::sqlite();
      REQUIRE_MESSAGE(s, test::why(s));
      REQUIRE(s->db().enqueue_job(job_request{"j"}));
      auto other = s->factory()();
      REQUIRE(other);
      CHECK(value_of((*other)->stats()).available == 1);
    }
    auto pg = testing::test_store::postgres(
        test::pg_url(), "testing_store_" + std::to_string(getpid()));
    REQUIRE_MESSAGE(pg, test::why(pg));
    REQUIRE(pg->db().enqueue_job(job_request{"j"}));
    CHECK(value_of(pg->db().stats()).available >= 1);
  }

  TEST_CASE_TEMPLATE("enqueued finds jobs by name and payload, "
                     "drain_queue runs them as the queue would",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto clk = std::make_shared<manual_clock>(clock::system()->now());
    auto db = store.fresh(clk);
    // Code under test enqueues.
    for (auto& [who, cents] : std::vector<std::pair<std::string, int>>{
             {"ann", 500}, {"bob", 0}, {"cy", -1}})
      REQUIRE(db->enqueue_job(request_of(charge_card{who, cents})));
    REQUIRE(db->enqueue_job(request_of(charge_card{"eve", 700})
                                .available_at(clk->now() + 1h)));
    REQUIRE(db->enqueue_job(job_request{"other", {{"customer", "ann"}}}));
    CHECK(value_of(testing::enqueued(*db, "charge_card")).size() == 4);
    auto anns = value_of(
        testing::enqueued(*db, "charge_card", {{"customer", "ann"}}));
    REQUIRE(anns.size() == 1);
    CHECK(anns[0].payload["cents"] == 500);
    CHECK(value_of(testing::enqueued(*db, charge_card{"bob", 0})).size() == 1);
    CHECK(value_of(testing::enqueued(*db, charge_card{"bob", 1})).empty());
    // Drained: ann succeeds, bob is cancelled, cy fails and waits a minute;
    // eve is not due.
    int cy_attempts = 0;
    auto spec = queue_spec{"billing"}
                    .with_max_retries(1)
                    .with_backoff(backoff::constant(1min))
                    .with_worker(card_worker(&cy_attempts));
    auto r = value_of(testing::drain_queue(*db, spec, clk));
    CHECK(r.succeeded == 1);
    CHECK(r.cancelled == 1);
    CHECK(r.retried == 1);
    CHECK(r.failed == 0);
    CHECK(cy_attempts == 1);
    // The clock moves the retry and the delayed job into the next drain.
    clk->advance(2h);
    r = value_of(testing::drain_queue(*db, spec, clk));
    CHECK(r.succeeded == 1);
    CHECK(r.failed == 1);
    CHECK(cy_attempts == 2);
    CHECK(value_of(testing::enqueued(*db, "charge_card")).empty());
    // The job of another name stays.
    CHECK(value_of(testing::enqueued(*db, "other")).size() == 1);
    auto st = value_of(db->stats());
    CHECK(st.succeeded == 2);
    CHECK(st.failed == 1);
    CHECK(st.cancelled == 1);
    // Nothing left: a third drain runs nothing.
    CHECK(value_of(testing::drain_queue(*db, spec, clk)).ran() == 0);
  }

  TEST_CASE_TEMPLATE("drain_queue opens encrypted payloads with the keys it "
                     "is given",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    auto keys = std::make_shared<keyring>();
    REQUIRE_FALSE(keys->add("k1", std::string(64, 'e')));
    // As a node with the keys seals a payload (sealing.cpp's context).
    REQUIRE(db->enqueue_job(
        job_request{"pay", keys->seal({{"card", "4111"}}, "pay/payload")}));
    std::string seen;
    auto spec = queue_spec{"billing"}.with_max_retries(0).with_worker(
        worker{"pay", [&](const job& j) { seen = j.payload["card"]; }});
    // Without the keys the attempt fails and the handler never runs.
    auto r = value_of(testing::drain_queue(*db, spec));
    CHECK(r.failed == 1);
    CHECK(seen.empty());
    auto failed = value_of(test::all_in(*db, job_state::failed));
    REQUIRE(failed.size() == 1);
    value_of(db->retry_job(failed[0].id));
    r = value_of(testing::drain_queue(*db, spec, nullptr, 10000, keys));
    CHECK(r.succeeded == 1);
    CHECK(seen == "4111");
  }
}
