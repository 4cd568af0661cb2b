#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

namespace bg_jobs {

// Strict readers of numbers and text that come from outside (the command
// line, HTTP requests): decimal digits only, checked arithmetic, a clear
// `invalid_argument` error for anything else.

/// A job id: a positive decimal number without sign, spaces or leading
/// zeros, at most 2^63 - 1.
caf::expected<int64_t> parse_job_id(std::string_view text);

/// A decimal count within `min`..`max`; `what` names it in the error.
caf::expected<int64_t> parse_count(const char* what, std::string_view text,
                                   int64_t min, int64_t max);

/// The longest duration `parse_duration` accepts: 100 years.
inline constexpr std::chrono::milliseconds max_duration{
    int64_t{36500} * 24 * 3600 * 1000};

/// A duration: a decimal number followed by `ms`, `s`, `m`, `h` or `d`
/// (none: seconds), from 0 up to `max_duration`.
caf::expected<std::chrono::milliseconds> parse_duration(std::string_view text);

/// A TCP port, 0 to 65535.
caf::expected<uint16_t> parse_port(std::string_view text);

/// `text` with every byte that is not part of valid UTF-8 replaced by
/// U+FFFD.
std::string utf8_repaired(std::string_view text);

/// `text` made safe for a terminal: invalid UTF-8 repaired, and control
/// characters (C0 but tab, DEL, C1) and the bidirectional overrides and
/// isolates (U+202A-U+202E, U+2066-U+2069) written as `\xNN` or `\u{NNNN}`,
/// so stored text can neither move the cursor, ring, set a title nor
/// reverse what is printed after it. Newlines are kept when
/// `keep_newlines`.
std::string terminal_text(std::string_view text, bool keep_newlines = false);

/// Text from a handler (an error message) as it is stored: valid UTF-8
/// (`utf8_repaired`), cut to at most `max` bytes at a character boundary.
std::string stored_text(std::string_view text, size_t max = 8192);

/// Why `text` cannot be stored as a reason or message (not valid UTF-8, a
/// control character, or longer than `max` bytes), or empty.
std::string text_problem(std::string_view text, size_t max);

} // namespace bg_jobs
