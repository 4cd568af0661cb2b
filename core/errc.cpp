#include "bg_jobs/core/errc.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/deep_to_string.hpp>
#include <caf/message.hpp>

namespace bg_jobs {

const char* to_string(errc x) {
  switch (x) {
  case errc::invalid_job_name:
    return "invalid_job_name";
  case errc::invalid_payload:
    return "invalid_payload";
  case errc::invalid_argument:
    return "invalid_argument";
  case errc::no_worker_for_job:
    return "no_worker_for_job";
  case errc::database_unavailable:
    return "database_unavailable";
  case errc::not_a_database:
    return "not_a_database";
  case errc::database_locked:
    return "database_locked";
  case errc::database_error:
    return "database_error";
  case errc::connection_lost:
    return "connection_lost";
  case errc::schema_missing:
    return "schema_missing";
  case errc::schema_too_new:
    return "schema_too_new";
  case errc::job_not_found:
    return "job_not_found";
  case errc::reservation_lost:
    return "reservation_lost";
  case errc::invalid_schedule:
    return "invalid_schedule";
  case errc::invalid_config:
    return "invalid_config";
  case errc::shutting_down:
    return "shutting_down";
  case errc::timeout:
    return "timeout";
  case errc::restart_limit_exceeded:
    return "restart_limit_exceeded";
  case errc::invalid_state:
    return "invalid_state";
  case errc::unknown_queue:
    return "unknown_queue";
  case errc::decryption_failed:
    return "decryption_failed";
  }
  return "unknown";
}

caf::error make_error(errc x) {
  return {static_cast<uint8_t>(x), errc_category};
}

caf::error make_error(errc x, std::string msg) {
  return {static_cast<uint8_t>(x), errc_category,
          caf::make_message(std::move(msg))};
}

errc code_of(const caf::error& err) {
  if (!err || err.category() != errc_category)
    return errc{};
  return static_cast<errc>(err.code());
}

namespace {

/// The text of `ctx` on one line: a server's multi-line message (libpq's
/// "ERROR: ...\nDETAIL: ...") has its line breaks turned into "; ".
std::string context_text(const caf::message& ctx) {
  std::string text = ctx.size() == 1 && ctx.match_element<std::string>(0)
                         ? ctx.get_as<std::string>(0)
                         : caf::deep_to_string(ctx);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\n' && text[i] != '\r') {
      out += text[i];
      continue;
    }
    while (!out.empty() && out.back() == ' ')
      out.pop_back();
    while (i + 1 < text.size() &&
           (text[i + 1] == '\n' || text[i + 1] == '\r' || text[i + 1] == ' '))
      ++i;
    if (i + 1 < text.size())
      out += "; ";
  }
  return out;
}

std::string render(uint8_t code, const caf::message& ctx) {
  std::string result = "bg_jobs.";
  result += to_string(static_cast<errc>(code));
  if (!ctx.empty()) {
    result += ": ";
    result += context_text(ctx);
  }
  return result;
}

} // namespace

std::string describe(const caf::error& err) {
  if (!err)
    return "no error";
  if (err.category() == errc_category)
    return render(err.code(), err.context());
  return caf::to_string(err);
}

std::string message_of(const caf::error& err) {
  if (!err)
    return "no error";
  if (err.category() == errc_category)
    return err.context().empty() ? std::string{to_string(code_of(err))}
                                 : context_text(err.context());
  return caf::to_string(err);
}

void add_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(
      errc_category, [](uint8_t code, caf::atom_value,
                        const caf::message& ctx) { return render(code, ctx); });
}

} // namespace bg_jobs
