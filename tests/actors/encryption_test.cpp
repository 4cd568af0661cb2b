// Encrypted payloads and secret metadata through the runtime, on every
// store: nothing the application marks secret reaches the store in plain
// text, the handler sees it opened, keys rotate, a job sealed with a key
// the node lacks fails clearly and can be retried once the key is back,
// and rows written before encryption still run.
#include <algorithm>
#include <atomic>
#include <mutex>

#include "actors/runtime_fixture.hpp"
#include "support/app_connection.hpp"
#include "support/expect.hpp"

using namespace bg_jobs;
using namespace std::chrono_literals;
using test::runtime_fixture;

namespace {

using test::error_of;
using test::require_ok;
using test::value_of;

const std::string key1(64, 'a');
const std::string key2 =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

keyring ring(std::initializer_list<std::pair<std::string, std::string>> keys,
             std::string current = {}) {
  keyring r;
  for (auto& [id, hex] : keys)
    REQUIRE_FALSE(r.add(id, hex));
  if (!current.empty())
    REQUIRE_FALSE(r.encrypt_with(current));
  return r;
}

queue_spec secret_queue(worker w) {
  return queue_spec{"secrets"}
      .with_poll_interval(20ms)
      .with_max_retries(0)
      .with_worker(std::move(w));
}

job_request secret_request(int n) {
  return std::move(job_request{"charge", {{"card", "4111-PLAINTEXT-" +
                                                        std::to_string(n)}}}
                       .encrypted()
                       .with_meta({{"region", "eu"}})
                       .with_secret_meta("ssn", "078-PLAINTEXT"));
}

/// Every stored text of job `id` (payload and attributes), wherever it is.
std::string raw_row(test::app_connection& app, const test::test_store& s,
                    int64_t id) {
  std::string out;
  (void)s;
  app.exec("DELETE FROM ledger");
  for (auto t : {"jobs", "jobs_succeeded", "jobs_failed"})
    app.exec("INSERT INTO ledger (note) SELECT coalesce(payload, '') || ' ' ||"
             " coalesce(CAST(attrs AS TEXT), '') FROM " +
             std::string{t} + " WHERE id = " + std::to_string(id));
  for (auto& n : app.notes())
    out += n + "\n";
  return out;
}

} // namespace

TEST_SUITE("encryption") {

  BG_JOBS_RUNTIME_CASE("a sealed payload and secret metadata never reach "
                       "the store in plain text, and the handler sees them "
                       "opened") {
    auto app = test::app_connection::open(*the_store);
    std::mutex mtx;
    std::vector<job> seen;
    auto w = worker{"charge", [&](const job& j) {
                      std::lock_guard<std::mutex> guard{mtx};
                      seen.push_back(j);
                    }};
    // An enqueuing node first, which runs nothing: the row waits as stored.
    job enqueued;
    {
      auto web = start(make_builder()
                           .with_enqueued_job_names({"charge"})
                           .with_encryption(ring({{"k1", key1}})));
      enqueued = value_of(web.enqueue(secret_request(1)));
      // The caller gets back what it gave.
      CHECK(enqueued.payload["card"] == "4111-PLAINTEXT-1");
      CHECK(enqueued.meta["ssn"] == "078-PLAINTEXT");
      require_ok(web.shutdown());
    }
    auto stored = raw_row(*app, *the_store, enqueued.id);
    INFO(stored);
    CHECK(stored.find("PLAINTEXT") == std::string::npos);
    CHECK(stored.find("$bg_jobs_sealed") != std::string::npos);
    CHECK(stored.find("eu") != std::string::npos); // not secret
    // The command line shows "encrypted" unless given the key.
    auto cli = [&](const std::string& args) {
      auto cmd = std::string{BG_JOBS_CLI} + " --db '" +
                 the_store->location() + "' jobs show " +
                 std::to_string(enqueued.id) + " " + args + " 2>&1";
      std::string out;
      auto pipe = popen(cmd.c_str(), "r");
      REQUIRE(pipe);
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, pipe)) > 0)
        out.append(buf, n);
      CHECK(pclose(pipe) == 0);
      return out;
    };
    auto hidden = cli("");
    CHECK(hidden.find("encrypted with key 'k1'") != std::string::npos);
    CHECK(hidden.find("PLAINTEXT") == std::string::npos);
    auto wrong = cli("--key k1:" + key2);
    CHECK(wrong.find("does not open") != std::string::npos);
    CHECK(wrong.find("PLAINTEXT") == std::string::npos);
    auto shown = cli("--key k1:" + key1);
    CHECK(shown.find("4111-PLAINTEXT-1") != std::string::npos);
    CHECK(shown.find("078-PLAINTEXT") != std::string::npos);
    auto rec = value_of(store()->get_job(enqueued.id));
    CHECK(keyring::sealed(rec.payload));
    CHECK(keyring::key_of(rec.payload) == "k1");
    CHECK(keyring::sealed(rec.meta["ssn"]));
    // A worker node with the key runs it on the opened values.
    auto bg = start(make_builder()
                        .with_queue(secret_queue(w))
                        .with_encryption(ring({{"k1", key1}})));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    {
      std::lock_guard<std::mutex> guard{mtx};
      REQUIRE(seen.size() == 1);
      CHECK(seen[0].payload == nlohmann::json{{"card", "4111-PLAINTEXT-1"}});
      CHECK(seen[0].meta ==
            nlohmann::json{{"region", "eu"}, {"ssn", "078-PLAINTEXT"}});
    }
    require_ok(bg.shutdown());
    // The history holds no plain text either.
    auto done = raw_row(*app, *the_store, enqueued.id);
    INFO(done);
    CHECK(done.find("PLAINTEXT") == std::string::npos);
    CHECK(!done.empty());
  }

  BG_JOBS_RUNTIME_CASE("keys rotate: old jobs run under their old key, new "
                       "ones take the new") {
    std::mutex mtx;
    std::vector<std::string> cards;
    auto w = worker{"charge", [&](const job& j) {
                      std::lock_guard<std::mutex> guard{mtx};
                      cards.push_back(j.payload["card"]);
                    }};
    int64_t old_id = 0, new_id = 0;
    {
      auto web = start(make_builder()
                           .with_enqueued_job_names({"charge"})
                           .with_encryption(ring({{"k1", key1}})));
      old_id = value_of(web.enqueue(secret_request(1))).id;
      require_ok(web.shutdown());
    }
    {
      auto web = start(make_builder()
                           .with_enqueued_job_names({"charge"})
                           .with_encryption(
                               ring({{"k1", key1}, {"k2", key2}}, "k2")));
      new_id = value_of(web.enqueue(secret_request(2))).id;
      require_ok(web.shutdown());
    }
    auto db = store();
    CHECK(keyring::key_of(value_of(db->get_job(old_id)).payload) == "k1");
    CHECK(keyring::key_of(value_of(db->get_job(new_id)).payload) == "k2");
    auto bg = start(
        make_builder()
            .with_queue(secret_queue(w))
            .with_encryption(ring({{"k1", key1}, {"k2", key2}}, "k2")));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 2));
    std::lock_guard<std::mutex> guard{mtx};
    std::sort(cards.begin(), cards.end());
    CHECK(cards == std::vector<std::string>{"4111-PLAINTEXT-1",
                                            "4111-PLAINTEXT-2"});
  }

  BG_JOBS_RUNTIME_CASE("a job sealed with a key the node lacks fails "
                       "clearly, and runs once retried with the key back") {
    std::atomic<int> runs{0};
    auto w = worker{"charge", [&](const job&) { ++runs; }};
    int64_t id = 0;
    {
      auto web = start(make_builder()
                           .with_enqueued_job_names({"charge"})
                           .with_encryption(ring({{"k1", key1}})));
      id = value_of(web.enqueue(secret_request(1))).id;
      require_ok(web.shutdown());
    }
    {
      // Only k2 here: the attempt fails without running the handler.
      auto bg = start(make_builder()
                          .with_queue(secret_queue(w))
                          .with_encryption(ring({{"k2", key2}})));
      REQUIRE(log.wait_for(event_kind::job_failed));
      auto rec = value_of(bg.get_job(id));
      CHECK(rec.state == job_state::failed);
      REQUIRE(rec.error);
      CHECK(rec.error->find("decryption_failed") != std::string::npos);
      CHECK(rec.error->find("key 'k1'") != std::string::npos);
      CHECK(runs == 0);
      require_ok(bg.shutdown());
    }
    // A key of the same id but other bytes does not open it either.
    {
      auto bg = start(make_builder()
                          .with_queue(secret_queue(w))
                          .with_encryption(ring({{"k1", key2}})));
      value_of(bg.retry(id));
      REQUIRE(log.wait_for(event_kind::job_failed, 2));
      auto rec = value_of(bg.get_job(id));
      REQUIRE(rec.error);
      CHECK(rec.error->find("does not open") != std::string::npos);
      CHECK(runs == 0);
      require_ok(bg.shutdown());
    }
    // A node without keys at all says so.
    {
      auto bg = start(make_builder().with_queue(secret_queue(w)));
      value_of(bg.retry(id));
      REQUIRE(log.wait_for(event_kind::job_failed, 3));
      auto rec = value_of(bg.get_job(id));
      REQUIRE(rec.error);
      CHECK(rec.error->find("no keys") != std::string::npos);
      CHECK(runs == 0);
      // Nor may it store anything marked secret.
      auto refused = bg.enqueue(secret_request(9));
      CHECK(error_of(refused) == errc::invalid_argument);
      CHECK(error_of(bg.enqueue_many({job_request{"charge"},
                                      secret_request(9)})) ==
            errc::invalid_argument);
      require_ok(bg.shutdown());
    }
    auto bg = start(make_builder()
                        .with_queue(secret_queue(w))
                        .with_encryption(ring({{"k1", key1}})));
    value_of(bg.retry(id));
    REQUIRE(log.wait_for(event_kind::job_succeeded));
    CHECK(runs == 1);
    CHECK(value_of(store()->stats()).total() == 1);
  }

  BG_JOBS_RUNTIME_CASE("rows written before encryption was turned on still "
                       "run, and unique requests keep their plain key") {
    std::mutex mtx;
    std::vector<nlohmann::json> payloads;
    auto w = worker{"charge", [&](const job& j) {
                      std::lock_guard<std::mutex> guard{mtx};
                      payloads.push_back(j.payload);
                    }};
    value_of(store()->enqueue_job(job_request{"charge", {{"card", "old"}}}));
    {
      auto web = start(make_builder()
                           .with_enqueued_job_names({"charge"})
                           .with_encryption(ring({{"k1", key1}})));
      // Two equal unique requests: one job, though each sealing differs.
      auto a = value_of(web.enqueue(
          secret_request(5).with_unique({}).available_in(50ms)));
      auto b = value_of(web.enqueue(
          secret_request(5).with_unique({}).available_in(50ms)));
      CHECK(b.conflict);
      CHECK(b.id == a.id);
      unique_options merge;
      merge.on_conflict = unique_conflict::merge;
      CHECK(error_of(web.enqueue(secret_request(6).with_unique(merge))) ==
            errc::invalid_argument);
      require_ok(web.shutdown());
    }
    auto bg = start(make_builder()
                        .with_queue(secret_queue(w))
                        .with_encryption(ring({{"k1", key1}})));
    REQUIRE(log.wait_for(event_kind::job_succeeded, 2));
    std::lock_guard<std::mutex> guard{mtx};
    REQUIRE(payloads.size() == 2);
    std::vector<std::string> cards;
    for (auto& p : payloads)
      cards.push_back(p["card"]);
    std::sort(cards.begin(), cards.end());
    CHECK(cards == std::vector<std::string>{"4111-PLAINTEXT-5", "old"});
  }
}

TEST_SUITE("encryption") {

  TEST_CASE("a keyring refuses bad keys and opens only what it sealed") {
    keyring r;
    CHECK(code_of(r.add("", key1)) == errc::invalid_argument);
    CHECK(code_of(r.add("k/1", key1)) == errc::invalid_argument);
    CHECK(code_of(r.add("k1", "abc")) == errc::invalid_argument);
    CHECK(code_of(r.add("k1", std::string(64, 'g'))) == errc::invalid_argument);
    CHECK(r.empty());
    REQUIRE_FALSE(r.add("k1", key1));
    CHECK(code_of(r.add("k1", key2)) == errc::invalid_argument);
    CHECK(code_of(r.encrypt_with("k9")) == errc::invalid_argument);
    auto sealed = r.seal({{"a", 1}}, "job/payload");
    CHECK(keyring::sealed(sealed));
    CHECK(value_of(r.open(sealed, "job/payload")) == nlohmann::json{{"a", 1}});
    // Another context, an altered text, another key: none opens.
    CHECK(error_of(r.open(sealed, "other/payload")) ==
          errc::decryption_failed);
    auto altered = sealed;
    auto data = altered["data"].get<std::string>();
    data[0] = data[0] == 'A' ? 'B' : 'A';
    altered["data"] = data;
    CHECK(error_of(r.open(altered, "job/payload")) == errc::decryption_failed);
    keyring other;
    REQUIRE_FALSE(other.add("k1", key2));
    CHECK(error_of(other.open(sealed, "job/payload")) ==
          errc::decryption_failed);
    // Two seals of one value differ (a nonce each).
    CHECK(r.seal(1, "c") != r.seal(1, "c"));
    CHECK_FALSE(keyring::sealed(nlohmann::json{{"$bg_jobs_sealed", 1}}));
  }
}
