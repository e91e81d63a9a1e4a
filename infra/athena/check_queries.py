"""Runs the Athena named queries (infra/athena/*.sql, unchanged) with DuckDB over a data directory
in the S3 layout, and compares every figure with one computed independently, in plain Python,
from the same files.

The DuckDB views get their columns from the Glue tables of the synthesized template, translated
from Hive types, so a mismatch between the Athena DDL and the files written by the monitor and
record-run fails here too (a renamed or retyped field reads as NULL or fails to cast).

The one dialect gap: Athena's approx_percentile is not a DuckDB function; a macro maps it to
quantile_disc (nearest rank). Percentiles are therefore compared within 1 % of rank, the
accuracy Athena's own approximation documents; on the fixture they are exact.

usage: check_queries.py TEMPLATE_JSON QUERY_DIR DATA_DIR [EXPECTED_JSON]
Prints one line per check and "N passed, M failed"; exits non-zero on any failure.
"""

from __future__ import annotations

import glob
import gzip
import json
import math
import os
import re
import sys
from collections import defaultdict

import duckdb


# ---------------------------------------------------------------- Hive type → DuckDB type
def split_top(s: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def duck_type(hive: str) -> str:
    h = hive.strip()
    low = h.lower()
    simple = {"bigint": "BIGINT", "int": "INTEGER", "double": "DOUBLE", "string": "VARCHAR", "boolean": "BOOLEAN"}
    if low in simple:
        return simple[low]
    if low.startswith("array<"):
        return duck_type(h[6:-1]) + "[]"
    if low.startswith("map<"):
        k, v = split_top(h[4:-1])
        return f"MAP({duck_type(k)}, {duck_type(v)})"
    if low.startswith("struct<"):
        fields = []
        for f in split_top(h[7:-1]):
            name, t = f.split(":", 1)
            fields.append(f'"{name}" {duck_type(t)}')
        return f"STRUCT({', '.join(fields)})"
    raise ValueError(f"unsupported Hive type {hive}")


def glue_tables(template_path: str) -> dict[str, dict]:
    t = json.load(open(template_path))
    out = {}
    for r in t["Resources"].values():
        if r["Type"] == "AWS::Glue::Table":
            ti = r["Properties"]["TableInput"]
            out[ti["Name"]] = ti
    return out


def create_views(con, tables: dict[str, dict], data: str) -> dict[str, int]:
    """One view per table, over the same globs Athena's partition projection resolves to."""
    globs = {
        "samples": "samples/job=*/dt=*/run=*/*.ndjson.gz",
        "runs": "runs/job=*/dt=*/*.json",
        "run_records": "records/dt=*/*.json",
    }
    counts = {}
    for name, pattern in globs.items():
        files = sorted(glob.glob(os.path.join(data, pattern)))
        counts[name] = len(files)
        if not files:
            continue
        ti = tables[name]
        cols = {c["Name"]: duck_type(c["Type"]) for c in ti["StorageDescriptor"]["Columns"]}
        cols_sql = "{" + ", ".join(f"'{k}': '{v}'" for k, v in cols.items()) + "}"
        hive_types = "{" + ", ".join(f"'{k['Name']}': 'VARCHAR'" for k in ti["PartitionKeys"]) + "}"
        # Only the table's partition keys become columns (the run=… level of samples is not one).
        keys = [k["Name"] for k in ti["PartitionKeys"]]
        file_list = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
        con.execute(
            f"""CREATE VIEW {name}_raw AS SELECT * FROM read_json({file_list}, format='newline_delimited',
                columns={cols_sql}, hive_partitioning=true, hive_types={hive_types}, hive_types_autocast=false)"""
        )
        select_cols = ", ".join(f'"{c}"' for c in list(cols) + keys)
        con.execute(f"CREATE VIEW {name} AS SELECT {select_cols} FROM {name}_raw")
    return counts


# ---------------------------------------------------------------- independent recomputation
def load_ndjson_gz(path: str) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def partition(path: str, key: str) -> str:
    m = re.search(rf"/{key}=([^/]+)/", path)
    if not m:
        raise ValueError(f"{path}: no {key}= partition")
    return m.group(1)


def nearest_rank(sorted_vals: list[float], p: float) -> float:
    rank = math.ceil(p * len(sorted_vals))
    return sorted_vals[min(max(rank, 1), len(sorted_vals)) - 1]


def r(x: float, n: int) -> float:
    return round(x + 0.0, n)


def expected_figures(data: str) -> dict:
    records = []
    for f in sorted(glob.glob(os.path.join(data, "records/dt=*/*.json"))):
        rec = json.load(open(f))
        rec["_dt"] = partition(f, "dt")
        records.append(rec)
    samples = defaultdict(list)
    for f in sorted(glob.glob(os.path.join(data, "samples/job=*/dt=*/run=*/*.ndjson.gz"))):
        job, dt = partition(f, "job"), partition(f, "dt")
        for s in load_ndjson_gz(f):
            samples[job].append((dt, s))

    cost = defaultdict(lambda: {"runs": set(), "attempts": 0, "cost": 0.0, "secs": 0.0})
    for rec in records:
        c = cost[(rec["job"], rec["_dt"])]
        c["runs"].add(rec["run_id"])
        c["attempts"] += 1
        c["cost"] += rec["cost_usd"]
        c["secs"] += (rec.get("summary") or {}).get("duration_s", 0.0)

    waste = defaultdict(lambda: defaultdict(float))
    for rec in records:
        s = rec.get("summary")
        if not s or rec.get("requested_vcpu", 0) <= 0 or rec.get("requested_memory_bytes", 0) <= 0 or s["duration_s"] <= 0:
            continue
        w = waste[rec["job"]]
        d = s["duration_s"]
        w["attempts"] += 1
        w["req_cpu_s"] += rec["requested_vcpu"] * d
        w["used_cpu_s"] += s["cpu"]["avg"] * d
        w["req_mem"] += rec["requested_memory_bytes"] * d
        w["peak_mem"] += s["mem_max_bytes"] * d
        w["idle_cost"] += rec["cost_usd"] * (1 - min(1.0, s["cpu"]["avg"] / rec["requested_vcpu"]))

    pools = defaultdict(lambda: [0, 0])
    for rec in records:
        p = rec.get("placed")
        if not p:
            continue
        k = (p["instance_type"], p.get("az", ""), p["market"])
        pools[k][0] += 1
        pools[k][1] += rec["status"] == "interrupted"

    usage = {}
    for job, rows in samples.items():
        cpu = sorted(s["cpu_cores"] for _, s in rows)
        usage[job] = {
            "runs": len({s["run_id"] for _, s in rows}),
            "samples": len(rows),
            "cpu_sorted": cpu,
            "cpu_max_cores": r(cpu[-1], 3),
            "mem_max_bytes": max(s["mem_bytes"] for _, s in rows),
            "days": sorted({dt for dt, _ in rows}),
        }
    days = sorted({rec["_dt"] for rec in records} | {d for u in usage.values() for d in u["days"]})
    return {"records": records, "cost": cost, "waste": waste, "pools": pools, "usage": usage, "days": days}


# ---------------------------------------------------------------- the check
class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def eq(self, name: str, got, want, tol: float = 1e-9) -> None:
        ok = (abs(got - want) <= tol) if isinstance(want, float) and got is not None else got == want
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {name}: got {got!r}, want {want!r}")

    def true(self, name: str, cond: bool, detail: str = "") -> None:
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {name} {detail}")


def main() -> int:
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    template, query_dir, data = sys.argv[1:4]
    fixed = json.load(open(sys.argv[4])) if len(sys.argv) == 5 else None
    con = duckdb.connect()
    # Athena (Trino) has approx_percentile; DuckDB's nearest-rank equivalent is quantile_disc.
    con.execute("CREATE MACRO approx_percentile(x, p) AS quantile_disc(x, p)")
    counts = create_views(con, glue_tables(template), data)
    print(f"data {data}: {counts['samples']} sample parts, {counts['runs']} run summaries, {counts['run_records']} run records")
    c = Checks()
    for table, n in counts.items():
        c.true(f"{table} has files", n > 0, f"(none under {data}: cannot check the queries that read it)")
    if c.failed:
        print(f"{c.passed} passed, {c.failed} failed")
        return 1
    exp = expected_figures(data)
    first, last = exp["days"][0], exp["days"][-1]
    sql = {os.path.basename(f)[3:-4]: open(f).read() for f in sorted(glob.glob(os.path.join(query_dir, "[0-9][0-9]-*.sql")))}

    def run(qid: str, params: list) -> list[dict]:
        try:
            cur = con.execute(sql[qid], params)
        except duckdb.Error as e:
            c.true(f"{qid} runs", False, f"{type(e).__name__}: {e}")
            return []
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    # The Athena tables declare every field the writers produce (a field missing from the DDL is
    # invisible to SQL): compare the keys found in the files with the Glue columns.
    tables = glue_tables(template)
    for table, pattern, loader in [
        ("samples", "samples/job=*/dt=*/run=*/*.ndjson.gz", load_ndjson_gz),
        ("runs", "runs/job=*/dt=*/*.json", lambda f: [json.load(open(f))]),
        ("run_records", "records/dt=*/*.json", lambda f: [json.load(open(f))]),
    ]:
        declared = {col["Name"] for col in tables[table]["StorageDescriptor"]["Columns"]}
        declared |= {k["Name"] for k in tables[table]["PartitionKeys"]}
        found = set()
        for f in glob.glob(os.path.join(data, pattern)):
            for row in loader(f):
                found |= set(row)
        c.true(f"{table}: every field in the files is a column", found <= declared, f"undeclared: {sorted(found - declared)}")

    # Every summary row the runs table yields is one run (exit markers are not globbed as .json).
    n_runs = con.execute("SELECT COUNT(DISTINCT run_id) FROM runs WHERE run_id IS NOT NULL").fetchone()[0]
    c.eq("runs table: one row per run summary", n_runs, counts["runs"])

    # 1. cost per job per day
    rows = run("cost-per-job-per-day", [first, last])
    c.eq("cost-per-job-per-day: groups", len(rows), len(exp["cost"]))
    for row in rows:
        e = exp["cost"][(row["job"], row["dt"])]
        name = f"cost-per-job-per-day[{row['job']}/{row['dt']}]"
        c.eq(f"{name}.runs", row["runs"], len(e["runs"]))
        c.eq(f"{name}.attempts", row["attempts"], e["attempts"])
        c.eq(f"{name}.cost_usd", row["cost_usd"], r(e["cost"], 6))
        c.eq(f"{name}.instance_hours", row["instance_hours"], r(e["secs"] / 3600, 4))
        if fixed:
            c.eq(f"{name}.cost_usd (fixture)", row["cost_usd"], fixed["cost-per-job-per-day"][f"{row['job']}/{row['dt']}"])
    # A day window outside the data returns nothing (the dt filter is applied).
    c.eq("cost-per-job-per-day: empty window", run("cost-per-job-per-day", ["1999-01-01", "1999-01-02"]), [])

    # 2. waste
    rows = run("waste-requested-vs-used", [first, last])
    c.eq("waste: groups", len(rows), len(exp["waste"]))
    for row in rows:
        w = exp["waste"][row["job"]]
        name = f"waste[{row['job']}]"
        c.eq(f"{name}.attempts", row["attempts"], int(w["attempts"]))
        c.eq(f"{name}.requested_vcpu_hours", row["requested_vcpu_hours"], r(w["req_cpu_s"] / 3600, 4))
        c.eq(f"{name}.used_vcpu_hours", row["used_vcpu_hours"], r(w["used_cpu_s"] / 3600, 4))
        c.eq(f"{name}.cpu_waste_ratio", row["cpu_waste_ratio"], r(1 - w["used_cpu_s"] / w["req_cpu_s"], 4))
        c.eq(f"{name}.requested_gib_hours", row["requested_gib_hours"], r(w["req_mem"] / 2**30 / 3600, 4))
        c.eq(f"{name}.peak_gib_hours", row["peak_gib_hours"], r(w["peak_mem"] / 2**30 / 3600, 4))
        c.eq(f"{name}.mem_waste_ratio", row["mem_waste_ratio"], r(1 - w["peak_mem"] / w["req_mem"], 4))
        c.eq(f"{name}.idle_cpu_cost_usd", row["idle_cpu_cost_usd"], r(w["idle_cost"], 6))

    # 3. p95 CPU and max memory, per job (the job is a parameter: injected partition key)
    for job, u in sorted(exp["usage"].items()):
        rows = run("usage-p95-cpu-max-memory", [job, first, last])
        name = f"usage[{job}]"
        c.eq(f"{name}: one row", len(rows), 1)
        if not rows:
            continue
        row = rows[0]
        c.eq(f"{name}.runs", row["runs"], u["runs"])
        c.eq(f"{name}.samples", row["samples"], u["samples"])
        c.eq(f"{name}.cpu_max_cores", row["cpu_max_cores"], u["cpu_max_cores"])
        c.eq(f"{name}.mem_max_bytes", row["mem_max_bytes"], u["mem_max_bytes"])
        c.eq(f"{name}.mem_max_gib", row["mem_max_gib"], r(u["mem_max_bytes"] / 2**30, 3))
        cs = u["cpu_sorted"]
        lo, hi = nearest_rank(cs, 0.94), nearest_rank(cs, 0.96)
        c.true(f"{name}.cpu_p95_cores within 1 % of rank", lo - 1e-3 <= row["cpu_p95_cores"] <= hi + 1e-3,
               f"got {row['cpu_p95_cores']}, want in [{lo}, {hi}]")
        c.eq(f"{name}.cpu_p95_cores (nearest rank)", row["cpu_p95_cores"], r(nearest_rank(cs, 0.95), 3))
        if fixed:
            f = fixed["usage-p95-cpu-max-memory"][job]
            c.eq(f"{name}.cpu_p95_cores (fixture)", row["cpu_p95_cores"], f["cpu_p95_cores"])
            c.eq(f"{name}.mem_max_bytes (fixture)", row["mem_max_bytes"], f["mem_max_bytes"])
    # Another job's samples never leak into a job's figures.
    c.eq("usage: unknown job returns nothing", run("usage-p95-cpu-max-memory", ["no-such-job", first, last]), [])

    # 4. interruptions per pool
    rows = run("interruptions-per-pool", [first, last])
    c.eq("interruptions: pools", len(rows), len(exp["pools"]))
    for row in rows:
        k = (row["instance_type"], row["az"], row["market"])
        attempts, interrupted = exp["pools"][k]
        name = f"interruptions[{'/'.join(k)}]"
        c.eq(f"{name}.attempts", row["attempts"], attempts)
        c.eq(f"{name}.interruptions", row["interruptions"], interrupted)
        c.eq(f"{name}.interruption_rate", row["interruption_rate"], r(interrupted / attempts, 4))
        if fixed and "/".join(k) in fixed["interruptions-per-pool"]:
            c.eq(f"{name} (fixture)", [row["attempts"], row["interruptions"]], fixed["interruptions-per-pool"]["/".join(k)])
    if rows:
        c.true("interruptions: most interrupted pool first", rows[0]["interruptions"] == max(x["interruptions"] for x in rows))

    for qid in ["cost-per-job-per-day", "waste-requested-vs-used", "usage-p95-cpu-max-memory", "interruptions-per-pool"]:
        print(f"checked {qid}")
    print(f"{c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
