// The bg_jobs command-line program.
//
//   bg_jobs cron next "<expr>" [--from <YYYY-MM-DDTHH:MM:SSZ>] [--count <N>]
//                              [--tz <zone>]
//
// prints the next N runs of a cron expression after --from (default: now),
// one UTC instant per line; with --tz (or a CRON_TZ= prefix) the expression
// matches that zone's wall clock. An invalid expression, zone or argument
// is a message on stderr and exit status 2.
#include <iostream>
#include <optional>
#include <string>

#include "bg_jobs/core/clock.hpp"
#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/scheduling/cron_schedule.hpp"

namespace {

int usage(const std::string& msg) {
  std::cerr << "bg_jobs: " << msg << "\nusage: bg_jobs cron next \"<expr>\""
            << " [--from YYYY-MM-DDTHH:MM:SSZ] [--count N] [--tz ZONE]"
            << std::endl;
  return 2;
}

std::string to_seconds_iso(bg_jobs::timestamp t) {
  auto text = bg_jobs::to_iso8601(t); // ...SS.mmmZ
  return text.substr(0, 19) + "Z";
}

} // namespace

int main(int argc, char** argv) {
  if (argc == 2 &&
      (std::string{argv[1]} == "--help" || std::string{argv[1]} == "-h" ||
       std::string{argv[1]} == "help")) {
    std::cout << "usage: bg_jobs cron next \"<expr>\" [--from "
                 "YYYY-MM-DDTHH:MM:SSZ] [--count N] [--tz ZONE]\n"
                 "  prints the next runs of a cron expression as UTC "
                 "instants\n";
    return 0;
  }
  if (argc < 4 || std::string{argv[1]} != "cron" ||
      std::string{argv[2]} != "next")
    return usage("unknown command");
  std::string expr = argv[3];
  auto from = bg_jobs::clock::system()->now();
  long count = 1;
  std::optional<std::string> zone;
  for (int i = 4; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc)
      return usage("missing value for " + arg);
    std::string value = argv[++i];
    if (arg == "--from") {
      auto t = bg_jobs::parse_iso8601(value);
      if (!t)
        return usage("--from expects YYYY-MM-DDTHH:MM:SSZ, got '" + value +
                     "'");
      from = *t;
    } else if (arg == "--count") {
      try {
        size_t used = 0;
        count = std::stol(value, &used);
        if (used != value.size() || count <= 0 || count > 100000)
          throw std::invalid_argument("count");
      } catch (...) {
        return usage("--count expects a number from 1 to 100000, got '" +
                     value + "'");
      }
    } else if (arg == "--tz") {
      zone = value;
    } else {
      return usage("unknown option " + arg);
    }
  }
  auto schedule = bg_jobs::cron_schedule::parse(expr);
  if (schedule && zone)
    schedule = schedule->in_time_zone(*zone);
  if (!schedule) {
    std::cerr << "bg_jobs: " << bg_jobs::describe(schedule.error())
              << std::endl;
    return 2;
  }
  auto t = from;
  for (long i = 0; i < count; ++i) {
    auto next = schedule->next_after(t);
    if (!next)
      break;
    std::cout << to_seconds_iso(*next) << '\n';
    t = *next;
  }
  return 0;
}
