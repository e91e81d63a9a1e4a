#!/usr/bin/env bash
# The monitor tracking a cgroup v1 group on this machine: it creates a memory+cpu+cpuacct+blkio
# group with a 512 MiB limit, runs a workload inside it (~300 MiB, burning CPU), monitors it with
# `--cgroup`, then makes a process exceed the limit and checks the OOM kill is reported.
# If this kernel refuses creating v1 groups, it says so loudly and checks reading an existing one.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
source scripts/lib/monitor-test.sh
BIN="$(monitor_bin)"
WORK="$(mktemp -d)"
NAME="spotfit-test-$$"
CTRLS=(memory cpu cpuacct blkio)
cleanup() {
  for c in "${CTRLS[@]}"; do
    d="/sys/fs/cgroup/$c/$NAME"
    [ -d "$d" ] || continue
    for p in $(cat "$d/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  done
  sleep 0.3
  for c in "${CTRLS[@]}"; do rmdir "/sys/fs/cgroup/$c/$NAME" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ ! -f /sys/fs/cgroup/memory/cgroup.procs ]; then
  echo "FAIL - no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory on this machine" >&2; exit 1
fi
created=1
for c in "${CTRLS[@]}"; do mkdir -p "/sys/fs/cgroup/$c/$NAME" 2>/dev/null || created=0; done

if [ "$created" = 0 ]; then
  echo "NOTE: this kernel/container does not allow creating cgroup v1 groups; testing reading an existing one" >&2
  own="$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)"
  "$BIN" --cgroup "/sys/fs/cgroup/memory${own}" --interval 0.2 --output "$WORK/s.ndjson" --no-gpu --imds off >/dev/null 2>&1 &
  mpid=$!; sleep 1.2; kill -TERM "$mpid"; wait "$mpid" || true
  check "samples read from the existing group" "[ \$(wc -l < $WORK/s.ndjson) -ge 3 ]"
  check "cgroup memory present" "grep -q '\"cgroup_mem_bytes\"' $WORK/s.ndjson"
  echo "$pass passed, $fail failed"; [ "$fail" = 0 ]; exit
fi

M="/sys/fs/cgroup/memory/$NAME"
echo $((512 * 1024 * 1024)) > "$M/memory.limit_in_bytes"
# Start the workload stopped (it waits on a fifo), move it into the group, then let it go.
mkfifo "$WORK/go"
python3 - "$WORK/go" <<'PY' &
import sys, time
open(sys.argv[1]).read()
mem = bytearray(b"\x01") * (300 * 1024 * 1024)
end = time.monotonic() + 3
while time.monotonic() < end:
    pass
PY
wpid=$!
for c in "${CTRLS[@]}"; do echo "$wpid" > "/sys/fs/cgroup/$c/$NAME/cgroup.procs"; done
"$BIN" --cgroup "$M" --interval 0.25 --output "$WORK/s.ndjson" --summary "$WORK/sum.json" --no-gpu --imds off 2>"$WORK/err" &
mpid=$!
sleep 0.3
echo go > "$WORK/go"
wait "$wpid" || true
wait "$mpid"; rc=$?
check "monitor exits 0 when the group empties" "[ $rc = 0 ]"
python3 - "$WORK/s.ndjson" "$WORK/sum.json" > "$WORK/facts" <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1])]
busy = [x for x in s if x["processes"] > 0]
print("n", len(s))
print("metric", s[0]["mem_metric"])
print("limit", s[0].get("cgroup_mem_limit_bytes", 0))
print("peak_ws_mib", int(max(x.get("cgroup_working_set_bytes", 0) for x in s) / 2**20))
print("peak_usage_mib", int(max(x.get("cgroup_mem_bytes", 0) for x in s) / 2**20))
print("max_cores_x100", int(100 * max(x["cpu_cores"] for x in busy)))
print("has_throttle", int(all("cpu_throttled_s" in x for x in s)))
print("oom", s[-1].get("oom_kills", -1))
PY
cat "$WORK/facts"
f() { awk -v k="$1" '$1==k{print $2}' "$WORK/facts"; }
check "metric is cgroup" "[ $(f metric) = cgroup ]"
check "limit read (512 MiB)" "[ $(f limit) = $((512*1024*1024)) ]"
check "working set ~300 MiB (290..340)" "[ $(f peak_ws_mib) -ge 290 ] && [ $(f peak_ws_mib) -le 340 ]"
check "CPU seen from cpuacct (>= 0.2 core at peak on this shared machine)" "[ $(f max_cores_x100) -ge 20 ]"
check "throttling counter present" "[ $(f has_throttle) = 1 ]"
check "no OOM kill yet" "[ $(f oom) = 0 ]"

# Now exceed the limit: the kernel OOM-kills the process; the monitor reports the kill.
python3 - "$WORK/go" <<'PY' &
import sys, time
open(sys.argv[1]).read()
chunks = []
for _ in range(64):
    chunks.append(bytearray(b"\x01") * (16 * 1024 * 1024))
    time.sleep(0.02)
PY
wpid=$!
for c in "${CTRLS[@]}"; do echo "$wpid" > "/sys/fs/cgroup/$c/$NAME/cgroup.procs"; done
"$BIN" --cgroup "$M" --interval 0.1 --output "$WORK/o.ndjson" --summary "$WORK/osum.json" --no-gpu --imds off 2>"$WORK/oerr" &
mpid=$!
sleep 0.3
echo go > "$WORK/go"
wait "$wpid" && wstatus=0 || wstatus=$?
wait "$mpid" || true
check "the hog was SIGKILLed by the kernel (status 137)" "[ $wstatus = 137 ]"
check "OOM kill reported in samples" "python3 -c 'import json,sys; s=[json.loads(l) for l in open(\"$WORK/o.ndjson\")]; sys.exit(0 if s[-1].get(\"oom_kills\",0)>=1 else 1)'"
check "summary says oom_killed" "grep -q '\"oom_killed\": true' $WORK/osum.json"
check "memory limit hits reported" "python3 -c 'import json,sys; s=[json.loads(l) for l in open(\"$WORK/o.ndjson\")]; sys.exit(0 if s[-1].get(\"mem_limit_hits\",0)>=1 else 1)'"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
