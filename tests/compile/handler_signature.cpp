// Compiled only: workers whose handlers have the right signature, and, with
// one of the WRONG_* macros defined, one that has not, which must fail to
// compile with the library's one-line explanation.
#include <string>

#include <nlohmann/json.hpp>

#include "bg_jobs/core/typed_job.hpp"
#include "bg_jobs/core/worker.hpp"

struct resize_image {
  static constexpr const char* job_name = "resize_image";
  std::string path;
  int width = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(resize_image, path, width)

void workers() {
  bg_jobs::worker untyped{"j", [](const bg_jobs::job&) {}};
  auto typed = bg_jobs::typed_worker<resize_image>(
      [](const resize_image&) { return bg_jobs::outcome::success(); });
#if defined(WRONG_RESULT)
  // Returns bool, not an outcome.
  bg_jobs::worker bad{"j", [](const bg_jobs::job&) { return true; }};
#elif defined(WRONG_TYPED_RESULT)
  auto bad = bg_jobs::typed_worker<resize_image>(
      [](const resize_image&) { return 1; });
#elif defined(WRONG_ARGUMENTS)
  // Takes the payload's text, not the decoded arguments.
  auto bad = bg_jobs::typed_worker<resize_image>([](const std::string&) {});
#endif
}
