// The rule a limited claim decides by (detail::admit), the same for every
// store; the conformance suite runs it through both.

#include <doctest/doctest.h>

#include "bg_jobs/adapters/detail/admission.hpp"

using namespace bg_jobs;
using bg_jobs::detail::admission_candidate;
using bg_jobs::detail::admit;
using bg_jobs::detail::held_slots;
using bg_jobs::detail::queue_limits;

namespace {

admission_candidate job(int64_t id, std::optional<std::string> key = {},
                        std::optional<std::string> second = {}) {
  admission_candidate c;
  c.id = id;
  c.key = std::move(key);
  c.second_key = std::move(second);
  return c;
}

queue_limits per_key(int64_t n) {
  return queue_limits::of({{limit_kind::per_key, "", static_cast<int>(n)}});
}

} // namespace

TEST_SUITE("admission") {

TEST_CASE("every key's first job goes before any key's second") {
  std::vector<admission_candidate> c{job(1, "a"), job(2, "a"), job(3, "a"),
                                     job(4, "b"), job(5), job(6, "b")};
  CHECK(admit(c, per_key(10), {}, 100) ==
        std::vector<int64_t>{1, 4, 5, 2, 6, 3});
  CHECK(admit(c, per_key(10), {}, 3) == std::vector<int64_t>{1, 4, 5});
}

TEST_CASE("a key takes no more than its room: its limit less what it holds") {
  std::vector<admission_candidate> c{job(1, "a"), job(2, "a"), job(3, "a"),
                                     job(4, "b")};
  held_slots held;
  held.add(std::string{"a"}, std::nullopt, 1);
  CHECK(admit(c, per_key(2), held, 100) == std::vector<int64_t>{1, 4});
  auto limits = per_key(2);
  limits.by_key["b"] = 0;
  CHECK(admit(c, limits, held, 100) == std::vector<int64_t>{1});
  // A limit lowered below what runs admits nothing of that key.
  held.add(std::string{"a"}, std::nullopt, 4);
  CHECK(admit(c, per_key(2), held, 100) == std::vector<int64_t>{4});
  CHECK(detail::full_keys(per_key(2), held) ==
        std::vector<std::string>{"a"});
}

TEST_CASE("a job with two keys goes only while both have room") {
  // "shared" has room for 1; the second job of it waits, whatever its
  // first key.
  std::vector<admission_candidate> c{job(1, "t1", "shared"),
                                     job(2, "t2", "shared"), job(3, "t3")};
  auto limits = per_key(5);
  limits.by_key["shared"] = 1;
  CHECK(admit(c, limits, {}, 100) == std::vector<int64_t>{1, 3});
  // A key counts its jobs in either place.
  std::vector<admission_candidate> d{job(1, "x"), job(2, "y", "x")};
  CHECK(admit(d, per_key(1), {}, 100) == std::vector<int64_t>{1});
}

TEST_CASE("the queue's total caps the claim, counting every held job") {
  std::vector<admission_candidate> c{job(1, "a"), job(2, "b"), job(3)};
  auto limits = queue_limits::of({{limit_kind::total, "", 3}});
  held_slots held;
  held.add(std::nullopt, std::nullopt, 2);
  CHECK(admit(c, limits, held, 100) == std::vector<int64_t>{1});
  held.add(std::nullopt, std::nullopt, 5);
  CHECK(admit(c, limits, held, 100).empty());
  CHECK(admit(c, queue_limits{}, {}, 0).empty());
}

TEST_CASE("a rate key's costs, added up in claim order, fit its starts") {
  auto rated = [](int64_t id, std::string key, int64_t units, int64_t room) {
    auto c = job(id);
    c.rate_key = std::move(key);
    c.rate_units = units;
    c.rate_room = room;
    return c;
  };
  std::vector<admission_candidate> c{rated(1, "k", 2, 3), rated(2, "k", 2, 3),
                                     rated(3, "k", 1, 3), rated(4, "j", 1, 1),
                                     job(5)};
  // 2 fits; 2 + 2 does not; 2 + 2 + 1 does not either (the sum counts every
  // candidate before it, so a later cheap job never overtakes).
  CHECK(admit(c, queue_limits{}, {}, 100) == std::vector<int64_t>{1, 4, 5});
}

TEST_CASE("sequences and limits are read from the stored limits") {
  auto l = queue_limits::of({{limit_kind::sequence, "", 1},
                             {limit_kind::key, "vip", 4}});
  CHECK(l.sequenced);
  CHECK(l.failed_holds);
  CHECK(l.limit_of("vip") == 4);
  CHECK_FALSE(l.limit_of("other"));
  CHECK(l.counts_slots());
  auto skip = queue_limits::of({{limit_kind::sequence_skip_failed, "", 1}});
  CHECK(skip.sequenced);
  CHECK_FALSE(skip.failed_holds);
  // A sequence counts the reservations of its keys: a key with one admits
  // nothing else.
  CHECK(skip.counts_slots());
  CHECK_FALSE(queue_limits::of({}).counts_slots());
}

TEST_CASE("in a sequence a key whose job holds a reservation is busy, by "
          "its first key only") {
  auto seq = queue_limits::of({{limit_kind::sequence, "", 1}});
  held_slots held;
  held.add(std::string{"acct:1"}, std::string{"shared"}, 1);
  held.add(std::string{"acct:2"}, std::nullopt, 0);
  CHECK(detail::busy_heads(seq, held) == std::vector<std::string>{"acct:1"});
  // The second key counts towards limits, not towards the sequence.
  CHECK(held.per_key.at("shared") == 1);
  CHECK(held.first.count("shared") == 0);
  // No sequence: nothing is busy on that account.
  CHECK(detail::busy_heads(per_key(2), held).empty());
}

} // TEST_SUITE
