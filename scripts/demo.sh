#!/bin/sh
# Sets up, builds and runs the quickstart on an embedded SQLite file.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh" >/dev/null
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
timeout 60 "$root/build/examples/quickstart" "$dir/quickstart.db"
