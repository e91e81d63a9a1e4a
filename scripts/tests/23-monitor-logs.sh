#!/usr/bin/env bash
# The job's stdout and stderr through the agent (docs/notes/monitor.md, "Job logs"): a job
# writes 10 MB to stdout and 10 MB to stderr (numbered lines and raw non-UTF-8 bytes, from a
# deterministic generator) while the store goes away mid-run; afterwards
#  - every byte of each stream is in the store exactly once (reassembled from the parts and
#    compared by sha256 with the generator's own), no part key twice;
#  - `spotfit logs RUN_ID --from URL` prints them (stdout and stderr, byte for byte);
#  - the summary's tails end with the job's last lines;
#  - the output was also passed through unchanged;
#  - the agent's CPU for all this (its own user+sys from /proc/PID/stat, read until it exits).
# Part A (always): the SDK-free `spotfit-monitor` example, `--upload file:///DIR`, the outage made
#   by putting a plain file where the store directory was (root ignores chmod 000) mid-run.
# Part B (S3, the slim agent ${SPOTFIT_AGENT_BIN:-target/debug/spotfit-agent}; a missing agent fails):
#   moto on loopback, frozen with SIGSTOP mid-run, as in 20-monitor-s3-upload.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
source scripts/lib/monitor-test.sh
WORK="$(mktemp -d)"
MOTO_PID=""
cleanup() {
  [ -n "$MOTO_PID" ] && { kill -CONT "$MOTO_PID" 2>/dev/null; kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null; } || true
  rm -rf "$WORK"
}
trap cleanup EXIT

MON="$(monitor_bin)"
# `spotfit logs` (with S3) and `spotfit-agent`: the feature set `cargo test --workspace` built.
[ -n "${SPOTFIT_BIN:-}" ] || cargo build -q --workspace --all-targets --features "$SPOTFIT_FEATURES"
SPOTFIT="${SPOTFIT_BIN:-$PWD/target/debug/spotfit}"

# The generator: 10 MB on each stream, in ~64 KiB bursts with short pauses so the run spans
# several parts; stdout lines are numbered text, stderr lines carry raw bytes 0x80-0xff and NUL.
# With `--expect`, it prints the sha256 of each stream instead of writing them.
cat >"$WORK/gen.py" <<'PY'
import hashlib, itertools, sys, time
target = 10 * 1000 * 1000  # bytes per stream (whole lines: a few bytes over)
def chunks(tag):
    n, i = 0, 0
    while n < target:
        if tag == "out":
            line = b"out %07d %s\n" % (i, b"x" * (i % 61))
        else:
            line = b"err %07d " % i + bytes([0x80 + i % 128, 0xff, 0x00]) + b"\n"
        n += len(line); i += 1
        yield line
if sys.argv[1:] == ["--last"]:
    print(list(chunks("out"))[-1].decode().rstrip("\n"))
    sys.exit(0)
if sys.argv[1:] == ["--expect"]:
    for tag in ("out", "err"):
        print(tag, hashlib.sha256(b"".join(chunks(tag))).hexdigest())
    sys.exit(0)
o, e = sys.stdout.buffer, sys.stderr.buffer
bo, be = [], []
for a, b in itertools.zip_longest(chunks("out"), chunks("err"), fillvalue=b""):
    bo.append(a); be.append(b)
    if len(bo) >= 1500:
        o.write(b"".join(bo)); o.flush(); e.write(b"".join(be)); e.flush(); bo, be = [], []
        time.sleep(0.03)
o.write(b"".join(bo)); o.flush(); e.write(b"".join(be)); e.flush()
sys.exit(4)  # a failing job: its last lines are what the summary's tails are for
PY
python3 "$WORK/gen.py" --expect >"$WORK/expect.txt"
want_out=$(awk '$1=="out"{print $2}' "$WORK/expect.txt"); want_err=$(awk '$1=="err"{print $2}' "$WORK/expect.txt")
last_out=$(python3 "$WORK/gen.py" --last)

# verify_store ROOT RUN: reassembles both streams from ROOT/logs/.../run=RUN/part-*.log.gz with
# the format of docs (gzip of MAGIC + records) — an independent reader, not the Rust one.
cat >"$WORK/verify.py" <<'PY'
import gzip, hashlib, json, os, struct, sys
def parts_of(listing, get):
    ps = sorted(listing, key=lambda k: int(k.rsplit("part-", 1)[1].split(".")[0]))
    out, err, n_rec, last_ts = hashlib.sha256(), hashlib.sha256(), 0, None
    ordered = True
    for k in ps:
        raw = gzip.decompress(get(k))
        assert raw[:8] == b"SFLOG01\n", k
        i = 8
        while i < len(raw):
            stream, ts, ln = struct.unpack_from("<BqI", raw, i)
            body = raw[i + 13 : i + 13 + ln]
            assert len(body) == ln, f"{k}: torn record at {i}"
            (out if stream == 1 else err).update(body)
            if last_ts is not None and ts < last_ts: ordered = False
            last_ts = ts; n_rec += 1; i += 13 + ln
    return len(ps), n_rec, out.hexdigest(), err.hexdigest(), ordered
PY

# check_run LABEL PARTS RECORDS OUT ERR ORDERED
report() {
  read -r nparts nrec got_out got_err ordered <<<"$2"
  echo "$1: $nparts parts, $nrec records, in arrival order: $ordered"
  check "$1: stdout arrived byte-exact, once (sha256 ${got_out:0:12}… = generator's)" "[ '$got_out' = '$want_out' ]"
  check "$1: stderr arrived byte-exact, once, non-UTF-8 included (sha256 ${got_err:0:12}…)" "[ '$got_err' = '$want_err' ]"
  check "$1: several parts, records in arrival order" "[ $nparts -ge 2 ] && [ '$ordered' = True ]"
}

# cpu_of PID: the agent's own user+sys CPU seconds so far (utime+stime of /proc/PID/stat; the
# job's CPU is in cutime/cstime and not counted).
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / hz }' "/proc/$1/stat"; }

# run_agent LABEL UPLOAD SPOOL RUN_ID FREEZE_CMD THAW_CMD: starts the agent ("${CMD[@]}") on the generator,
# takes the store away at 1 s and brings it back OUTAGE_S (default 3) s later; leaves the agent's stdout/stderr in
# $WORK/LABEL.{out,err} and its CPU in $WORK/LABEL.cpu.
run_agent() {
  local label=$1 upload=$2 spool=$3 run=$4 freeze=$5 thaw=$6 after=${7:-true}
  "${CMD[@]}" --interval 0.5 --upload "$upload" --upload-every 1 --run-id "$run" --job logtest \
    --spool "$spool" --imds off --no-gpu --summary "$WORK/$label.summary.json" -- python3 "$WORK/gen.py" \
    >"$WORK/$label.out" 2>"$WORK/$label.err" &
  local mon=$! cpu=0
  sleep 1; eval "$freeze"; echo "$label: store taken away at 1 s"
  sleep "${OUTAGE_S:-3}"; eval "$thaw"; echo "$label: store back after ${OUTAGE_S:-3} s"
  eval "$after"
  # Poll the agent's CPU until it exits (the last reading is within 50 ms of its end).
  while kill -0 "$mon" 2>/dev/null; do c=$(cpu_of "$mon" 2>/dev/null || true); [ -n "$c" ] && cpu=$c; sleep 0.05; done
  wait "$mon" && rc=0 || rc=$?
  echo "$cpu" >"$WORK/$label.cpu"
  echo "$label: agent exit $rc, agent CPU (user+sys) ${cpu} s for 20 MB passed through and spooled"
  check "$label: the agent exits with the job's status (4)" "[ $rc = 4 ]"
}

check_tails() {
  local label=$1
  check "$label: the summary's stdout tail ends with the job's last stdout line" \
    "python3 -c 'import json,sys; s=json.load(open(\"$WORK/$label.summary.json\")); t=s[\"stdout_tail\"]; sys.exit(0 if t.endswith(\"\\n\") and t.rstrip().endswith(\"$last_out\") and 60000 < len(t.encode()) <= 65536 else 1)'"
  check "$label: the summary's stderr tail holds the last stderr lines (non-UTF-8 as U+FFFD)" \
    "python3 -c 'import json,sys; s=json.load(open(\"$WORK/$label.summary.json\")); t=s[\"stderr_tail\"]; sys.exit(0 if \"\\ufffd\" in t and t.rstrip(\"\\n\").split(\"\\n\")[-1].startswith(\"err \") and len(t.encode()) <= 65536 else 1)'"
  check "$label: the job's output was passed through unchanged" \
    "[ \"\$(sha256sum <'$WORK/$label.out' | cut -d' ' -f1)\" = '$want_out' ] && grep -a -q '^err 0000000 ' '$WORK/$label.err'"
}

# ---- Part A: file:// store, made unwritable mid-run -------------------------------------------
# The store is a symlink to its directory; the outage swaps it, atomically (rename(2) over the
# link), for a link to a non-directory, so no write lands anywhere meanwhile. (Moving the
# directory away and creating a file in its place left a window in which the agent's next put
# made the directory again.)
STORE="$WORK/store"; mkdir -p "$WORK/store.real"; ln -s "$WORK/store.real" "$STORE"
CMD=("$MON") # the example binary takes `spotfit monitor`'s arguments directly
run_agent fileA "file://$STORE" "$WORK/spoolA" logsA \
  "ln -sfn /dev/null '$STORE.swap' && mv -Tf '$STORE.swap' '$STORE'" \
  "ls '$WORK/spoolA' >'$WORK/fileA.pending'; ln -sfn '$WORK/store.real' '$STORE.swap' && mv -Tf '$STORE.swap' '$STORE'" \
  "sleep 0.5; '$SPOTFIT' logs logsA --from 'file://$STORE' --follow --poll 0.3 >'$WORK/followA.o' 2>'$WORK/followA.e' & FOLLOW=\$!"
check "fileA: log parts waited in the spool during the outage" "grep -q 'log-.*\.log\.gz$' '$WORK/fileA.pending'"
res=$(python3 - "$STORE" logsA <<PY
import os, sys
exec(open("$WORK/verify.py").read())
root, run = sys.argv[1], sys.argv[2]
keys = [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs]
logs = [k for k in keys if k.startswith("logs/") and f"/run={run}/" in k]
r = parts_of(logs, lambda k: open(os.path.join(root, k), "rb").read())
print(*r)
PY
)
report fileA "$res"
check_tails fileA
check "fileA: the spool acknowledged every log part" "! ls '$WORK/spoolA' | grep -q 'log-.*\.log\.gz$'"
"$SPOTFIT" logs logsA --from "file://$STORE" >"$WORK/logsA.o" 2>"$WORK/logsA.e"
check "fileA: spotfit logs prints stdout byte for byte" "[ \"\$(sha256sum <'$WORK/logsA.o' | cut -d' ' -f1)\" = '$want_out' ]"
check "fileA: spotfit logs prints stderr byte for byte" "[ \"\$(sha256sum <'$WORK/logsA.e' | cut -d' ' -f1)\" = '$want_err' ]"
check "fileA: spotfit logs --stream stderr alone, to stdout" \
  "[ \"\$('$SPOTFIT' logs logsA --from 'file://$STORE' --stream stderr | sha256sum | cut -d' ' -f1)\" = '$want_err' ]"
wait "$FOLLOW" && frc=0 || frc=$?
check "fileA: spotfit logs --follow, started mid-run, ends with the run and printed every byte" \
  "[ $frc = 0 ] && [ \"\$(sha256sum <'$WORK/followA.o' | cut -d' ' -f1)\" = '$want_out' ] && [ \"\$(sha256sum <'$WORK/followA.e' | cut -d' ' -f1)\" = '$want_err' ]"
check "fileA: spotfit logs --follow of an ended run returns" "timeout 20 '$SPOTFIT' logs logsA --from 'file://$STORE' --follow >/dev/null 2>&1"
check "fileA: an unknown run is a clear error" \
  "! '$SPOTFIT' logs nosuchrun --from 'file://$STORE' 2>'$WORK/nosuch.err' && grep -q 'no run nosuchrun' '$WORK/nosuch.err'"

# ---- Part B: S3 (moto), frozen mid-run (needs an agent with S3) --------------------------------
AGENT="${SPOTFIT_AGENT_BIN:-target/debug/spotfit-agent}"
if [ ! -x "$AGENT" ]; then
  check "s3B: the agent with S3 is at $AGENT" "false"
else
  ensure_py "moto[server]==5.2.5" boto3
  PORT="$(free_port)"
  export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
  moto_server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
  MOTO_PID=$!
  for _ in $(seq 50); do curl -s "$AWS_ENDPOINT_URL" >/dev/null 2>&1 && break; sleep 0.1; done
  "$TOOLS/venv/bin/python" -c 'import boto3; boto3.client("s3").create_bucket(Bucket="bkt")'
  CMD=("$AGENT" monitor)
  # Frozen longer than the agent's 4 s S3 request timeout, so a put in flight fails and is
  # retried (a shorter freeze may only delay it, and nothing would be retried).
  OUTAGE_S=7 run_agent s3B "s3://bkt/pre" "$WORK/spoolB" logsB "kill -STOP $MOTO_PID" "kill -CONT $MOTO_PID"
  check "s3B: uploads were retried while S3 was frozen" "grep -a -q 'will retry' '$WORK/s3B.err'"
  res=$("$TOOLS/venv/bin/python" - logsB <<PY
import boto3, sys
exec(open("$WORK/verify.py").read())
run = sys.argv[1]
s3 = boto3.client("s3")
keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket="bkt", Prefix="pre/logs/") for o in p.get("Contents", [])]
logs = [k for k in keys if f"/run={run}/" in k]
assert len(logs) == len(set(logs))
print(*parts_of(logs, lambda k: s3.get_object(Bucket="bkt", Key=k)["Body"].read()))
PY
)
  report s3B "$res"
  check_tails s3B
  if "$SPOTFIT" logs logsB --from s3://bkt/pre >"$WORK/logsB.o" 2>"$WORK/logsB.e"; then
    check "s3B: spotfit logs (S3) prints stdout byte for byte" "[ \"\$(sha256sum <'$WORK/logsB.o' | cut -d' ' -f1)\" = '$want_out' ]"
    check "s3B: spotfit logs (S3) prints stderr byte for byte" "[ \"\$(sha256sum <'$WORK/logsB.e' | cut -d' ' -f1)\" = '$want_err' ]"
  else
    check "s3B: spotfit logs --from s3:// works (needs the CLI built with --features aws: SPOTFIT_BIN)" "false"
  fi
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
