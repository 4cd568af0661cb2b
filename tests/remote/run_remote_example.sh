#!/bin/sh
# Runs the remote example as two processes: a worker that publishes its
# bg_jobs actor, and a web process that enqueues through it.
# usage: run_remote_example.sh REMOTE_ENQUEUE_BINARY WORK_DIR
set -eu
bin=$1
dir=$2
rm -rf "$dir"
mkdir -p "$dir"
"$bin" worker "$dir/jobs.db" "$dir/port" &
worker=$!
i=0
while [ ! -s "$dir/port" ]; do
  i=$((i + 1))
  if [ $i -gt 300 ] || ! kill -0 $worker 2>/dev/null; then
    echo "the worker did not publish its port" >&2
    kill $worker 2>/dev/null || true
    exit 1
  fi
  sleep 0.1
done
status=0
"$bin" web "$(cat "$dir/port")" || status=$?
touch "$dir/port.done"
wait $worker || status=$?
exit $status
