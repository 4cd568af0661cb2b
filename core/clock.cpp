#include "bg_jobs/core/clock.hpp"

namespace bg_jobs {

namespace {

class system_clock_source : public clock {
public:
  timestamp now() const override { return utc_now(); }
};

} // namespace

std::shared_ptr<clock> clock::system() {
  static auto instance = std::make_shared<system_clock_source>();
  return instance;
}

} // namespace bg_jobs
