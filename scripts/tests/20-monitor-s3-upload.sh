#!/usr/bin/env bash
# The spool and upload path of `spotfit monitor` against the S3 emulator (moto server, started
# and stopped here):
#  1. an outage mid-run: the emulator is frozen (SIGSTOP) for ~10 s while parts are due, then
#     resumed; afterwards every sample is in S3 exactly once (seq 0..N-1, no gap, no duplicate,
#     across all parts), plus the summary and the exit marker;
#  2. the emulator killed outright mid-run (its data lost with it): the run still ends, the spool
#     keeps the parts, and after a restart `spotfit monitor --resume-spool` ships everything, each
#     sample exactly once;
#  3. SIGTERM to the agent: it exits within 2 s, the run is marked interrupted, nothing is lost,
#     also when the job ignores SIGTERM (killed after a grace).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
source scripts/lib/monitor-test.sh
ensure_py "moto[server]==5.2.5" # the version scripts/local-stack pins
WORK="$(mktemp -d)"
MOTO_PID=""
cleanup() {
  [ -n "$MOTO_PID" ] && { kill -CONT "$MOTO_PID" 2>/dev/null; kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null; } || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${SPOTFIT_BIN:-}" ]; then BIN=("$SPOTFIT_BIN" monitor); else
  cargo build -q --workspace --all-targets --features "$SPOTFIT_FEATURES" # the feature set `cargo test --workspace` built
  BIN=("$PWD/target/debug/spotfit" monitor)
fi
PORT="$(free_port)"
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
start_moto() { start_moto_s3; } # scripts/lib/monitor-test.sh
start_moto

# verify RUN_ID EXPECT_STATUS: every sample of the run under s3://bkt/pre/ exactly once (the lib).
verify() { verify_s3_run "$1" "$2" pre; }

# 1. Outage mid-run: parts every 2 s, samples every 0.2 s, a 24 s job; freeze moto from 5 s to 15 s.
"${BIN[@]}" --interval 0.2 --upload "s3://bkt/pre" --upload-every 2 --run-id outage1 --job s3test \
  --spool "$WORK/spool1" --imds off --no-gpu -- python3 -c 'import time; x=bytearray(50<<20); time.sleep(24)' \
  2>"$WORK/run1.err" &
mon=$!
sleep 5; kill -STOP "$MOTO_PID"; echo "emulator stopped at 5 s"
sleep 10; kill -CONT "$MOTO_PID"; echo "emulator back at 15 s"
wait "$mon"; rc=$?
check "run 1 exits 0" "[ $rc = 0 ]"
check "run 1: uploads were retried during the outage" "grep -q 'will retry' $WORK/run1.err"
check "run 1: every sample in S3 exactly once, summary and marker present" "verify outage1 succeeded"

# 2. Emulator killed and restarted empty: what the agent could not ship stays in its spool, and a
#    second agent pass over the same spool ships it; the earlier parts were lost with the emulator,
#    so this checks the spool alone holds everything (parts are re-put under the same names).
"${BIN[@]}" --interval 0.2 --upload "s3://bkt/pre" --upload-every 1 --run-id outage2 --job s3test \
  --spool "$WORK/spool2" --imds off --no-gpu --finish-timeout 3 -- sleep 6 2>"$WORK/run2.err" &
mon=$!
sleep 2; kill "$MOTO_PID"; wait "$MOTO_PID" 2>/dev/null || true; MOTO_PID=""
wait "$mon"; rc=$?
check "run 2 ends even with S3 gone" "[ $rc = 0 ]"
check "run 2: parts left pending in the spool" "ls $WORK/spool2 | grep -q 'part-.*ndjson.gz$'"
start_moto
"${BIN[@]}" --resume-spool "$WORK/spool2" --upload "s3://bkt/pre" --run-id outage2 --job s3test 2>"$WORK/resume.err" || true
# Everything in the spool, done or not, was re-shipped by the resume (the emulator lost the rest).
check "run 2: after restart and resume, every sample exactly once" "verify outage2 succeeded"

# 3. SIGTERM: flush within 2 s, marked interrupted.
"${BIN[@]}" --interval 0.2 --upload "s3://bkt/pre" --upload-every 30 --run-id term1 --job s3test \
  --spool "$WORK/spool3" --imds off --no-gpu -- sleep 60 2>"$WORK/run3.err" &
mon=$!
sleep 3
t0=$(date +%s%N); kill -TERM "$mon"; wait "$mon" || true; t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
echo "SIGTERM to exit: ${ms} ms"
check "SIGTERM: agent exits within 2 s (${ms} ms)" "[ $ms -le 2000 ]"
check "SIGTERM: every sample shipped, summary says interrupted" "verify term1 interrupted"

# 3b. SIGTERM while the job ignores SIGTERM: the agent kills it after its grace and still
#     flushes within 2 s.
"${BIN[@]}" --interval 0.2 --upload "s3://bkt/pre" --upload-every 30 --run-id term2 --job s3test \
  --spool "$WORK/spool4" --imds off --no-gpu -- \
  python3 -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)' 2>"$WORK/run4.err" &
mon=$!
sleep 3
t0=$(date +%s%N); kill -TERM "$mon"; wait "$mon" && rc=0 || rc=$?; t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
echo "SIGTERM to exit with a job ignoring SIGTERM: ${ms} ms (exit status $rc)"
check "SIGTERM, stubborn job: agent exits within 2 s (${ms} ms)" "[ $ms -le 2000 ]"
check "SIGTERM, stubborn job: exit status says SIGKILL (137)" "[ $rc = 137 ]"
check "SIGTERM, stubborn job: every sample shipped, interrupted" "verify term2 interrupted"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
