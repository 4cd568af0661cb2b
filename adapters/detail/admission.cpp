#include "bg_jobs/adapters/detail/admission.hpp"

#include <algorithm>
#include <string_view>

namespace bg_jobs::detail {

queue_limits queue_limits::of(const std::vector<concurrency_limit>& stored) {
  queue_limits out;
  for (const auto& l : stored) {
    switch (l.kind) {
      case limit_kind::key:
        out.by_key[l.key] = l.max_running;
        break;
      case limit_kind::per_key:
        out.per_key = l.max_running;
        break;
      case limit_kind::total:
        out.total = l.max_running;
        break;
      case limit_kind::sequence:
        out.sequenced = true;
        out.failed_holds = true;
        break;
      case limit_kind::sequence_skip_failed:
        out.sequenced = true;
        break;
      default:
        break;
    }
  }
  return out;
}

std::optional<int64_t> queue_limits::limit_of(const std::string& key) const {
  if (auto i = by_key.find(key); i != by_key.end())
    return i->second;
  return per_key;
}

void held_slots::add(const std::optional<std::string>& key,
                     const std::optional<std::string>& second, int64_t n) {
  total += n;
  if (key) {
    per_key[*key] += n;
    first[*key] += n;
  }
  if (second)
    per_key[*second] += n;
}

std::vector<std::string> full_keys(const queue_limits& limits,
                                   const held_slots& held) {
  std::vector<std::string> out;
  for (const auto& [key, n] : held.per_key)
    if (auto limit = limits.limit_of(key); limit && *limit - n <= 0)
      out.push_back(key);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> busy_heads(const queue_limits& limits,
                                    const held_slots& held) {
  std::vector<std::string> out;
  if (!limits.sequenced)
    return out;
  for (const auto& [key, n] : held.first)
    if (n > 0)
      out.push_back(key);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int64_t> admit(const std::vector<admission_candidate>& candidates,
                           const queue_limits& limits, const held_slots& held,
                           int64_t want) {
  if (limits.total)
    want = std::min(want, *limits.total - held.total);
  if (want <= 0)
    return {};
  // The room of a key: its limit less its held slots; none: no limit.
  auto room_of = [&](const std::string& key) -> std::optional<int64_t> {
    auto limit = limits.limit_of(key);
    if (!limit)
      return std::nullopt;
    auto i = held.per_key.find(key);
    return *limit - (i == held.per_key.end() ? 0 : i->second);
  };
  std::unordered_map<std::string_view, int64_t> seen;
  std::unordered_map<std::string_view, int64_t> rate_used;
  struct pick {
    int64_t turn;
    int64_t id;
  };
  std::vector<pick> picks;
  picks.reserve(candidates.size());
  for (const auto& c : candidates) {
    int64_t turn = 1;
    bool fits = true;
    for (const auto* key : {&c.key, &c.second_key}) {
      if (!*key)
        continue;
      auto n = ++seen[**key];
      turn = std::max(turn, n);
      if (auto room = room_of(**key); room && n > *room)
        fits = false;
    }
    if (c.rate_key) {
      auto used = rate_used[*c.rate_key] += c.rate_units;
      if (used > c.rate_room)
        fits = false;
    }
    if (fits)
      picks.push_back({turn, c.id});
  }
  // Candidates come in claim order: a stable sort by turn keeps it within
  // each turn.
  std::stable_sort(picks.begin(), picks.end(),
                   [](const pick& a, const pick& b) { return a.turn < b.turn; });
  std::vector<int64_t> out;
  for (const auto& p : picks) {
    if (static_cast<int64_t>(out.size()) >= want)
      break;
    out.push_back(p.id);
  }
  return out;
}

} // namespace bg_jobs::detail
