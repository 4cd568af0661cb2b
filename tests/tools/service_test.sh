#!/bin/bash
# The worker_service example as an operator runs it: two worker processes on one
# SQLite store share the jobs the command line enqueues, and each stops
# cleanly (exit 0) on SIGTERM.
# usage: service_test.sh SERVICE BG_JOBS
set -u
service=$1
bin=$2
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
store="$work/jobs.db"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# wait_for FILE TEXT SECONDS: until FILE contains TEXT.
wait_for() {
  local deadline=$((SECONDS + $3))
  until grep -q -- "$2" "$1" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

"$bin" --db "sqlite:$store" migrate up >/dev/null || exit 1
for n in 1 2; do
  "$service" "worker-$n" "$store" >"$work/worker-$n.log" 2>&1 &
  pids+=($!)
done
for n in 1 2; do
  if ! wait_for "$work/worker-$n.log" "worker-$n ready" 60; then
    echo "FAIL: worker-$n did not start: $(cat "$work/worker-$n.log")" >&2
    exit 1
  fi
done
jobs=40
for i in $(seq 1 $jobs); do
  "$bin" --db "sqlite:$store" jobs enqueue resize_image \
    --payload "{\"path\":\"img-$i.png\",\"width\":64}" >/dev/null ||
    fail "enqueue $i"
done
# Every job runs once, on one of the two.
deadline=$((SECONDS + 60))
until [ "$(cat "$work"/worker-*.log | grep -c ' resized ')" -ge $jobs ]; do
  if [ $SECONDS -ge $deadline ]; then
    fail "not every job ran"
    # Where the others are, for the failure.
    for state in waiting scheduled running; do
      echo "jobs $state: $("$bin" --db "sqlite:$store" --json jobs list \
        --state $state | jq -c '[.jobs[] | {id, payload, reserved_by}]')" >&2
    done
    for n in 1 2; do
      echo "worker-$n's log:" >&2
      grep -v ' resized \|job.stop' "$work/worker-$n.log" >&2
    done
    break
  fi
  sleep 0.1
done
for n in 1 2; do
  kill -TERM "${pids[$((n - 1))]}"
done
for n in 1 2; do
  # A process that does not stop within its own 30 s bound is a failure.
  status=0
  wait "${pids[$((n - 1))]}" || status=$?
  [ "$status" = 0 ] || fail "worker-$n exited $status: $(tail -5 "$work/worker-$n.log")"
  grep -q "worker-$n stopping on signal 15" "$work/worker-$n.log" ||
    fail "worker-$n did not report its signal"
done
pids=()
ran=$(cat "$work"/worker-*.log | grep -c ' resized ')
[ "$ran" = $jobs ] || fail "$ran runs for $jobs jobs"
for i in $(seq 1 $jobs); do
  [ "$(cat "$work"/worker-*.log | grep -c " resized img-$i.png ")" = 1 ] ||
    fail "img-$i.png did not run exactly once"
done
succeeded=$("$bin" --db "sqlite:$store" --json stats |
  jq '[.queues[].counts.succeeded] | add')
[ "$succeeded" = $jobs ] || fail "$succeeded succeeded, not $jobs"
if [ $failures -gt 0 ]; then
  cat "$work"/worker-*.log | tail -20 >&2
  exit 1
fi
echo "service: $jobs jobs on two processes, both stopped cleanly"
