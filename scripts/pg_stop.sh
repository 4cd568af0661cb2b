#!/bin/bash
# Stops and removes the server that pg_start.sh started (if it started one).
# usage: pg_stop.sh STATE_DIR
set -u
state=${1:?usage: pg_stop.sh STATE_DIR}
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
[ -f "$state/base" ] || exit 0
base=$(cat "$state/base")
if [ "$(id -u)" = 0 ]; then as="runuser -u postgres --"; else as=""; fi
if [ -f "$base/data/postmaster.pid" ]; then
  $as "$bin/pg_ctl" -D "$base/data" -m immediate -w -t 30 stop >/dev/null 2>&1
fi
rm -rf "$base"
rm -f "$state/base" "$state/url" "$state/port"
exit 0
