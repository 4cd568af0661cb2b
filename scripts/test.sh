#!/bin/sh
# Sets up, builds and runs every test through ctest: the core, command-line,
# example, browser and install tests in ./build; the suites of the stores,
# the runtime and the faults built with AddressSanitizer and
# UndefinedBehaviorSanitizer (./build-sanitized). The sanitizer build
# compiles while the main tests run, at the lowest priority, so that it
# takes only the processor time they leave idle.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
start=$(date +%s)
phase() { echo "bg_jobs: $1 ($(($(date +%s) - start)) s in)" >&2; }
"$root/scripts/setup_browser.sh"
phase "set up"
"$root/scripts/build.sh"
phase "built"
mkdir -p "$root/build-sanitized"
san_log="$root/build-sanitized/build.log"
nice -n 19 "$root/scripts/test_sanitized.sh" --build-only >"$san_log" 2>&1 &
san=$!
trap 'kill $san 2>/dev/null || true' EXIT INT TERM
status=0
(cd "$root/build" && ctest -j2 --output-on-failure --timeout 300 "$@") ||
  status=$?
phase "main suites run"
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
phase "sanitizer build done"
"$root/scripts/test_sanitized.sh" "$@"
phase "sanitizer suites run"
