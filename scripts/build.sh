#!/bin/sh
# Installs what is missing, then configures and builds into ./build: every
# target, or the targets named as arguments.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
echo "bg_jobs: checking the packages it needs (scripts/setup.sh)" >&2
"$root/scripts/setup.sh"
# -g1: line tables for backtraces, without the full debug information that
# makes the build a quarter slower.
echo "bg_jobs: configuring ./build" >&2
# The suites of the stores, the runtime and the faults are built and run
# in the sanitizer build (scripts/test_sanitized.sh) only.
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DBG_JOBS_STORE_SUITES=OFF -DBG_JOBS_UNITY_BUILD=ON >/dev/null
if [ "$#" -gt 0 ]; then
  for target in "$@"; do
    echo "bg_jobs: building $target" >&2
    cmake --build "$root/build" -j2 --target "$target"
  done
else
  echo "bg_jobs: building everything" >&2
  cmake --build "$root/build" -j2
fi
