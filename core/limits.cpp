#include "bg_jobs/core/limits.hpp"

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
  }
  return "?";
}

std::optional<limit_kind> parse_limit_kind(std::string_view text) {
  for (auto k : {limit_kind::key, limit_kind::per_key, limit_kind::total})
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
    if (l.kind == limit_kind::key) {
      if (auto why = concurrency_key_problem(l.key); !why.empty())
        return make_error(errc::invalid_argument,
                          "concurrency key '" + printable(l.key) + "' " + why);
    } else if (!l.key.empty()) {
      return make_error(errc::invalid_argument,
                        what + " takes no key, got '" + printable(l.key) + "'");
    }
    if (!seen.emplace(l.kind, l.key).second)
      return make_error(errc::invalid_argument, what + " is given twice");
  }
  return caf::none;
}

} // namespace bg_jobs
