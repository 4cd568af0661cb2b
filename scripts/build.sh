#!/bin/sh
# Installs what is missing, then configures and builds into ./build: every
# target, or the targets named as arguments.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
echo "bg_jobs: checking the packages it needs (scripts/setup.sh)" >&2
"$root/scripts/setup.sh"
echo "bg_jobs: configuring ./build" >&2
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if [ "$#" -gt 0 ]; then
  for target in "$@"; do
    echo "bg_jobs: building $target" >&2
    cmake --build "$root/build" -j2 --target "$target"
  done
else
  echo "bg_jobs: building everything" >&2
  cmake --build "$root/build" -j2
fi
