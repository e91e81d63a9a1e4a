"""A real process tree for measurement tests: the parent holds MEM_MIB/2, a child holds MEM_MIB/2
and burns one core for SECONDS. Writes the ground truth (own CPU seconds and peak RSS of both,
from getrusage) as JSON to argv[1], so the test compares the monitor with the kernel's figures."""
import json, os, resource, subprocess, sys, time

out, seconds, mem_mib = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
if len(sys.argv) > 4 and sys.argv[4] == "child":
    block = b"\x01" * (mem_mib * 1024 * 1024)  # touched: counts in RSS
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        x += 1
    sys.exit(0)

block = b"\x02" * (mem_mib // 2 * 1024 * 1024)
t0 = time.time()
child = subprocess.Popen([sys.executable, __file__, out, str(seconds), str(mem_mib // 2), "child"])
child.wait()
wall = time.time() - t0
me = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({
    "wall_s": wall,
    "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
    "peak_rss_sum_bytes": (me.ru_maxrss + kids.ru_maxrss) * 1024,
}, open(out, "w"))
