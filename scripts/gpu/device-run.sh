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
sleep 25 & sp=$!
python3 - "$sp" "$OUT" <<'PY'
import json, resource, subprocess, sys
pid, out = sys.argv[1], sys.argv[2]
p = subprocess.run(["./spotfit-monitor", "--pid", pid, "--interval", "1", "--output", f"{out}/cost.ndjson", "--imds", "off"],
                   capture_output=True, text=True)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
n = sum(1 for _ in open(f"{out}/cost.ndjson"))
json.dump({"samples": n, "cpu_ms_total": (ru.ru_utime + ru.ru_stime) * 1000, "cpu_ms_per_sample": (ru.ru_utime + ru.ru_stime) * 1000 / n,
           "peak_rss_mib": ru.ru_maxrss / 1024, "gpus_in_first_sample": len(json.loads(open(f"{out}/cost.ndjson").readline()).get("gpus", []))},
          open(f"{out}/nvml_cost.json", "w"))
PY
python3 check-nvml.py ./spotfit-monitor "$OUT/check" > "$OUT/check.json" 2> "$OUT/check.err"
cat "$OUT/env.txt" "$OUT/nvml_cost.json" "$OUT/check.json"; tail -5 "$OUT/check.err"
