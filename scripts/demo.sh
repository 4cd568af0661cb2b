#!/bin/sh
# Sets up, builds the quickstart (showing progress) and runs it on an
# embedded SQLite file.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh" quickstart
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo "bg_jobs: running the quickstart on $dir/quickstart.db" >&2
timeout 60 "$root/build/examples/quickstart" "$dir/quickstart.db"
