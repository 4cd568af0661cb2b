#!/bin/sh
# Sets up, builds and runs every test through ctest; then the suites again,
# built with AddressSanitizer and UndefinedBehaviorSanitizer. The sanitizer
# build compiles while the main suites run, at the lowest priority, so that
# it takes only the processor time the tests leave idle (they wait on
# leases, processes and the network much of the time).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup_browser.sh"
"$root/scripts/build.sh"
mkdir -p "$root/build-sanitized"
san_log="$root/build-sanitized/build.log"
nice -n 19 "$root/scripts/test_sanitized.sh" --build-only >"$san_log" 2>&1 &
san=$!
trap 'kill $san 2>/dev/null || true' EXIT INT TERM
status=0
(cd "$root/build" && ctest -j2 --output-on-failure --timeout 300 "$@") ||
  status=$?
san_status=0
wait $san || san_status=$?
trap - EXIT INT TERM
if [ $san_status -ne 0 ]; then
  cat "$san_log" >&2
  echo "bg_jobs: the sanitizer build failed" >&2
  exit $san_status
fi
if [ $status -ne 0 ]; then
  exit $status
fi
"$root/scripts/test_sanitized.sh" "$@"
