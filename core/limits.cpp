#include "bg_jobs/core/limits.hpp"

#include <cctype>
#include <set>
#include <utility>

#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/job_request.hpp"

namespace bg_jobs {

const char* to_string(limit_kind k) {
  switch (k) {
    case limit_kind::key:
      return "key";
    case limit_kind::per_key:
      return "per_key";
    case limit_kind::total:
      return "total";
    case limit_kind::sequence:
      return "sequence";
    case limit_kind::sequence_skip_failed:
      return "sequence_skip_failed";
    case limit_kind::rate:
      return "rate";
  }
  return "?";
}

std::optional<limit_kind> parse_limit_kind(std::string_view text) {
  for (auto k : {limit_kind::key, limit_kind::per_key, limit_kind::total,
                 limit_kind::sequence, limit_kind::sequence_skip_failed,
                 limit_kind::rate})
    if (text == to_string(k))
      return k;
  return std::nullopt;
}

int limit_of_key(const std::vector<concurrency_limit>& limits,
                 const std::string& key) {
  int per_key = 0;
  for (const auto& l : limits) {
    if (l.kind == limit_kind::key && l.key == key)
      return l.max_running;
    if (l.kind == limit_kind::per_key)
      per_key = l.max_running;
  }
  return per_key;
}

caf::error check_limits(const std::vector<concurrency_limit>& limits) {
  std::set<std::pair<limit_kind, std::string>> seen;
  for (const auto& l : limits) {
    std::string what = l.kind == limit_kind::key
                           ? "the limit of key '" + printable(l.key) + "'"
                           : std::string{"the "} + to_string(l.kind) + " limit";
    if (l.max_running < 1)
      return make_error(errc::invalid_argument,
                        what + " must be at least 1, got " +
                            std::to_string(l.max_running));
    if (l.kind == limit_kind::rate) {
      if (auto why = rate_limit_name_problem(l.key); !why.empty())
        return make_error(errc::invalid_argument,
                          "rate limit name '" + printable(l.key) + "' " + why);
      if (l.max_running != 1)
        return make_error(errc::invalid_argument,
                          "a rate limit's row has max_running 1, got " +
                              std::to_string(l.max_running));
    } else if (l.kind == limit_kind::key) {
      if (auto why = concurrency_key_problem(l.key); !why.empty())
        return make_error(errc::invalid_argument,
                          "concurrency key '" + printable(l.key) + "' " + why);
    } else if (!l.key.empty()) {
      return make_error(errc::invalid_argument,
                        what + " takes no key, got '" + printable(l.key) + "'");
    }
    bool seq = l.kind == limit_kind::sequence ||
               l.kind == limit_kind::sequence_skip_failed;
    if (seq && l.max_running != 1)
      return make_error(errc::invalid_argument,
                        "a sequence runs one job of a key at a time; its "
                        "max_running is 1, got " +
                            std::to_string(l.max_running));
    // One sequence kind and one rate limit at most.
    if (!seen.emplace(seq ? limit_kind::sequence : l.kind,
                      l.kind == limit_kind::rate ? "" : l.key)
             .second)
      return make_error(errc::invalid_argument,
                        seq ? std::string{"a queue's sequences are declared "
                                          "once"}
                            : what + " is given twice");
  }
  return caf::none;
}

std::string rate_limit_name_problem(std::string_view name) {
  if (name.empty())
    return "is empty";
  if (name.size() > 63)
    return "is longer than 63 bytes";
  for (unsigned char c : name)
    if (!(std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == ':'))
      return "may hold only letters, digits, '_', '-', '.' and ':'";
  return {};
}

caf::error check_rate_limit(const rate_limit& l) {
  if (auto why = rate_limit_name_problem(l.name); !why.empty())
    return make_error(errc::invalid_argument,
                      "rate limit name '" + printable(l.name) + "' " + why);
  auto what = "rate limit '" + l.name + "': ";
  if (l.allowed < 1 || l.allowed > max_rate_cost)
    return make_error(errc::invalid_argument,
                      what + "allowed must be 1 to 1000000, got " +
                          std::to_string(l.allowed));
  if (l.period.count() < 1 || l.period > std::chrono::hours{24 * 30})
    return make_error(errc::invalid_argument,
                      what + "the period must be 1 ms to 30 days, got " +
                          std::to_string(l.period.count()) + " ms");
  if (l.burst < 0 || l.burst > max_rate_cost)
    return make_error(errc::invalid_argument,
                      what + "the burst must be 1 to 1000000 (0: allowed), "
                             "got " +
                          std::to_string(l.burst));
  return caf::none;
}

} // namespace bg_jobs
