#!/bin/bash
# One case of the command-line program's tests, on a fresh store.
# usage: cli_test.sh BG_JOBS SEED_STORE sqlite|postgres CASE
# For postgres the server's URL is read from $BG_JOBS_PG_URL or the file
# $BG_JOBS_PG_STATE/url; each case works in a schema of its own.
set -u
bin=$1
seed=$2
kind=$3
case_name=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$kind" = postgres ]; then
  url=${BG_JOBS_PG_URL:-$(cat "$BG_JOBS_PG_STATE/url")}
  prefix="cli_${case_name}_$$"
  db=(--db "$url" --prefix "$prefix")
  seed_args=(--store "$url" --prefix "$prefix")
else
  db=(--db "sqlite:$work/jobs.db")
  seed_args=(--store "$work/jobs.db")
fi

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# run EXPECTED_STATUS ARGS...: runs the program; stdout in $out, stderr in
# $err.
run() {
  local want=$1
  shift
  out=$("$bin" "$@" 2>"$work/err")
  local status=$?
  err=$(cat "$work/err")
  if [ "$status" != "$want" ]; then
    fail "bg_jobs $* exited $status, not $want (stderr: $err)"
  fi
}

expect() { # expect DESCRIPTION ACTUAL WANTED
  [ "$2" = "$3" ] || fail "$1: got '$2', wanted '$3'"
}

contains() { # contains DESCRIPTION TEXT PART
  case "$2" in *"$3"*) ;; *) fail "$1: '$2' lacks '$3'" ;; esac
}

seeded() {
  ids=$("$seed" "${seed_args[@]}") || { fail "seeding"; exit 1; }
}

case "$case_name" in
migrate)
  # A deploy script checks the schema by the exit status: 1 unless current.
  run 1 "${db[@]}" migrate status
  contains "status before" "$out" "missing"
  run 0 "${db[@]}" migrate up
  contains "up" "$out" "schema at version"
  run 0 "${db[@]}" migrate status --json
  expect "status after" "$(jq -r .state <<<"$out")" "current"
  run 2 "${db[@]}" migrate down
  run 0 "${db[@]}" migrate down --yes
  run 1 "${db[@]}" migrate status
  contains "status after down" "$out" "missing"
  run 1 "${db[@]}" stats
  contains "stats without schema" "$err" "schema_missing"
  ;;
stats)
  seeded
  run 0 "${db[@]}" --json stats
  expect "mail waiting" "$(jq '.queues[] | select(.queue=="mail") | .counts.waiting' <<<"$out")" 3
  expect "mail succeeded" "$(jq '.queues[] | select(.queue=="mail") | .counts.succeeded' <<<"$out")" 2
  expect "mail failed" "$(jq '.queues[] | select(.queue=="mail") | .counts.failed' <<<"$out")" 2
  expect "mail cancelled" "$(jq '.queues[] | select(.queue=="mail") | .counts.cancelled' <<<"$out")" 1
  expect "reports running" "$(jq '.queues[] | select(.queue=="reports") | .counts.running' <<<"$out")" 1
  expect "reports scheduled" "$(jq '.queues[] | select(.queue=="reports") | .counts.scheduled' <<<"$out")" 1
  run 0 "${db[@]}" stats
  contains "table" "$out" "OLDEST WAITING"
  ;;
list)
  seeded
  run 0 "${db[@]}" --json jobs list --state failed
  expect "failed ids" "$(jq -c '[.jobs[].id] | sort' <<<"$out")" "$(jq -c '.failed | sort' <<<"$ids")"
  run 0 "${db[@]}" --json jobs list --state waiting --queue mail --limit 2 --oldest
  expect "page 1" "$(jq -c '[.jobs[].id]' <<<"$out")" "$(jq -c '.waiting[0:2]' <<<"$ids")"
  next=$(jq -r .next <<<"$out")
  run 0 "${db[@]}" --json jobs list --state waiting --queue mail --limit 2 --oldest --after "$next"
  expect "page 2" "$(jq -c '[.jobs[].id]' <<<"$out")" "$(jq -c '.waiting[2:3]' <<<"$ids")"
  expect "last page" "$(jq -r .next <<<"$out")" ""
  run 0 "${db[@]}" jobs list --state running
  contains "table" "$out" "report"
  run 2 "${db[@]}" jobs list --state exploded
  run 1 "${db[@]}" jobs list --queue nope
  contains "unknown queue" "$err" "unknown_queue"
  run 2 "${db[@]}" jobs list --after "1; DROP TABLE jobs"
  ;;
show)
  seeded
  id=$(jq '.failed[0]' <<<"$ids")
  run 0 "${db[@]}" --json jobs show "$id"
  expect "state" "$(jq -r .state <<<"$out")" failed
  expect "errors kept" "$(jq '.errors | length' <<<"$out")" 2
  run 0 "${db[@]}" jobs show "$id"
  contains "payload" "$out" '"to": "bounce"'
  contains "errors" "$out" "smtp down again"
  run 1 "${db[@]}" jobs show 987654
  contains "unknown id" "$err" "job_not_found"
  run 2 "${db[@]}" jobs show abc
  ;;
schedules)
  run 0 "${db[@]}" migrate up
  run 0 "${db[@]}" schedules set digest --job mail --cron "0 30 7 * * 1-5" \
    --tz Europe/Berlin --payload '{"to":"ops"}' --overlap skip \
    --missed catch_up --catch-up-max 3
  contains "added" "$out" "added schedule digest"
  run 0 "${db[@]}" --json schedules set digest --job mail --every 5m
  expect "changed" "$(jq .added <<<"$out")" false
  run 0 "${db[@]}" --json schedules list
  expect "one" "$(jq length <<<"$out")" 1
  expect "every" "$(jq .[0].definition.every_ms <<<"$out")" 300000
  expect "from run time" "$(jq .[0].declared <<<"$out")" false
  run 0 "${db[@]}" schedules set digest --job mail --cron "0 30 7 * * 1-5" \
    --tz Europe/Berlin --payload '{"to":"ops"}'
  run 0 "${db[@]}" schedules list
  contains "table" "$out" "0 30 7 * * 1-5 in Europe/Berlin"
  contains "policies" "$out" "one_waiting"
  run 0 "${db[@]}" --json schedules trigger digest
  job=$(jq .job_id <<<"$out")
  run 0 "${db[@]}" --json jobs show "$job"
  expect "triggered payload" "$(jq -c .payload <<<"$out")" '{"to":"ops"}'
  expect "triggered waits" "$(jq -r .state <<<"$out")" waiting
  run 0 "${db[@]}" --json schedules list
  expect "last run" "$(jq .[0].last.job_id <<<"$out")" "$job"
  run 0 "${db[@]}" schedules pause digest
  run 0 "${db[@]}" --json schedules list
  expect "paused" "$(jq .[0].paused <<<"$out")" true
  run 0 "${db[@]}" --json jobs show "$job"
  expect "skipped by the pause" "$(jq -r .state <<<"$out")" cancelled
  run 0 "${db[@]}" schedules resume digest
  run 0 "${db[@]}" --json schedules trigger digest
  job=$(jq .job_id <<<"$out")
  # Bad input: a clear error, nothing changed.
  run 2 "${db[@]}" schedules set bad --job mail
  contains "no time" "$err" "--cron or --every"
  run 2 "${db[@]}" schedules set bad --job mail --cron "0 0 30 2 *"
  run 2 "${db[@]}" schedules set bad --job mail --cron "* * * * *" --tz Mars/Olympus
  run 2 "${db[@]}" schedules set bad --job mail --every 5m --missed catch_up
  contains "catch_up" "$err" "catch_up applies to cron schedules"
  run 2 "${db[@]}" schedules set bad --job mail --every -5m
  run 2 "${db[@]}" schedules set bad --job mail --every 5m --catch-up-max 1001
  run 2 "${db[@]}" schedules set bad --job mail --every 5m --overlap sometimes
  run 2 "${db[@]}" schedules set bad --job mail --every 5m --payload '{"a":'
  run 2 "${db[@]}" schedules set "$(printf 'bad\001')" --job mail --every 5m
  run 2 "${db[@]}" schedules set bad --job "" --every 5m
  run 2 "${db[@]}" schedules remove ghost
  run 2 "${db[@]}" schedules trigger ghost
  run 0 "${db[@]}" --json schedules list
  expect "nothing added" "$(jq length <<<"$out")" 1
  run 0 "${db[@]}" schedules remove digest
  run 0 "${db[@]}" --json jobs show "$job"
  expect "removal cancels the waiting run" "$(jq -r .error <<<"$out")" "the schedule was removed"
  run 0 "${db[@]}" --json schedules list
  expect "removed" "$(jq length <<<"$out")" 0
  ;;
workflows)
  run 0 "${db[@]}" migrate up
  cat >"$work/wf.json" <<'JSON'
{"name": "nightly", "tasks": [
  {"name": "extract", "request": {"name": "etl", "payload": {"step": 1}, "priority": 0}, "after": []},
  {"name": "load", "request": {"name": "etl", "payload": {"step": 2}, "priority": 0},
   "after": [{"parent": "extract", "on_failure": "hold"}]}]}
JSON
  run 0 "${db[@]}" --json workflows enqueue "$work/wf.json"
  wf=$(jq .workflow_id <<<"$out")
  load=$(jq .tasks.load <<<"$out")
  run 0 "${db[@]}" --json workflows show "$wf"
  expect "state" "$(jq -r .state <<<"$out")" running
  expect "load blocked" "$(jq -r '.tasks[] | select(.name=="load") | .state' <<<"$out")" blocked
  expect "policy" "$(jq -r '.tasks[] | select(.name=="load") | .after[0].on_failure' <<<"$out")" hold
  run 0 "${db[@]}" --json jobs show "$load"
  expect "job blocked" "$(jq -r .state <<<"$out")" blocked
  run 0 "${db[@]}" --json jobs list --state blocked
  expect "listed blocked" "$(jq '.jobs[].id' <<<"$out")" "$load"
  run 0 "${db[@]}" workflows show "$wf"
  contains "table" "$out" "extract"
  contains "policy shown" "$out" "extract (hold)"
  run 0 "${db[@]}" --json workflows list --state running
  expect "listed" "$(jq '.[].id' <<<"$out")" "$wf"
  run 0 "${db[@]}" --json workflows list --state succeeded
  expect "none succeeded" "$(jq 'length' <<<"$out")" 0
  run 0 "${db[@]}" workflows cancel "$wf" --reason "not tonight"
  contains "cancelled" "$out" "cancelled"
  run 0 "${db[@]}" --json workflows show "$wf"
  expect "cancelled state" "$(jq -r .state <<<"$out")" cancelled
  run 0 "${db[@]}" --json jobs show "$load"
  expect "reason kept" "$(jq -r .error <<<"$out")" "not tonight"
  run 1 "${db[@]}" workflows cancel "$wf"
  contains "finished" "$err" "invalid_state"
  run 0 "${db[@]}" --json workflows retry "$wf"
  expect "running again" "$(jq -r .state <<<"$out")" running
  # Bad input: a clear error, nothing stored.
  run 0 "${db[@]}" --json workflows list
  before=$(jq 'length' <<<"$out")
  echo '{"name":"loop","tasks":[{"name":"a","request":{"name":"etl","payload":{},"priority":0},"after":[{"parent":"b"}]},{"name":"b","request":{"name":"etl","payload":{},"priority":0},"after":[{"parent":"a"}]}]}' >"$work/cycle.json"
  run 2 "${db[@]}" workflows enqueue "$work/cycle.json"
  contains "cycle" "$err" "cycle"
  echo '{"name":"x","tasks":[{"name":"a","request":{"name":"etl","payload":{},"priority":0},"after":[{"parent":"ghost"}]}]}' >"$work/ghost.json"
  run 2 "${db[@]}" workflows enqueue - <"$work/ghost.json"
  contains "unknown parent" "$err" "unknown task 'ghost'"
  echo '{"name":' >"$work/bad.json"
  run 2 "${db[@]}" workflows enqueue "$work/bad.json"
  contains "malformed" "$err" "invalid_payload"
  run 2 "${db[@]}" workflows enqueue "$work/missing.json"
  run 2 "${db[@]}" workflows show abc
  run 1 "${db[@]}" workflows show 987654
  contains "unknown" "$err" "job_not_found"
  run 2 "${db[@]}" workflows list --state exploded
  run 2 "${db[@]}" workflows list --limit 0
  run 0 "${db[@]}" --json workflows list
  expect "nothing stored" "$(jq 'length' <<<"$out")" "$before"
  # A running job's progress; a stuck workflow's held task.
  seed_args+=(--workflow 1)
  seeded
  running=$(jq .progress <<<"$ids")
  run 0 "${db[@]}" jobs show "$running"
  contains "progress shown" "$out" "progress: 42.0% (attempt 1, "
  contains "progress text" "$out" "): page 42 of 100 <b>bold</b>"
  run 0 "${db[@]}" --json jobs show "$running"
  expect "progress in JSON" "$(jq -c '[.progress.fraction, .progress.text, .progress.attempt]' <<<"$out")" '[0.42,"page 42 of 100 <b>bold</b>",1]'
  seeded_wf=$(jq .workflow.id <<<"$ids")
  run 0 "${db[@]}" --json workflows show "$seeded_wf"
  expect "stuck" "$(jq .stuck <<<"$out")" true
  expect "held" "$(jq -r '.tasks[] | select(.name=="d") | .state' <<<"$out")" held
  run 0 "${db[@]}" jobs show "$(jq .workflow.tasks.a <<<"$ids")"
  contains "output shown" "$out" $'output:\n{\n  "rows": 7\n}'
  ;;
enqueue)
  run 0 "${db[@]}" migrate up
  run 0 "${db[@]}" --json jobs enqueue mail --payload '{"to":"ada"}' --in 5m --priority 3
  expect "priority" "$(jq .priority <<<"$out")" 3
  id=$(jq .id <<<"$out")
  contains "a name no node runs is stored, with a note" "$err" \
    "no node has announced a queue that runs 'mail'"
  run 0 "${db[@]}" jobs show "$id" --json
  expect "scheduled" "$(jq -r .state <<<"$out")" scheduled
  run 0 "${db[@]}" jobs enqueue mail --unique-key k1
  contains "first" "$out" "enqueued job"
  run 0 "${db[@]}" jobs enqueue mail --unique-key k1
  contains "duplicate" "$out" "exists: job"
  run 0 "${db[@]}" jobs enqueue mail --at 2030-01-01T00:00:00Z
  run 2 "${db[@]}" jobs enqueue mail --payload '{bad'
  contains "malformed payload" "$err" "invalid_payload"
  run 2 "${db[@]}" jobs enqueue mail --in 5parsecs
  contains "invalid duration" "$err" "invalid duration"
  run 2 "${db[@]}" jobs enqueue mail --at yesterday
  run 2 "${db[@]}" jobs enqueue mail --priority 12
  run 2 "${db[@]}" jobs enqueue ""
  contains "empty name" "$err" "invalid_job_name"
  # Tags, metadata and trace context: stored, shown, filtered on; bad ones
  # refused with nothing written.
  tp=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
  run 0 "${db[@]}" --json jobs enqueue mail --tag eu --tag "a b" \
    --meta '{"by":"ops\u001b[31m"}' --traceparent "$tp" --tracestate a=1
  tagged=$(jq .id <<<"$out")
  run 0 "${db[@]}" --json jobs show "$tagged"
  expect "tags" "$(jq -c .tags <<<"$out")" '["eu","a b"]'
  expect "meta" "$(jq -c .meta <<<"$out")" '{"by":"ops\u001b[31m"}'
  expect "traceparent" "$(jq -r .traceparent <<<"$out")" "$tp"
  expect "tracestate" "$(jq -r .tracestate <<<"$out")" "a=1"
  run 0 "${db[@]}" jobs show "$tagged"
  contains "traceparent shown" "$out" "traceparent: $tp"
  contains "tags shown" "$out" "tags: eu, a b"
  case "$out" in *$'\033'*) fail "an escape sequence reached the terminal" ;; esac
  run 0 "${db[@]}" --json jobs list --state scheduled --tag eu
  expect "no scheduled job carries it" "$(jq '.jobs | length' <<<"$out")" 0
  run 0 "${db[@]}" --json jobs list --state waiting --tag eu
  expect "the tagged job" "$(jq '.jobs[].id' <<<"$out")" "$tagged"
  run 2 "${db[@]}" jobs list --tag "a,b"
  run 0 "${db[@]}" --json jobs list --state waiting
  before=$(jq '.jobs | length' <<<"$out")
  run 2 "${db[@]}" jobs enqueue mail --traceparent 00-zz
  contains "bad traceparent" "$err" "traceparent"
  run 2 "${db[@]}" jobs enqueue mail --tracestate a=1
  run 2 "${db[@]}" jobs enqueue mail --meta '[1]'
  run 2 "${db[@]}" jobs enqueue mail --meta '{bad'
  run 2 "${db[@]}" jobs enqueue mail --tag "a,b"
  run 2 "${db[@]}" jobs enqueue mail --tag "$(printf 'x\033[31m')"
  run 0 "${db[@]}" --json jobs list --state waiting
  expect "nothing written" "$(jq '.jobs | length' <<<"$out")" "$before"
  ;;
retry)
  seeded
  id=$(jq '.failed[0]' <<<"$ids")
  run 0 "${db[@]}" jobs retry "$id"
  run 0 "${db[@]}" --json jobs show "$id"
  expect "waiting again" "$(jq -r .state <<<"$out")" waiting
  expect "attempts reset" "$(jq .attempts <<<"$out")" 0
  run 1 "${db[@]}" jobs retry "$id"
  contains "retry of a waiting job" "$err" "invalid_state"
  run 0 "${db[@]}" --json jobs retry --failed --name mail
  expect "retried" "$(jq .retried <<<"$out")" 1
  run 2 "${db[@]}" jobs retry --failed
  run 2 "${db[@]}" jobs retry
  run 1 "${db[@]}" jobs retry 987654
  ;;
cancel)
  seeded
  id=$(jq '.waiting[0]' <<<"$ids")
  run 0 "${db[@]}" jobs cancel "$id" --reason "not today"
  run 0 "${db[@]}" --json jobs show "$id"
  expect "cancelled" "$(jq -r .state <<<"$out")" cancelled
  expect "reason" "$(jq -r .error <<<"$out")" "not today"
  run 1 "${db[@]}" jobs cancel "$id"
  contains "cancel again" "$err" "invalid_state"
  running=$(jq '.running[0]' <<<"$ids")
  run 0 "${db[@]}" jobs cancel "$running"
  contains "running" "$out" "asked to stop"
  ;;
delete)
  seeded
  id=$(jq '.cancelled[0]' <<<"$ids")
  run 0 "${db[@]}" jobs delete "$id"
  run 1 "${db[@]}" jobs show "$id"
  run 1 "${db[@]}" jobs delete "$(jq '.running[0]' <<<"$ids")"
  contains "running" "$err" "invalid_state"
  run 1 "${db[@]}" jobs delete 987654
  ;;
queues)
  seeded
  run 0 "${db[@]}" --json queues list
  expect "queues" "$(jq -c '[.[].queue]' <<<"$out")" '["mail","reports"]'
  run 0 "${db[@]}" queues pause mail
  run 0 "${db[@]}" --json queues list
  expect "paused" "$(jq '.[] | select(.queue=="mail") | .paused' <<<"$out")" true
  run 0 "${db[@]}" queues resume mail
  run 0 "${db[@]}" --json queues list
  expect "resumed" "$(jq '.[] | select(.queue=="mail") | .paused' <<<"$out")" false
  run 1 "${db[@]}" queues pause nope
  contains "unknown queue" "$err" "unknown_queue"
  ;;
limits)
  seeded
  run 0 "${db[@]}" limits list
  contains "listed" "$out" "per_key"
  run 0 "${db[@]}" limits set mail 5 --key tenant:big
  contains "set" "$out" "set key limit of key tenant:big of mail to 5"
  run 0 "${db[@]}" limits set mail 3 --total
  run 0 "${db[@]}" --json limits list
  expect "key limit" "$(jq '.[] | select(.key=="tenant:big") | .max_running' <<<"$out")" 5
  expect "total" "$(jq '.[] | select(.kind=="total") | .max_running' <<<"$out")" 3
  run 0 "${db[@]}" limits remove mail --total
  run 0 "${db[@]}" --json limits list
  expect "removed" "$(jq 'length' <<<"$out")" 2
  # Refused, and nothing changes.
  run 2 "${db[@]}" limits set mail 0
  run 2 "${db[@]}" limits set mail -1
  run 2 "${db[@]}" limits set mail 99999999999999999999
  run 2 "${db[@]}" limits set mail 2 --key "$(printf 'bad\377')"
  run 2 "${db[@]}" limits set mail 2 --key "$(head -c 256 /dev/zero | tr '\0' k)"
  run 2 "${db[@]}" limits set nope 2
  contains "unknown queue" "$err" "no node has announced a queue 'nope'"
  run 2 "${db[@]}" limits set reports 2
  contains "not limited" "$err" "has no concurrency limits"
  run 0 "${db[@]}" --json limits list
  expect "unchanged" "$(jq 'length' <<<"$out")" 2
  run 0 "${db[@]}" --json jobs enqueue mail --concurrency-key tenant:7 \
    --second-concurrency-key smtp
  keyed=$(jq .id <<<"$out")
  run 0 "${db[@]}" --json jobs show "$keyed"
  expect "key shown" "$(jq -r .concurrency_key <<<"$out")" "tenant:7"
  expect "second key shown" "$(jq -r .second_concurrency_key <<<"$out")" "smtp"
  run 0 "${db[@]}" jobs show "$keyed"
  contains "keys in the table" "$out" "tenant:7, smtp"
  run 0 "${db[@]}" --json limits keys mail
  expect "key waiting" "$(jq '.[] | select(.key=="tenant:7") | .waiting' <<<"$out")" 1
  expect "key running" "$(jq '.[] | select(.key=="tenant:7") | .running' <<<"$out")" 0
  expect "key's limit" "$(jq '.[] | select(.key=="smtp") | .max_running' <<<"$out")" 2
  expect "not full" "$(jq '.[] | select(.key=="smtp") | .full' <<<"$out")" false
  run 0 "${db[@]}" --json stats
  expect "stats: the queue's limit" "$(jq -c '.queues[] | select(.queue=="mail") | .limits[0]' <<<"$out")" '{"key":"","kind":"per_key","max_running":2}'
  expect "stats: its keys" "$(jq '.queues[] | select(.queue=="mail") | .keys | length' <<<"$out")" 2
  run 0 "${db[@]}" limits keys mail --top 1
  expect "one key" "$(wc -l <<<"$out")" 2
  run 2 "${db[@]}" limits keys mail --top 0
  run 2 "${db[@]}" limits keys mail --top 1x
  run 2 "${db[@]}" limits keys nope
  run 0 "${db[@]}" --json limits blocked mail
  expect "nothing blocked" "$out" "[]"
  run 0 "${db[@]}" --json limits unblock mail tenant:7
  expect "nothing held it" "$(jq .released <<<"$out")" 0
  run 2 "${db[@]}" limits unblock nope k
  run 2 "${db[@]}" limits unblock reports k
  run 2 "${db[@]}" limits unblock mail "$(printf 'a\001')"
  run 2 "${db[@]}" limits blocked nope
  run 2 "${db[@]}" jobs enqueue mail --concurrency-key "$(printf 'a\001')"
  run 2 "${db[@]}" jobs enqueue mail --second-concurrency-key b
  # Rate limits: shown, changed, bad input refused with nothing changed.
  run 0 "${db[@]}" limits rate api
  contains "rate shown" "$out" "rate limit api: 10 per 1000 ms, burst 5"
  run 0 "${db[@]}" --json limits rate-set api 20 2s --burst 8
  expect "rate set" "$(jq -c . <<<"$out")" '{"allowed":20,"burst":8,"name":"api","period_ms":2000}'
  run 0 "${db[@]}" --json limits rate api
  expect "rate stored" "$(jq .allowed <<<"$out")" 20
  expect "rate burst" "$(jq .burst <<<"$out")" 8
  run 2 "${db[@]}" limits rate-set api 0 1s
  run 2 "${db[@]}" limits rate-set api 5 0s
  run 2 "${db[@]}" limits rate-set api 5 1s --burst -1
  run 2 "${db[@]}" limits rate-set api 99999999999999999999 1s
  run 2 "${db[@]}" limits rate-set "bad name" 5 1s
  run 2 "${db[@]}" limits rate-set nope 5 1s
  contains "unknown rate limit" "$err" "no rate limit named 'nope'"
  run 2 "${db[@]}" limits rate nope
  run 2 "${db[@]}" limits rate "$(printf 'a\001')"
  run 0 "${db[@]}" --json limits rate api
  expect "rate unchanged" "$(jq .allowed <<<"$out")" 20
  ;;
prune)
  seeded
  run 0 "${db[@]}" prune --dry-run --succeeded-age 0s
  contains "dry run" "$out" "would delete 2"
  run 0 "${db[@]}" --json stats
  expect "still there" "$(jq '.queues[] | select(.queue=="mail") | .counts.succeeded' <<<"$out")" 2
  run 0 "${db[@]}" prune --succeeded-age 0s
  contains "pruned" "$out" "deleted 2"
  run 0 "${db[@]}" --json stats
  expect "gone" "$(jq '.queues[] | select(.queue=="mail") | .counts.succeeded' <<<"$out")" 0
  run 2 "${db[@]}" prune --failed-age forever
  ;;
serve)
  seeded
  run 1 "${db[@]}" serve --listen 0.0.0.0:0
  contains "public without token" "$err" "token"
  "$bin" "${db[@]}" serve --listen 127.0.0.1:0 >"$work/serve.out" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    grep -q "serving" "$work/serve.out" 2>/dev/null && break
    sleep 0.1
  done
  port=$(sed -n 's|.*127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/serve.out")
  [ -n "$port" ] || fail "serve printed no port: $(cat "$work/serve.out")"
  body=$(curl -sf "http://127.0.0.1:$port/api/stats") || fail "GET /api/stats"
  expect "served stats" "$(jq '.queues[] | select(.queue=="mail") | .counts.failed' <<<"$body")" 2
  metrics=$(curl -sf "http://127.0.0.1:$port/metrics") || fail "GET /metrics"
  contains "metrics" "$metrics" 'bg_jobs_jobs{job="mail",queue="mail",state="failed"} 2'
  kill -TERM "$server"
  wait "$server"
  expect "serve exit status" "$?" 0
  ;;
hostile)
  ids=$("$seed" "${seed_args[@]}" --hostile 1) || { fail "seeding"; exit 1; }
  count() { "$bin" "${db[@]}" --json stats | jq '[.names[].counts | .waiting + .scheduled + .running + .succeeded + .failed + .cancelled] | add'; }
  total=$(count)
  first=$(jq '.waiting[0]' <<<"$ids")
  # Ids are decimal numbers only: no octal, hex, empty or clamped ones.
  for bad in 010 0x9 99999999999999999999 '' -1 ' 1' 1e3; do
    run 2 "${db[@]}" jobs delete "$bad"
    run 2 "${db[@]}" jobs cancel "$bad"
    run 2 "${db[@]}" jobs show "$bad"
  done
  contains "id error" "$err" "positive decimal number"
  # All or nothing: a missing id among several changes nothing.
  run 1 "${db[@]}" jobs delete "$first" 987654
  contains "names the missing id" "$err" "job_not_found"
  run 0 "${db[@]}" jobs show "$first"
  run 2 "${db[@]}" jobs delete "$first" "$first"
  # Durations and times overflow nowhere.
  for age in 307445734561826m 9223372036854775807 36501d 1e9s -5m; do
    run 2 "${db[@]}" prune --succeeded-age "$age" --failed-age "$age"
  done
  expect "prune changed nothing" "$(count)" "$total"
  for delay in 213503982335d 3000000d 36501d; do
    run 2 "${db[@]}" jobs enqueue mail --in "$delay"
  done
  run 2 "${db[@]}" jobs enqueue mail --at 1969-12-31T23:59:59Z
  run 2 "${db[@]}" jobs enqueue "$(printf 'n%.0s' $(seq 1 256))"
  run 2 "${db[@]}" jobs enqueue $'na\xc2\x85me'
  run 2 "${db[@]}" jobs enqueue $'evil\xe2\x80\xaename'
  run 2 "${db[@]}" jobs enqueue mail --priority 0x1
  run 2 "${db[@]}" jobs list --after 99999999999.1.1
  run 2 "${db[@]}" jobs list --limit 010
  run 2 cron next "* * * * *" --count 0x10
  expect "nothing stored" "$(count)" "$total"
  # A payload larger than one argument may be, from standard input.
  big=$(head -c 200000 /dev/zero | tr '\0' a)
  out=$(printf '{"blob":"%s"}' "$big" | "$bin" "${db[@]}" --json jobs enqueue mail --payload-file - 2>"$work/err")
  expect "payload from stdin" "$(jq -r '.payload.blob | length' <<<"$out")" 200000
  # Reasons are checked at entry; stored text is escaped on the terminal.
  run 2 "${db[@]}" jobs cancel "$first" --reason $'bad\x1b]0;x\x07'
  run 2 "${db[@]}" jobs cancel "$first" --reason "$(printf 'r%.0s' $(seq 1 1001))"
  hostile=$(jq .hostile <<<"$ids")
  run 0 "${db[@]}" jobs show "$hostile"
  case "$out" in *$'\x1b'*|*$'\x07'*|*$'\xe2\x80\xae'*) fail "raw control characters reached the terminal" ;; esac
  contains "escape shown" "$out" '\x1b]0;pwned\x07'
  contains "override shown" "$out" '\u{202e}'
  run 0 "${db[@]}" jobs list --state failed
  case "$out" in *$'\x1b'*) fail "list printed ESC" ;; esac
  run 0 "${db[@]}" --json jobs list --state failed
  jq -e . >/dev/null <<<"$out" || fail "the JSON listing is valid JSON"
  run 0 "${db[@]}" jobs show "$hostile" --json
  jq -e .error >/dev/null <<<"$out" || fail "the JSON job is valid JSON"
  # --listen is HOST:PORT with a decimal port.
  run 2 "${db[@]}" serve --listen 127.0.0.1:0x
  run 2 "${db[@]}" serve --listen 127.0.0.1:65536
  run 1 "${db[@]}" serve --listen 127.0.0.2:0
  contains "other loopback needs a token" "$err" "token"
  run 1 "${db[@]}" serve --listen 127.0.0.1:0 --token 'a;b'
  contains "token characters" "$err" "token"
  ;;
errors)
  # Read-only commands on a mistyped path create no file.
  run 1 --db "$work/typo.db" stats
  contains "no file" "$err" "no database file"
  [ -e "$work/typo.db" ] && fail "stats created $work/typo.db"
  run 1 --db "sqlite:$work/typo.db" jobs list
  [ -e "$work/typo.db" ] && fail "jobs list created $work/typo.db"
  # The password never shows, in any of libpq's error forms.
  for url in 'postgresql://app:pass%word@127.0.0.1:1/app' \
             'postgresql://app@127.0.0.1:1/app?password=pass%zzword' \
             'postgresql://app:pass%00word@127.0.0.1:1/app' \
             'host=127.0.0.1 port=1 user=app password=passXword'; do
    run 1 --db "$url" stats
    case "$err" in *pass*word*|*passXword*) fail "printed the password: $err" ;; esac
  done
  run 2 migrate status
  contains "no store" "$err" "--db"
  run 1 --db /nonexistent-dir/x/jobs.db migrate up
  contains "bad path" "$err" "database_unavailable"
  [ "$(wc -l <<<"$err")" = 1 ] || fail "one-line message: $err"
  run 1 --db "host=127.0.0.1 port=1 dbname=x user=u password=hunter2" stats
  contains "store down" "$err" "database_unavailable"
  case "$err" in *hunter2*) fail "printed the password: $err" ;; esac
  run 1 --db "postgresql://u:hunter2@127.0.0.1:1/x" stats
  case "$err" in *hunter2*) fail "printed the password: $err" ;; esac
  run 2 --db x.db nosuchcommand
  run 2 cron next "0 0 * * *" --tz ""
  contains "empty zone" "$err" "--tz needs a zone"
  run 0 --help
  contains "help" "$out" "Subcommands:"
  run 0 jobs enqueue --help
  contains "enqueue help" "$out" "--unique-key"
  ;;
*)
  echo "unknown case $case_name" >&2
  exit 2
  ;;
esac
[ "$failures" = 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
echo "ok: $case_name on $kind"
