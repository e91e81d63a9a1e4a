#!/usr/bin/env bash
# `spotfit monitor --cgroup` on a live cgroup v2 group. This machine is a hybrid host: v2 is
# mounted at /sys/fs/cgroup/unified with no controllers enabled there (memory, cpu… are bound to
# v1), so a v2 group offers only the core files: `cgroup.procs` and `cpu.stat` usage. The test
# checks the monitor uses them (CPU from cpu.stat, processes from cgroup.procs, memory from the
# tree of its processes) and leaves absent what the group does not report. The memory/io/throttle
# paths of v2 are covered by tests/cgroup_fixtures.rs on real v2 files.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
source scripts/lib/monitor-test.sh
BIN="$(monitor_bin)"
V2=/sys/fs/cgroup/unified
[ -f /sys/fs/cgroup/cgroup.controllers ] && V2=/sys/fs/cgroup
G="$V2/spotfit-test-$$"
WORK="$(mktemp -d)"
cleanup() {
  if [ -d "$G" ]; then
    for p in $(cat "$G/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    sleep 0.3; rmdir "$G" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ ! -f "$V2/cgroup.procs" ]; then echo "FAIL - no cgroup v2 mount on this machine" >&2; exit 1; fi
mkdir "$G" || { echo "FAIL - cannot create a v2 group at $G" >&2; exit 1; }

mkfifo "$WORK/go"
python3 - "$WORK/go" <<'PY' &
import os, sys, time
open(sys.argv[1]).read()
mem = bytearray(b"\x01") * (200 << 20)
if os.fork() == 0:
    end = time.monotonic() + 3
    while time.monotonic() < end: pass
    os._exit(0)
end = time.monotonic() + 3
while time.monotonic() < end: pass
os.wait()
PY
wpid=$!
echo "$wpid" > "$G/cgroup.procs"
"$BIN" --cgroup "$G" --interval 0.25 --output "$WORK/s.ndjson" --no-gpu --imds off 2>"$WORK/err" &
mpid=$!
sleep 0.3; echo go > "$WORK/go"
wait "$wpid" || true
wait "$mpid"; rc=$?
check "monitor ends when the group empties (rc $rc)" "[ $rc = 0 ]"
python3 - "$WORK/s.ndjson" > "$WORK/facts" <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1])]
print("n", len(s))
print("max_procs", max(x["processes"] for x in s))
print("max_cores_x100", int(100 * max(x["cpu_cores"] for x in s)))
print("peak_rss_mib", int(max(x["rss_bytes"] for x in s) / 2**20))
print("metric", s[len(s) // 2]["mem_metric"])
print("absent", int(all("cgroup_mem_bytes" not in x and "cpu_throttled_s" not in x for x in s)))
PY
cat "$WORK/facts"
f() { awk -v k="$1" '$1==k{print $2}' "$WORK/facts"; }
check "samples taken" "[ $(f n) -ge 4 ]"
check "both processes seen through cgroup.procs and the tree" "[ $(f max_procs) -ge 2 ]"
check "CPU from cpu.stat usage_usec (>= 0.2 core at peak)" "[ $(f max_cores_x100) -ge 20 ]"
check "memory from the tree of the group's processes (~200 MiB or more)" "[ $(f peak_rss_mib) -ge 190 ]"
check "metric is rss (no memory controller on this v2 mount)" "[ $(f metric) = rss ]"
check "no cgroup memory or throttling fields invented" "[ $(f absent) = 1 ]"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
