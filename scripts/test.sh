#!/bin/sh
# Sets up, builds and runs every test through ctest; then the suites again,
# built with AddressSanitizer and UndefinedBehaviorSanitizer.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup_browser.sh"
"$root/scripts/build.sh"
cd "$root/build"
ctest -j2 --output-on-failure --timeout 300 "$@"
"$root/scripts/test_sanitized.sh" "$@"
