#!/usr/bin/env bash
# The state machine definition, offline: asl-validator accepts it (and rejects a broken copy),
# only the documented ${…Arn} placeholders appear, every Retry/Catch name is one a Lambda
# returns (shared/core/src/error_names.rs) or built in, every Task after Size catches into
# termination, and the event-driven wait of docs/callback.md (Launch → Await on a task token →
# Ended?; timeouts → Check; no Wait state). Then the local Step Functions service
# (statemachine/tests/local-sfn.test.mjs, stub handlers, no Rust build): the callback pattern, a
# duplicate callback, heartbeat and deadline timeouts, StopExecution and its status-change event,
# 2,000 heartbeats writing no history, and the real ASL end to end.
# Prints "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
ensure_npm statemachine/tests
ensure_node22

passed=0 failed=0
out=$(node statemachine/tests/validate.mjs) && rc=0 || rc=$?
echo "$out"
read -r p f < <(echo "$out" | tail -1 | sed -E 's/^([0-9]+) passed, ([0-9]+) failed$/\1 \2/')
passed=$((passed + p)) failed=$((failed + f))
[ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || failed=$((failed + 1))  # validate.mjs died without its tally

log "local Step Functions service (node --test statemachine/tests/local-sfn.test.mjs)"
out=$(node --test --test-concurrency=1 --test-reporter=tap statemachine/tests/local-sfn.test.mjs 2>&1) && rc=0 || rc=$?
echo "$out" | grep -E '^(not )?ok |^# \\# |^# (tests|pass|fail) ' || true
[ "$rc" -eq 0 ] || echo "$out" | grep -v '^ok ' | tail -60
p=$(echo "$out" | sed -nE 's/^# pass ([0-9]+)$/\1/p' | tail -1)
f=$(echo "$out" | sed -nE 's/^# fail ([0-9]+)$/\1/p' | tail -1)
passed=$((passed + ${p:-0})) failed=$((failed + ${f:-0}))
[ "$rc" -eq 0 ] || [ "${f:-0}" -gt 0 ] || failed=$((failed + 1))  # the runner died without its tally

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
