#!/bin/sh
# The test suites built with AddressSanitizer and UndefinedBehaviorSanitizer
# (into ./build-sanitized): a use after free or undefined behaviour fails a
# test even when it does not crash. The suites of the stores (conformance,
# adapters, maintenance), the runtime (actors, HTTP, scheduler) and the
# faults (reliability, with their node processes), through ctest.
#
# With --build-only it builds and runs nothing (scripts/test.sh builds it
# this way, at a low priority, while the main suites run).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build_only=false
if [ "${1:-}" = "--build-only" ]; then
  build_only=true
  shift
fi
# The command line the tests run as another process comes from ./build
# (with --build-only, the caller has just built it there).
if ! $build_only; then
  "$root/scripts/setup.sh"
  "$root/scripts/build.sh" bg_jobs_cli
fi
build="$root/build-sanitized"
# -Og -g1: line tables are all a sanitizer report needs, and this builds in
# a third of the time -O1 -g takes.
echo "bg_jobs: configuring the sanitizer build ($build)" >&2
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-Og -g1" \
  -DBG_JOBS_SANITIZE=ON -DBG_JOBS_BUILD_EXAMPLES=OFF \
  -DBG_JOBS_SHARED_LIBRARY=OFF -DBG_JOBS_UNITY_BUILD=ON \
  -DBG_JOBS_CLI_PATH="$root/build/tools/bg_jobs" >/dev/null
cmake --build "$build" -j2
if $build_only; then
  exit 0
fi
# verify_asan_link_order=0: a test preloads libfaketime into a node.
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=0:strict_string_checks=1:verify_asan_link_order=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd "$build"
ctest -j2 --output-on-failure --timeout 400 "$@"
