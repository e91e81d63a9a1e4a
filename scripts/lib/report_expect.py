"""What a `spotfit report` page must show, read straight from the store (not through spotfit):
the samples each attempt shipped, per attempt; the attempts per job; the days with runs; which
attempts get charts (the most recent N of each job, by start time, then run id and attempt).
The input for scripts/report-check/check.mjs.

  report_expect.py --runs RUNS.json (--store DIR | --bucket BUCKET) --per-job N [--since-ms T] > EXPECTED.json
RUNS.json: the run records (`spotfit runs --json --limit 0`, or the runs table's `doc`s).
"""
import argparse
import datetime as dt
import gzip
import json
import os
import sys


def day(ms):
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d")


def started(r):
    s = r.get("summary")
    return s["started_at_ms"] if s else r.get("heartbeat_ms")


def agent_run(r):
    return r["run_id"] if r["attempt"] <= 1 else f'{r["run_id"]}-a{r["attempt"]}'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True)
    ap.add_argument("--store")
    ap.add_argument("--bucket")
    ap.add_argument("--per-job", type=int, required=True)
    ap.add_argument("--since-ms", type=int)
    a = ap.parse_args()
    runs = json.load(open(a.runs))
    if a.since_ms is not None:
        runs = [r for r in runs if started(r) is None or started(r) >= a.since_ms]
    if a.bucket:
        import boto3

        s3 = boto3.client("s3")

        def parts(prefix):
            keys = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=prefix):
                keys += [o["Key"] for o in page.get("Contents", [])]
            return [s3.get_object(Bucket=a.bucket, Key=k)["Body"].read() for k in sorted(keys) if k.endswith(".ndjson.gz")]
    else:

        def parts(prefix):
            d = os.path.join(a.store, "objects", prefix)
            if not os.path.isdir(d):
                return []
            return [open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d)) if f.endswith(".ndjson.gz")]

    samples, gpu, oom, attempts, days = {}, {}, {}, {}, set()
    for r in runs:
        key = f'{r["run_id"]}/{r["attempt"]}'
        attempts[r["job"]] = attempts.get(r["job"], 0) + 1
        t = started(r)
        if t is not None:
            days.add(day(t))
        seqs, has_gpu = set(), False
        if t is not None:
            for blob in parts(f'samples/job={r["job"]}/dt={day(t)}/run={agent_run(r)}/'):
                for line in gzip.decompress(blob).decode().splitlines():
                    if line.strip():
                        s = json.loads(line)
                        seqs.add(s["seq"])
                        has_gpu = has_gpu or bool(s.get("gpus"))
        samples[key], gpu[key] = len(seqs), has_gpu
        oom[key] = r["status"] == "oom_killed" or bool((r.get("summary") or {}).get("oom_killed"))
    charted = []
    for job in attempts:
        mine = sorted(
            (r for r in runs if r["job"] == job),
            key=lambda r: (started(r) is not None, started(r) or 0, r["run_id"], r["attempt"]),
        )
        charted += [f'{r["run_id"]}/{r["attempt"]}' for r in mine[-a.per_job:]] if a.per_job else []
    json.dump({"samples": samples, "gpu": gpu, "oom": oom, "attempts": attempts, "days": len(days), "charted": charted}, sys.stdout)


if __name__ == "__main__":
    main()
