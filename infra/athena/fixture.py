"""Writes a small data set in the exact S3 layout and JSON schema of spotfit, for the DuckDB check
of the named queries when no output of the real monitor is at hand.

Layout (shared/core/src/ids.rs RunKeys, plus the run records of record-run):
  samples/job=<job>/dt=<day>/run=<run_id>/part-<00000>.ndjson.gz  one Sample per line (sample.rs)
  runs/job=<job>/dt=<day>/<run_id>.json                            RunSummary (summary.rs)
  runs/job=<job>/dt=<day>/<run_id>.exit                            exit marker
  records/dt=<day>/<run_id>-<attempt>.json                         RunRecord (run.rs)

Field names, omissions (`skip_serializing_if`) and units follow the Rust structs; the values are
chosen so that every figure the queries return is known in advance (see EXPECTED), e.g. each
job's CPU series has a plateau around its 95th percentile so that any percentile definition
within 1 % of rank agrees.

usage: fixture.py DIR   (writes DIR/{samples,runs,records}; prints EXPECTED as JSON)
"""

from __future__ import annotations

import gzip
import json
import os
import sys

GIB = 1 << 30
DAY1_MS = 1_795_651_200_000  # 2026-11-26T00:00:00Z
DAY_MS = 86_400_000


def day_of(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).strftime("%Y-%m-%d")


def sample(run_id: str, seq: int, ts_ms: int, cpu: float, mem: int, gpu: bool, cgroup: bool) -> dict:
    """A Sample as serde would write it: optional fields absent rather than null."""
    s = {
        "ts_ms": ts_ms,
        "run_id": run_id,
        "seq": seq,
        "interval_s": 1.0,
        "cpu_cores": cpu,
        "host_cpu_cores": cpu + 0.05,
        "processes": 3,
        "mem_bytes": mem,
        "mem_metric": "cgroup" if cgroup else "rss",
        "rss_bytes": mem,
        "page_faults_minor": 100 * seq,
        "page_faults_major": 0,
        "disk_read_bytes": 4096 * seq,
        "disk_write_bytes": 8192 * seq,
        "net_rx_bytes": 1000 * seq,
        "net_tx_bytes": 500 * seq,
    }
    if cgroup:
        s.update({"cgroup_mem_bytes": mem + 4096, "cgroup_working_set_bytes": mem, "oom_kills": 0, "mem_limit_hits": 0,
                  "cpu_throttled_s": 0.0})
    if gpu:
        s["gpus"] = [{"index": 0, "util_pct": 80.0, "mem_used_bytes": 10 * GIB, "mem_total_bytes": 24 * GIB}]
    return s


# Runs: (job, run_id, start_ms, cpu series, mem series, requested vcpu, requested GiB, attempts)
# attempts: list of (status, instance_type, az, market, price_per_hour)
def runs() -> list[dict]:
    etl_cpu = [1.0] * 36 + [2.0] * 4          # 40 samples: p95 (rank 38) = 2.0, max 2.0
    train_cpu = [3.0] * 15 + [7.5] * 5        # 20 samples: p95 (rank 19) = 7.5
    return [
        {"job": "etl", "run_id": "20261126T010000Z-0000000a", "start": DAY1_MS + 3_600_000, "cpu": etl_cpu,
         "mem": [GIB + i * 1_000_000 for i in range(40)], "vcpu": 4, "gib": 8, "gpu": False, "cgroup": True,
         "attempts": [("succeeded", "m7i.xlarge", "use1-az1", "spot", 0.08)]},
        {"job": "etl", "run_id": "20261126T020000Z-0000000b", "start": DAY1_MS + 7_200_000, "cpu": etl_cpu,
         "mem": [2 * GIB] * 40, "vcpu": 4, "gib": 8, "gpu": False, "cgroup": False,
         "attempts": [("succeeded", "m7i.xlarge", "use1-az2", "spot", 0.10)]},
        {"job": "etl", "run_id": "20261127T010000Z-0000000c", "start": DAY1_MS + DAY_MS + 3_600_000, "cpu": etl_cpu,
         "mem": [3 * GIB] * 40, "vcpu": 2, "gib": 4, "gpu": False, "cgroup": True,
         "attempts": [("succeeded", "c7i.large", "use1-az1", "on-demand", 0.09)]},
        {"job": "train", "run_id": "20261126T030000Z-0000000d", "start": DAY1_MS + 10_800_000, "cpu": train_cpu,
         "mem": [12 * GIB] * 19 + [14 * GIB], "vcpu": 8, "gib": 32, "gpu": True, "cgroup": True,
         "attempts": [("interrupted", "g6.2xlarge", "use1-az1", "spot", 0.40),
                      ("succeeded", "g6.2xlarge", "use1-az2", "spot", 0.50)]},
    ]


def write(root: str) -> dict:
    expected_cost: dict[tuple[str, str], float] = {}
    for r in runs():
        job, run_id, start = r["job"], r["run_id"], r["start"]
        day = day_of(start)
        n = len(r["cpu"])
        rows = [sample(run_id, i, start + (i + 1) * 1000, r["cpu"][i], r["mem"][i], r["gpu"], r["cgroup"]) for i in range(n)]
        sdir = os.path.join(root, "samples", f"job={job}", f"dt={day}", f"run={run_id}")
        os.makedirs(sdir, exist_ok=True)
        # Two parts, as the monitor's uploader splits a run.
        half = n // 2
        for part, chunk in enumerate([rows[:half], rows[half:]]):
            with gzip.open(os.path.join(sdir, f"part-{part:05d}.ndjson.gz"), "wt") as f:
                for row in chunk:
                    f.write(json.dumps(row, separators=(",", ":")) + "\n")
        duration_s = n * 1.0
        cpu_sorted = sorted(r["cpu"])
        summary = {
            "job": job, "run_id": run_id, "started_at_ms": start, "ended_at_ms": start + n * 1000,
            "duration_s": duration_s, "samples": n,
            "cpu": {"avg": sum(r["cpu"]) / n, "p50": cpu_sorted[(n + 1) // 2 - 1], "p95": cpu_sorted[-(-95 * n // 100) - 1],
                    "max": cpu_sorted[-1]},
            "mem_max_bytes": max(r["mem"]), "mem_metric": "cgroup" if r["cgroup"] else "rss",
            "io": {"disk_read_bytes": 4096 * (n - 1), "disk_write_bytes": 8192 * (n - 1),
                   "net_rx_bytes": 1000 * (n - 1), "net_tx_bytes": 500 * (n - 1)},
            "exit": {"code": 0}, "oom_killed": False, "status": "succeeded",
        }
        if r["gpu"]:
            summary["gpu"] = {"count": 1, "util_avg_pct": 80.0, "util_max_pct": 80.0, "mem_max_bytes": 10 * GIB}
        rdir = os.path.join(root, "runs", f"job={job}", f"dt={day}")
        os.makedirs(rdir, exist_ok=True)
        with open(os.path.join(rdir, f"{run_id}.json"), "w") as f:
            json.dump(summary, f)
        with open(os.path.join(rdir, f"{run_id}.exit"), "w") as f:
            # As the monitor writes it: the marker is JSON too (Athena's `runs` table reads it as
            # a sparse row, hence the "$path" LIKE '%.json' advice on that table).
            json.dump({"ended_at_ms": start + n * 1000, "exit": {"code": 0}, "job": job, "run_id": run_id,
                       "spot_notice": None, "status": "succeeded"}, f)
        cdir = os.path.join(root, "records", f"dt={day}")
        os.makedirs(cdir, exist_ok=True)
        for attempt, (status, itype, az, market, price) in enumerate(r["attempts"], start=1):
            s = dict(summary, status=status)
            cost = round(price * duration_s / 3600, 9)
            record = {
                "run_id": run_id, "job": job, "attempt": attempt, "status": status,
                "placed": {"instance_id": f"i-{attempt:04x}{run_id[-8:]}", "instance_type": itype, "region": "us-east-1",
                           "az": az, "market": market, "price_per_hour": price, "local": False},
                "cost_usd": cost, "summary": s,
                "requested_vcpu": r["vcpu"], "requested_memory_bytes": r["gib"] * GIB,
            }
            with open(os.path.join(cdir, f"{run_id}-{attempt}.json"), "w") as f:
                json.dump(record, f)
            expected_cost[(job, day)] = expected_cost.get((job, day), 0.0) + cost
    return {
        # Figures fixed by construction, checked besides the independent recomputation.
        "cost-per-job-per-day": {f"{j}/{d}": round(c, 6) for (j, d), c in sorted(expected_cost.items())},
        "usage-p95-cpu-max-memory": {"etl": {"cpu_p95_cores": 2.0, "mem_max_bytes": 3 * GIB},
                                     "train": {"cpu_p95_cores": 7.5, "mem_max_bytes": 14 * GIB}},
        "interruptions-per-pool": {"g6.2xlarge/use1-az1/spot": [1, 1]},
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(json.dumps(write(sys.argv[1]), indent=1))
