#pragma once

#include <string>

namespace bg_jobs::detail {

/// The dashboard: one self-contained page (no external resources) that
/// reads the JSON API; `csrf` goes with every action it posts.
std::string dashboard_page(const std::string& csrf, bool read_only);

} // namespace bg_jobs::detail
