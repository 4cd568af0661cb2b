#include "bg_jobs/core/job_request.hpp"
#include "bg_jobs/core/limits.hpp"

#include "bg_jobs/core/parse.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

namespace {

// The latest time a job may be scheduled for: the end of year 9999.
const timestamp latest_available_at =
    std::chrono::sys_days{std::chrono::year{10000} / 1 / 1} -
    std::chrono::milliseconds{1};

/// Whether `s` is well-formed UTF-8 (no overlong forms, no surrogates, at
/// most U+10FFFF).
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size())
        return false;
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
      return false;
    i += n + 1;
  }
  return true;
}

/// The first problem of `payload`: too deep, or a number that JSON cannot
/// hold. Walks with an explicit stack, never recursing.
caf::error check_payload(const nlohmann::json& payload) {
  if (!payload.is_structured())
    return payload.is_number_float() && !std::isfinite(payload.get<double>())
               ? make_error(errc::invalid_payload,
                            "payload holds a number JSON cannot represent "
                            "(NaN or infinity)")
               : caf::none;
  std::vector<std::pair<const nlohmann::json*, size_t>> todo{{&payload, 1}};
  while (!todo.empty()) {
    auto [x, depth] = todo.back();
    todo.pop_back();
    if (x->is_structured()) {
      if (depth > max_payload_depth)
        return make_error(errc::invalid_payload,
                          "payload nests deeper than " +
                              std::to_string(max_payload_depth) + " levels");
      for (auto& child : *x)
        todo.emplace_back(&child, depth + 1);
    } else if (x->is_number_float() && !std::isfinite(x->get<double>())) {
      return make_error(errc::invalid_payload,
                        "payload holds a number JSON cannot represent (NaN "
                        "or infinity)");
    }
  }
  return caf::none;
}

} // namespace

std::string printable(std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s.substr(0, 64)) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    }
  }
  if (s.size() > 64)
    out += "...";
  return out;
}

std::string name_problem(std::string_view name) {
  if (name.empty())
    return "is empty";
  if (name.size() > max_job_name_length)
    return "is " + std::to_string(name.size()) + " bytes long; the limit is " +
           std::to_string(max_job_name_length);
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f)
      return "holds a control character (byte " + std::to_string(c) + ")";
  if (!valid_utf8(name))
    return "is not valid UTF-8";
  // C1 controls and direction overrides would change how a name shows.
  if (!text_problem(name, max_job_name_length).empty())
    return "holds a control or direction-override character";
  return {};
}

std::string concurrency_key_problem(std::string_view key) {
  if (key.size() > max_concurrency_key_length)
    return "is " + std::to_string(key.size()) + " bytes long; the limit is " +
           std::to_string(max_concurrency_key_length);
  return name_problem(key);
}

std::string tag_problem(std::string_view tag) {
  if (tag.size() > max_tag_length)
    return "is " + std::to_string(tag.size()) + " bytes long; the limit is " +
           std::to_string(max_tag_length);
  if (tag.find(',') != std::string_view::npos)
    return "holds a comma";
  return name_problem(tag);
}

namespace {

bool lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

bool all_zeros(std::string_view s) {
  return s.find_first_not_of('0') == std::string_view::npos;
}

} // namespace

std::string traceparent_problem(std::string_view tp) {
  // version "-" trace-id "-" parent-id "-" trace-flags: 2+1+32+1+16+1+2.
  constexpr size_t length = 55;
  if (tp.size() < length || tp.size() > 512)
    return "must be 55 characters (version-traceid-parentid-flags)";
  if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-')
    return "must be version-traceid-parentid-flags, separated by '-'";
  auto version = tp.substr(0, 2), trace_id = tp.substr(3, 32),
       parent_id = tp.substr(36, 16), flags = tp.substr(53, 2);
  for (auto part : {version, trace_id, parent_id, flags})
    if (!lower_hex(part))
      return "must be lowercase hexadecimal digits and '-'";
  if (version == "ff")
    return "has the invalid version ff";
  if (version == "00" ? tp.size() != length : tp[length] != '-')
    return "has more after its flags than its version allows";
  if (all_zeros(trace_id))
    return "has an all-zero trace id";
  if (all_zeros(parent_id))
    return "has an all-zero parent id";
  return {};
}

std::string tracestate_problem(std::string_view ts) {
  if (ts.size() > max_tracestate_length)
    return "is " + std::to_string(ts.size()) + " bytes long; the limit is " +
           std::to_string(max_tracestate_length);
  size_t members = 0;
  size_t start = 0;
  while (start <= ts.size()) {
    auto end = ts.find(',', start);
    if (end == std::string_view::npos)
      end = ts.size();
    auto member = ts.substr(start, end - start);
    // Optional spaces and tabs around a member; empty members are allowed.
    while (!member.empty() && (member.front() == ' ' || member.front() == '\t'))
      member.remove_prefix(1);
    while (!member.empty() && (member.back() == ' ' || member.back() == '\t'))
      member.remove_suffix(1);
    if (!member.empty()) {
      if (++members > 32)
        return "has more than 32 members";
      auto eq = member.find('=');
      if (eq == std::string_view::npos || eq == 0 || eq + 1 == member.size())
        return "must be comma-separated key=value members";
      auto key = member.substr(0, eq), value = member.substr(eq + 1);
      if (key.size() > 256 || !((key[0] >= 'a' && key[0] <= 'z') ||
                                (key[0] >= '0' && key[0] <= '9')))
        return "has a key that does not start with a lowercase letter or "
               "digit";
      for (char c : key)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '*' || c == '/' || c == '@'))
          return "has a key with a character other than a-z 0-9 _ - * / @";
      if (value.size() > 256)
        return "has a value longer than 256 characters";
      for (char c : value)
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
          return "has a value with a character outside printable ASCII, or "
                 "',' or '='";
    }
    start = end + 1;
  }
  return {};
}

bool exceeds_payload_depth(std::string_view text) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_payload_depth)
        return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

caf::expected<job_request> job_request::parse(std::string name,
                                              std::string_view payload_text) {
  if (exceeds_payload_depth(payload_text))
    return make_error(errc::invalid_payload,
                      "payload nests deeper than " +
                          std::to_string(max_payload_depth) + " levels");
  try {
    return job_request{std::move(name), nlohmann::json::parse(payload_text)};
  } catch (const nlohmann::json::exception& e) {
    return make_error(errc::invalid_payload,
                      "payload is not valid JSON: " + std::string{e.what()});
  }
}

timestamp job_request::resolve_available_at(timestamp now) const {
  if (auto t = std::get_if<timestamp>(&availability_))
    return *t;
  if (auto d = std::get_if<std::chrono::milliseconds>(&availability_))
    return now + *d;
  return now;
}

std::optional<timestamp> job_request::resolve_expires_at(timestamp now) const {
  if (!expiry_)
    return std::nullopt;
  if (auto t = std::get_if<timestamp>(&*expiry_))
    return *t;
  return now + std::get<std::chrono::milliseconds>(*expiry_);
}

caf::expected<std::string> job_request::validate() const {
  if (auto why = name_problem(name_); !why.empty())
    return make_error(errc::invalid_job_name,
                      "job name '" + printable(name_) + "' " + why);
  if (auto d = std::get_if<std::chrono::milliseconds>(&availability_);
      d && (d->count() < 0 || *d > latest_available_at.time_since_epoch()))
    return make_error(errc::invalid_argument,
                      "delay of " + std::to_string(d->count()) +
                          " ms is out of range: jobs become available "
                          "between 1970 and 9999");
  if (auto t = std::get_if<timestamp>(&availability_);
      t && (*t > latest_available_at || t->time_since_epoch().count() < 0))
    return make_error(errc::invalid_argument,
                      "available_at must lie between 1970 and 9999");
  if (priority_ < min_priority || priority_ > max_priority)
    return make_error(errc::invalid_argument,
                      "priority " + std::to_string(priority_) +
                          " is out of range: " + std::to_string(min_priority) +
                          " (most urgent) to " + std::to_string(max_priority));
  for (auto* k : {&concurrency_key_, &second_key_}) {
    if (k->empty())
      continue;
    if (auto why = concurrency_key_problem(*k); !why.empty())
      return make_error(errc::invalid_argument,
                        "concurrency key '" + printable(*k) + "' " + why);
  }
  if (!rate_key_.empty())
    if (auto why = concurrency_key_problem(rate_key_); !why.empty())
      return make_error(errc::invalid_argument,
                        "rate key '" + printable(rate_key_) + "' " + why);
  if (rate_cost_ < 1 || rate_cost_ > max_rate_cost)
    return make_error(errc::invalid_argument,
                      "the rate cost must be 1 to " +
                          std::to_string(max_rate_cost) + ", got " +
                          std::to_string(rate_cost_));
  if (concurrency_key_.empty() && !second_key_.empty())
    return make_error(errc::invalid_argument,
                      "a second concurrency key needs a first");
  if (!concurrency_key_.empty() && concurrency_key_ == second_key_)
    return make_error(errc::invalid_argument,
                      "the two concurrency keys are the same ('" +
                          printable(concurrency_key_) + "')");
  if (unique_) {
    if (unique_->key && unique_->key->empty())
      return make_error(errc::invalid_argument, "the unique key is empty");
    if (unique_->key && unique_->key->size() > max_job_name_length)
      return make_error(errc::invalid_argument,
                        "the unique key is longer than " +
                            std::to_string(max_job_name_length) + " bytes");
    if (unique_->period && unique_->period->count() <= 0)
      return make_error(errc::invalid_argument,
                        "the unique period must be positive, got " +
                            std::to_string(unique_->period->count()) + " ms");
    if (unique_->max_wait &&
        unique_->on_conflict != unique_conflict::debounce)
      return make_error(errc::invalid_argument,
                        "a maximum wait bounds a debounce only");
    if (unique_->max_wait && unique_->max_wait->count() <= 0)
      return make_error(errc::invalid_argument,
                        "the maximum wait must be positive, got " +
                            std::to_string(unique_->max_wait->count()) +
                            " ms");
    if (unique_->on_conflict == unique_conflict::merge &&
        !payload_.is_object())
      return make_error(errc::invalid_argument,
                        "a merged request's payload must be a JSON object");
  }
  if (!meta_.is_object())
    return make_error(errc::invalid_argument,
                      "the metadata must be a JSON object");
  if (auto err = check_payload(meta_))
    return make_error(errc::invalid_argument,
                      "the metadata: " + message_of(err));
  if (auto size = meta_.dump().size(); size > max_meta_size)
    return make_error(errc::invalid_argument,
                      "the metadata is " + std::to_string(size) +
                          " bytes; the limit is " +
                          std::to_string(max_meta_size));
  for (auto& k : secret_meta_)
    if (!meta_.contains(k))
      return make_error(errc::invalid_argument,
                        "the secret metadata '" + printable(k) +
                            "' is not in the metadata");
  if (encrypt_ && unique_ && unique_->on_conflict == unique_conflict::merge)
    return make_error(errc::invalid_argument,
                      "an encrypted payload cannot be merged");
  if (tags_.size() > max_tags)
    return make_error(errc::invalid_argument,
                      std::to_string(tags_.size()) +
                          " tags; the limit is " + std::to_string(max_tags));
  for (auto& t : tags_)
    if (auto why = tag_problem(t); !why.empty())
      return make_error(errc::invalid_argument,
                        "tag '" + printable(t) + "' " + why);
  if (!trace_.traceparent.empty())
    if (auto why = traceparent_problem(trace_.traceparent); !why.empty())
      return make_error(errc::invalid_argument,
                        "traceparent '" + printable(trace_.traceparent) +
                            "' " + why);
  if (!trace_.tracestate.empty()) {
    if (trace_.traceparent.empty())
      return make_error(errc::invalid_argument,
                        "a tracestate needs a traceparent");
    if (auto why = tracestate_problem(trace_.tracestate); !why.empty())
      return make_error(errc::invalid_argument,
                        "tracestate '" + printable(trace_.tracestate) + "' " +
                            why);
  }
  if (auto err = check_payload(payload_))
    return err;
  std::string text;
  try {
    text = payload_.dump();
  } catch (const nlohmann::json::exception& e) {
    return make_error(errc::invalid_payload,
                      "payload cannot be serialized: " + std::string{e.what()});
  }
  if (text.size() > max_payload_size)
    return make_error(errc::invalid_payload,
                      "payload is " + std::to_string(text.size()) +
                          " bytes; the limit is " +
                          std::to_string(max_payload_size));
  return text;
}

namespace {

/// 64-bit FNV-1a of `s`, from `basis`.
uint64_t fnv1a(std::string_view s, uint64_t basis) {
  uint64_t h = basis;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

} // namespace

std::string job_request::unique_key() const {
  if (unique_ && unique_->key)
    return *unique_->key;
  // The name, then a digest of the canonical payload text (object keys
  // sorted), so that keys stay short for any payload.
  auto text = payload_.dump();
  char buf[40];
  std::snprintf(
      buf, sizeof(buf), "%016llx%016llx",
      static_cast<unsigned long long>(fnv1a(text, 0xcbf29ce484222325ull)),
      static_cast<unsigned long long>(
          fnv1a(text, 0x84222325cbf29ce4ull ^ text.size())));
  return name_ + ":" + buf;
}

caf::expected<std::string> job_request::validate(timestamp now) const {
  auto text = validate();
  if (text && resolve_available_at(now) > latest_available_at)
    return make_error(errc::invalid_argument,
                      "the job would become available after the year 9999");
  if (text && expiry_) {
    if (auto d = std::get_if<std::chrono::milliseconds>(&*expiry_);
        d && (d->count() <= 0 || *d > std::chrono::hours{24 * 365 * 100}))
      return make_error(errc::invalid_argument,
                        "expires_in must be 1 ms to 100 years, got " +
                            std::to_string(d->count()) + " ms");
    auto at = *resolve_expires_at(now);
    if (at > latest_available_at || at.time_since_epoch().count() < 0)
      return make_error(errc::invalid_argument,
                        "the expiry must lie between 1970 and 9999");
    if (at <= resolve_available_at(now))
      return make_error(errc::invalid_argument,
                        "the job would expire before it becomes available");
  }
  return text;
}

} // namespace bg_jobs
