#!/bin/bash
# Runs every workload of the benchmark in both modes on both stores (STORES,
# default "postgres sqlite"), RUNS times each (3), and prints the median of
# each figure. Needs a built tree (./scripts/build.sh); starts and removes
# its own PostgreSQL server.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bench="$root/build/bench/bg_jobs_bench"
runs=${RUNS:-3}
state=$(mktemp -d)
work=$(mktemp -d)
trap '"$root/scripts/pg_stop.sh" "$state"; rm -rf "$state" "$work"' EXIT
# A durable server: fsync and synchronous commits on.
PG_DURABLE=1 "$root/scripts/pg_start.sh" "$state"
url=$(cat "$state/url")

run() { # store workload mode -> RESULT json
  local store=$1 workload=$2 mode=$3
  if [ "$store" = postgres ]; then
    psql "$url" -qc "DROP SCHEMA public CASCADE; CREATE SCHEMA public;" >/dev/null 2>&1
    BENCH_PG_URL="$url" "$bench" "$workload" "$mode" 2>/dev/null | grep '^RESULT ' | cut -c8-
  else
    rm -rf "$work/s" && mkdir "$work/s"
    BENCH_SQLITE_PATH="$work/s/jobs.db" "$bench" "$workload" "$mode" 2>/dev/null | grep '^RESULT ' | cut -c8-
  fi
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for store in ${STORES:-postgres sqlite}; do
  for mode in default fast; do
    for workload in drain latency enqueue; do
      : > "$work/out"
      for i in $(seq 1 "$runs"); do run "$store" "$workload" "$mode" >> "$work/out"; done
      case $workload in
        drain)
          echo "$store $mode insert_rate $(jq '.insert.rate' "$work/out" | median)"
          echo "$store $mode drain_rate $(jq '.drain.rate' "$work/out" | median)" ;;
        latency)
          for p in p50 p95 p99; do
            echo "$store $mode latency_$p $(jq ".latency.latency_ms.$p" "$work/out" | median)"
          done
          echo "$store $mode idle_cpu_ms_per_s $(jq '.latency.worker_idle_cpu_ms_per_s' "$work/out" | median)" ;;
        enqueue)
          echo "$store $mode enqueue_rate $(jq '.enqueue.rate' "$work/out" | median)" ;;
      esac
    done
  done
done
