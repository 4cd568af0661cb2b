#include <stdexcept>
#include <string>

#include <doctest/doctest.h>

#include "adapters/stores.hpp"
#include "bg_jobs/testing/testing.hpp"
#include "support/expect.hpp"

using namespace bg_jobs;
using test::value_of;

namespace {

struct charge_card {
  static constexpr const char* job_name = "charge_card";
  std::string customer;
  int cents = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(charge_card, customer, cents)

} // namespace

TEST_SUITE("testing") {

  TEST_CASE("perform_job runs a handler as an executor does") {
    worker ok{"j", [](const job& j) {
                if (j.attempts < 2)
                  throw std::runtime_error("first time fails");
                return outcome::success();
              }};
    auto first = testing::perform_job(ok, {{"k", 1}});
    CHECK(first.what() == outcome::kind::failure);
    CHECK(first.message() == "first time fails");
    CHECK(testing::perform_job(ok, {{"k", 1}}, 2).ok());
    auto typed = typed_worker<charge_card>([](const charge_card& c) {
      return c.cents > 0 ? outcome::success()
                         : outcome::cancel("nothing to charge");
    });
    CHECK(testing::perform_job(typed, charge_card{"ann", 500}).ok());
    CHECK(testing::perform_job(typed, charge_card{"bob", 0}).message() ==
          "nothing to charge");
  }

  TEST_CASE_TEMPLATE("enqueued finds jobs by name and payload, "
                     "drain_queue runs them as the queue would",
                     S, BG_JOBS_CONFORMANCE_STORES) {
    S store;
    auto db = store.fresh();
    // Code under test enqueues.
    for (auto& [who, cents] :
         std::vector<std::pair<std::string, int>>{{"ann", 500}, {"bob", 0},
                                                  {"cy", -1}})
      REQUIRE(db->enqueue_job(request_of(charge_card{who, cents})));
    REQUIRE(db->enqueue_job(job_request{"other", {{"customer", "ann"}}}));
    CHECK(value_of(testing::enqueued(*db, "charge_card")).size() == 3);
    auto anns = value_of(
        testing::enqueued(*db, "charge_card", {{"customer", "ann"}}));
    REQUIRE(anns.size() == 1);
    CHECK(anns[0].payload["cents"] == 500);
    CHECK(value_of(testing::enqueued(*db, charge_card{"bob", 0})).size() == 1);
    CHECK(value_of(testing::enqueued(*db, charge_card{"bob", 1})).empty());
    // Drained: ann succeeds, bob is cancelled, cy fails twice and then for
    // good (two retries, immediate).
    int cy_attempts = 0;
    auto spec =
        queue_spec{"billing"}
            .with_max_retries(2)
            .with_backoff(backoff::immediate())
            .with_worker(typed_worker<charge_card>([&](const charge_card& c) {
              if (c.cents < 0) {
                ++cy_attempts;
                return outcome::failure("negative amount");
              }
              return c.cents > 0 ? outcome::success()
                                 : outcome::cancel("nothing to charge");
            }));
    auto r = value_of(testing::drain_queue(*db, spec));
    CHECK(r.succeeded == 1);
    CHECK(r.cancelled == 1);
    CHECK(r.retried == 2);
    CHECK(r.failed == 1);
    CHECK(cy_attempts == 3);
    CHECK(value_of(testing::enqueued(*db, "charge_card")).empty());
    // The job of another name stays.
    CHECK(value_of(testing::enqueued(*db, "other")).size() == 1);
    auto st = value_of(db->stats());
    CHECK(st.succeeded == 1);
    CHECK(st.failed == 1);
    CHECK(st.cancelled == 1);
    // Nothing left: a second drain runs nothing.
    CHECK(value_of(testing::drain_queue(*db, spec)).ran() == 0);
  }
}
