#pragma once

#include <string>

#include <caf/expected.hpp>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::test {

/// The error of `x` as text, or an empty string when `x` holds a value;
/// safe in assertion messages, which doctest may render on success too.
template <class T>
std::string why(const caf::expected<T>& x) {
  return x ? std::string{} : describe(x.error());
}

} // namespace bg_jobs::test
