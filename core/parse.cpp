#include "bg_jobs/core/parse.hpp"

#include <limits>

#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/job_request.hpp"

namespace bg_jobs {

namespace {

caf::error bad(std::string message) {
  return make_error(errc::invalid_argument, std::move(message));
}

/// Reads the decimal digits at the start of `text` into `out` with checked
/// arithmetic; returns how many, or 0 when there are none or the value
/// overflows.
size_t read_decimal(std::string_view text, int64_t& out) {
  out = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    int digit = text[i] - '0';
    if (out > (std::numeric_limits<int64_t>::max() - digit) / 10)
      return 0;
    out = out * 10 + digit;
  }
  return i;
}

/// Decodes one UTF-8 sequence at `s[i]`; returns its length (0: invalid)
/// and the code point.
size_t utf8_at(std::string_view s, size_t i, char32_t& cp) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  auto c = b(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
                                          : (c >> 3) == 30  ? 4
                                                            : 0;
  if (n == 0 || i + n > s.size())
    return 0;
  cp = n == 1 ? c : n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (b(i + k) & 0x3f);
  }
  // Overlong forms, surrogates and values beyond Unicode are invalid.
  static const char32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < least[n] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
    return 0;
  return n;
}

bool hidden(char32_t cp) {
  return (cp < 0x20 && cp != '\t') || cp == 0x7f ||
         (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

} // namespace

caf::expected<int64_t> parse_job_id(std::string_view text) {
  int64_t v = 0;
  auto n = read_decimal(text, v);
  if (n == 0 || n != text.size() || v <= 0 || text[0] == '0')
    return bad("a job id is a positive decimal number, got '" +
               printable(text) + "'");
  return v;
}

caf::expected<int64_t> parse_count(const char* what, std::string_view text,
                                   int64_t min, int64_t max) {
  int64_t v = 0;
  auto n = read_decimal(text, v);
  if (n == 0 || n != text.size() || v < min || v > max ||
      (text.size() > 1 && text[0] == '0'))
    return bad(std::string{what} + " must be a decimal number from " +
               std::to_string(min) + " to " + std::to_string(max) +
               ", got '" + printable(text) + "'");
  return v;
}

caf::expected<std::chrono::milliseconds> parse_duration(std::string_view text) {
  auto fail = [&] {
    return bad("invalid duration '" + printable(text) +
               "' (a number and ms, s, m, h or d, e.g. 30s, 5m, 2h; at most "
               "36500d)");
  };
  int64_t n = 0;
  auto used = read_decimal(text, n);
  if (used == 0)
    return fail();
  auto unit = text.substr(used);
  int64_t ms = 0;
  if (unit.empty() || unit == "s")
    ms = 1000;
  else if (unit == "ms")
    ms = 1;
  else if (unit == "m")
    ms = 60 * 1000;
  else if (unit == "h")
    ms = 3600 * 1000;
  else if (unit == "d")
    ms = 86400 * 1000;
  else
    return fail();
  if (n > max_duration.count() / ms)
    return fail();
  return std::chrono::milliseconds{n * ms};
}

caf::expected<uint16_t> parse_port(std::string_view text) {
  auto n = parse_count("a port", text, 0, 65535);
  if (!n)
    return std::move(n.error());
  return static_cast<uint16_t>(*n);
}

std::string utf8_repaired(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    auto n = utf8_at(text, i, cp);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string terminal_text(std::string_view text, bool keep_newlines) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    auto n = utf8_at(text, i, cp);
    if (n == 0) {
      auto c = static_cast<unsigned char>(text[i]);
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
      ++i;
      continue;
    }
    if (cp == '\n' && keep_newlines) {
      out += '\n';
    } else if (cp == '\\') {
      out += "\\\\";
    } else if (hidden(cp)) {
      if (cp < 0x80) {
        out += "\\x";
        out += hex[(cp >> 4) & 0xf];
        out += hex[cp & 0xf];
      } else {
        out += "\\u{";
        for (int shift = 12; shift >= 0; shift -= 4)
          out += hex[(cp >> shift) & 0xf];
        out += '}';
      }
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

std::string stored_text(std::string_view text, size_t max) {
  auto s = utf8_repaired(text);
  if (s.size() <= max)
    return s;
  auto cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80)
    --cut;
  s.resize(cut);
  return s;
}

std::string text_problem(std::string_view text, size_t max) {
  if (text.size() > max)
    return "is " + std::to_string(text.size()) + " bytes long; the limit is " +
           std::to_string(max);
  for (size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    auto n = utf8_at(text, i, cp);
    if (n == 0)
      return "is not valid UTF-8";
    if (hidden(cp))
      return "holds a control character";
    i += n;
  }
  return {};
}

} // namespace bg_jobs
