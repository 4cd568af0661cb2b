#!/bin/bash
# Starts a throwaway PostgreSQL 15 server for the tests and writes its
# connection string to STATE/url. With BG_JOBS_PG_URL set, records that
# server instead and starts nothing.
# With PG_DURABLE=1 the server keeps fsync and synchronous commits on (for
# benchmarks); otherwise they are off, which tests do not need.
# usage: pg_start.sh STATE_DIR
set -eu
state=${1:?usage: pg_start.sh STATE_DIR}
mkdir -p "$state"
rm -f "$state/url" "$state/base"
if [ -n "${BG_JOBS_PG_URL:-}" ]; then
  echo "$BG_JOBS_PG_URL" > "$state/url"
  exit 0
fi
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
# A short base keeps the unix socket path under its 107-byte limit.
base=$(mktemp -d /tmp/bg_jobs_pg.XXXXXX)
chmod 755 "$base"
echo "$base" > "$state/base"
if [ "$(id -u)" = 0 ]; then
  as="runuser -u postgres --"
  chown postgres:postgres "$base"
else
  as=""
fi
$as "$bin/initdb" -D "$base/data" -U postgres -A trust -E UTF8 --no-sync \
  >"$base/initdb.log" 2>&1 || { cat "$base/initdb.log" >&2; exit 1; }
if [ "${PG_DURABLE:-0}" = 1 ]; then
  durability=""
else
  durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
for attempt in $(seq 1 20); do
  port=$((20000 + RANDOM % 20000))
  (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && continue
  if $as "$bin/pg_ctl" -D "$base/data" -l "$base/server.log" -w -t 30 -o \
    "-c port=$port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$base $durability -c max_connections=200" \
    start >/dev/null 2>&1; then
    echo "$port" > "$state/port"
    $as "$bin/createdb" -h "$base" -p "$port" -U postgres bg_jobs_test
    echo "host=$base port=$port user=postgres dbname=bg_jobs_test" > "$state/url"
    exit 0
  fi
done
cat "$base/server.log" >&2
exit 1
