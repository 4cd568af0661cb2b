#pragma once

#include <doctest/doctest.h>

#include "bg_jobs/core/errc.hpp"
#include "support/why.hpp"

namespace bg_jobs::test {

/// The value of `x`; the test stops with the error's description if none.
template <class T>
T value_of(caf::expected<T> x) {
  REQUIRE_MESSAGE(x, bg_jobs::test::why(x));
  return std::move(*x);
}

inline void require_ok(const caf::expected<void>& x) {
  REQUIRE_MESSAGE(x, bg_jobs::test::why(x));
}

/// The code of the error `x` must hold.
template <class T>
errc error_of(const caf::expected<T>& x) {
  REQUIRE_FALSE(x);
  return code_of(x.error());
}

} // namespace bg_jobs::test
