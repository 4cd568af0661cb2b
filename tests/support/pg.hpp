#pragma once

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>

#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <pqxx/pqxx>
#include <unistd.h>

namespace bg_jobs::test {

/// The directory where scripts/pg_start.sh recorded the test server.
inline std::string pg_state_dir() {
  return BG_JOBS_PG_STATE;
}

/// The connection string of the test server: `BG_JOBS_PG_URL`, or what the
/// test command's server fixture recorded. A test that needs PostgreSQL
/// fails (it is never skipped) when neither is there.
inline std::string pg_url() {
  if (auto env = std::getenv("BG_JOBS_PG_URL"); env && *env)
    return env;
  std::ifstream in{pg_state_dir() + "/url"};
  std::string url;
  std::getline(in, url);
  REQUIRE_MESSAGE(!url.empty(),
                  "no PostgreSQL server: run the tests through ctest (which "
                  "starts one) or set BG_JOBS_PG_URL");
  return url;
}

/// `url` with its search_path set to `schema`.
inline std::string with_schema(const std::string& url,
                               const std::string& schema) {
  bool is_uri =
      url.rfind("postgres", 0) == 0 && url.find("://") != std::string::npos;
  if (!is_uri)
    return url + " options='-csearch_path=" + schema + "'";
  return url + (url.find('?') == std::string::npos ? "?" : "&") +
         "options=-csearch_path%3D" + schema;
}

/// A schema of its own for one test, dropped afterwards, so that tests can
/// run in parallel against one database.
class pg_schema {
public:
  pg_schema() {
    static std::atomic<int> counter{0};
    name_ =
        "bgj_t" + std::to_string(getpid()) + "_" + std::to_string(++counter);
    base_ = pg_url();
    pqxx::connection c{base_};
    pqxx::nontransaction tx{c};
    tx.exec("DROP SCHEMA IF EXISTS " + name_ + " CASCADE");
    tx.exec("CREATE SCHEMA " + name_);
  }

  ~pg_schema() {
    try {
      pqxx::connection c{base_};
      pqxx::nontransaction tx{c};
      tx.exec("DROP SCHEMA IF EXISTS " + name_ + " CASCADE");
    } catch (...) {
      // The server may be gone when a test failed; nothing to clean then.
    }
  }

  pg_schema(const pg_schema&) = delete;
  pg_schema& operator=(const pg_schema&) = delete;

  const std::string& name() const { return name_; }

  /// A connection string that works in this schema.
  std::string url() const { return with_schema(base_, name_); }

  /// The server's connection string, without the schema.
  const std::string& base_url() const { return base_; }

private:
  std::string name_;
  std::string base_;
};

/// `url` (a URI or key=value string) with its database set to `dbname`, as
/// a key=value string.
inline std::string with_database(const std::string& url,
                                 const std::string& dbname) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  REQUIRE_MESSAGE(opts, "a malformed connection string: " << url);
  std::string out;
  for (auto o = opts; o->keyword; ++o) {
    if (!o->val || std::string{o->keyword} == "dbname")
      continue;
    std::string v = o->val, quoted;
    for (char c : v) {
      if (c == '\\' || c == '\'')
        quoted += '\\';
      quoted += c;
    }
    out += std::string{o->keyword} + "='" + quoted + "' ";
  }
  PQconninfoFree(opts);
  return out + "dbname=" + dbname;
}

/// A database of its own for one test, dropped afterwards: for what the
/// other tests' open transactions in the shared database would disturb
/// (what VACUUM may remove depends on every snapshot in the database).
class pg_database {
public:
  pg_database() {
    static std::atomic<int> counter{0};
    name_ =
        "bgj_d" + std::to_string(getpid()) + "_" + std::to_string(++counter);
    base_ = pg_url();
    pqxx::connection c{base_};
    pqxx::nontransaction tx{c};
    tx.exec("DROP DATABASE IF EXISTS " + name_);
    tx.exec("CREATE DATABASE " + name_);
  }

  ~pg_database() {
    try {
      pqxx::connection c{base_};
      pqxx::nontransaction tx{c};
      tx.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (...) {
      // The server may be gone when a test failed; nothing to clean then.
    }
  }

  pg_database(const pg_database&) = delete;
  pg_database& operator=(const pg_database&) = delete;

  std::string url() const { return with_database(base_, name_); }

  const std::string& name() const { return name_; }

private:
  std::string name_;
  std::string base_;
};

} // namespace bg_jobs::test
