#!/usr/bin/env python3
"""GPU check of the monitor's NVML figures against nvidia-smi on a real GPU load.

Run on a GPU host with PyTorch: `check-nvml.py MONITOR_BIN OUTDIR`. It runs a PyTorch load
(phases: 10 s of back-to-back matrix products holding ~24 GiB, 6 s idle still holding it) under
`spotfit monitor --interval 1`, while `nvidia-smi --query-gpu=... -l 1` and
`nvidia-smi --query-compute-apps=...` log beside it, then prints the per-phase comparison and the
monitor's own cost with NVML loaded (CPU ms per sample, peak RSS from rusage).
"""
import json, os, resource, subprocess, sys, time

mon, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
load = os.path.join(out, "gpu_load.py")
with open(load, "w") as f:
    f.write(r'''
import time, torch
x = torch.empty(6 * 2**30, dtype=torch.float32, device="cuda")   # 24 GiB held all along
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
torch.cuda.synchronize()
print("phase busy", time.time(), flush=True)
end = time.time() + 10
while time.time() < end:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize()
print("phase idle", time.time(), flush=True)
time.sleep(6)
print("done", time.time(), flush=True)
''')

smi = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used,memory.total",
                        "--format=csv,noheader,nounits", "-l", "1"], stdout=open(f"{out}/smi_gpu.csv", "w"))
apps = open(f"{out}/smi_apps.csv", "w")
samples = f"{out}/samples.ndjson"
t0 = time.time()
p = subprocess.Popen([mon, "--interval", "1", "--output", samples, "--summary", f"{out}/summary.json",
                      "--imds", "off", "--job", "gpu-check", "--", sys.executable, load],
                     stdout=open(f"{out}/load.log", "w"), stderr=open(f"{out}/monitor.err", "w"))
while p.poll() is None:
    r = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True)
    apps.write(f"{time.time()},{r.stdout.strip().replace(chr(10), ';')}\n")
    apps.flush()
    time.sleep(1)
smi.terminate()
ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # includes the job too: see below

phases = {}
for line in open(f"{out}/load.log"):
    parts = line.split()
    if parts and parts[0] == "phase":
        phases[parts[1]] = float(parts[2])
    elif parts and parts[0] == "done":
        phases["done"] = float(parts[1])
S = [json.loads(l) for l in open(samples)]

def smi_rows():
    rows = []
    for line in open(f"{out}/smi_gpu.csv"):
        ts, util, used, total = [x.strip() for x in line.split(",")]
        t = time.mktime(time.strptime(ts.split(".")[0], "%Y/%m/%d %H:%M:%S")) + float("0." + ts.split(".")[1])
        rows.append((t, float(util), float(used) * 2**20))
    return rows

R = smi_rows()
def mean(xs): return sum(xs) / len(xs) if xs else float("nan")
res = {"gpu_count_nvml": max(len(s.get("gpus", [])) for s in S), "samples": len(S), "phases": {}}
for name, lo, hi in [("busy", phases["busy"] + 2, phases["idle"]), ("idle", phases["idle"] + 2, phases["done"])]:
    mon_u = [s["gpus"][0]["util_pct"] for s in S if s.get("gpus") and lo <= s["ts_ms"] / 1000 <= hi]
    mon_m = [s["gpus"][0]["mem_used_bytes"] for s in S if s.get("gpus") and lo <= s["ts_ms"] / 1000 <= hi]
    mon_p = [s["gpus"][0].get("proc_mem_bytes") or 0 for s in S if s.get("gpus") and lo <= s["ts_ms"] / 1000 <= hi]
    smi_u = [u for t, u, m in R if lo <= t <= hi]
    smi_m = [m for t, u, m in R if lo <= t <= hi]
    res["phases"][name] = {
        "monitor_util_pct": mean(mon_u), "smi_util_pct": mean(smi_u),
        "monitor_mem_used_gib": mean(mon_m) / 2**30, "smi_mem_used_gib": mean(smi_m) / 2**30,
        "monitor_proc_mem_gib": mean(mon_p) / 2**30, "n_monitor": len(mon_u), "n_smi": len(smi_u),
    }
app_mem = []
for line in open(f"{out}/smi_apps.csv"):
    for app in line.strip().split(",", 1)[1].split(";"):
        if app.strip():
            app_mem.append(float(app.split(",")[1]) * 2**20)
res["smi_app_mem_max_gib"] = max(app_mem) / 2**30 if app_mem else None
res["monitor_summary_gpu"] = json.load(open(f"{out}/summary.json")).get("gpu")
print(json.dumps(res, indent=1))
