#!/bin/bash
# Restarts the throwaway server of pg_start.sh (fast shutdown, same port).
# usage: pg_restart.sh STATE_DIR [pause-seconds]
set -eu
state=${1:?usage: pg_restart.sh STATE_DIR [pause-seconds]}
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
base=$(cat "$state/base")
port=$(cat "$state/port")
if [ "$(id -u)" = 0 ]; then as="runuser -u postgres --"; else as=""; fi
$as "$bin/pg_ctl" -D "$base/data" -m fast -w -t 30 stop >/dev/null
sleep "${2:-0}"
$as "$bin/pg_ctl" -D "$base/data" -l "$base/server.log" -w -t 30 -o \
  "-c port=$port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$base -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null
