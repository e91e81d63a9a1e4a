#!/usr/bin/env bash
# One short device check (run from the device tool in .devsrc/): environment facts, real cgroup v2
# files (fixtures), the NVML-vs-nvidia-smi comparison, and the monitor's own cost with NVML loaded.
set -uo pipefail
cd "$(dirname "$0")"
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT/cg2"
{ uname -r; ldd --version | head -1; nvidia-smi -L; cat /proc/self/cgroup; ls /sys/fs/cgroup | head -40; } > "$OUT/env.txt" 2>&1
CG="/sys/fs/cgroup$(awk -F: '$1=="0"{print $3}' /proc/self/cgroup)"
echo "cgroup dir: $CG" >> "$OUT/env.txt"
for d in "$CG" /sys/fs/cgroup; do
  sub="$OUT/cg2/$(echo "$d" | tr / _)"
  mkdir -p "$sub"
  for f in cgroup.controllers cgroup.procs memory.current memory.stat memory.max memory.events memory.peak cpu.stat io.stat cpu.max; do
    [ -r "$d/$f" ] && cat "$d/$f" > "$sub/$f" 2>/dev/null
  done
done
chmod +x ./spotfit-monitor
./spotfit-monitor --help > /dev/null && echo "binary runs" >> "$OUT/env.txt"
# NVML cost: the monitor alone attached to an idle sleeper for 20 s with NVML loaded.
sleep 15 & sp=$!
python3 - "$sp" "$OUT" <<'PY'
# CPU from wait4 of the monitor alone (µs); peak RSS from its VmHWM, polled (ru_maxrss would
# count the forked Python image before exec).
import json, os, sys, time
pid, out = sys.argv[1], sys.argv[2]
child = os.fork()
if child == 0:
    fd = os.open("/dev/null", os.O_WRONLY); os.dup2(fd, 2)
    os.execv("./spotfit-monitor", ["spotfit-monitor", "--pid", pid, "--interval", "1", "--output", f"{out}/cost.ndjson", "--imds", "off"])
hwm = 0
while True:
    try:
        # Only once exec'd: before that the child is a copy of this Python.
        if not os.readlink(f"/proc/{child}/exe").endswith("spotfit-monitor"):
            raise OSError
        for line in open(f"/proc/{child}/status"):
            if line.startswith("VmHWM:"):
                hwm = max(hwm, int(line.split()[1]))
    except OSError:
        pass
    done, _, ru = os.wait4(child, os.WNOHANG)
    if done:
        break
    time.sleep(0.5)
lines = open(f"{out}/cost.ndjson").read().splitlines()
n = len(lines)
cpu = (ru.ru_utime + ru.ru_stime) * 1000
json.dump({"samples": n, "cpu_ms_total": cpu, "cpu_ms_per_sample": cpu / max(1, n), "peak_rss_mib": hwm / 1024,
           "gpus_in_first_sample": len(json.loads(lines[0]).get("gpus", [])) if lines else None}, open(f"{out}/nvml_cost.json", "w"))
PY
python3 check-nvml.py ./spotfit-monitor "$OUT/check" > "$OUT/check.json" 2> "$OUT/check.err"
cat "$OUT/env.txt" "$OUT/nvml_cost.json" "$OUT/check.json"; tail -5 "$OUT/check.err"
# The overhead benchmark on an idle 16-core host (the workload really gets its core there).
if [ -x scripts/bench-monitor ]; then
  BENCH_PYTHON=python3 PYTHONPATH="$PWD/pylib" SPOTFIT_MONITOR_BIN="$PWD/spotfit-monitor" BENCH_RAW="$OUT/bench_raw.jsonl" \
    scripts/bench-monitor "${BENCH_REPS:-2}" "${BENCH_SECS:-60}" > "$OUT/bench.txt" 2>&1
  cat "$OUT/bench.txt"
fi
