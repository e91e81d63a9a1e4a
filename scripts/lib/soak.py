#!/usr/bin/env python3
"""The soak's driver and its assertions (scripts/soak sets up the stack and runs this).

  soak.py DIR --rate R --minutes M [--drain-s S] [--jobs N] [--ice-every S] [--throttle-every S]

With DIR's local stack up (moto + EC2 fault layer, IAM enforced, the template's rules, the local
Step Functions service with warm Lambda pools, the event pump, the instant stand-in), it starts
executions of the state machine at R per second for M minutes (boto3 StartExecution against
AWS_ENDPOINT_URL_SFN with a unique name, the job spec as input: what `spotfit submit` sends),
while injecting EC2 faults through the fault layer's control API: an InsufficientInstanceCapacity
on one of the top-ranked instance types every --ice-every seconds (count 1–3), and a
RequestLimitExceeded (EC2's throttling) on the next spot RunInstances every --throttle-every
seconds. Then it drains (until no execution is RUNNING, at most --drain-s) and checks:

  * every StartExecution accepted; every execution SUCCEEDED
  * no duplicate instance: per (spotfit:run-id, spotfit:attempt) at most one instance ever
  * no orphan: no managed instance left live; no item left in the waits table
  * every run recorded exactly once: one final run row per attempt (and none else), one
    records/ object per attempt, the profiles' run counts add up to the succeeded attempts
  * no IAM denial
  * the rate was sustained: starts at ≥ 95 % of R, and executions completed at ≥ 90 % of R

and prints the p50/p99 of submit→running (StartExecution to the Await state entered) and
marker→recorded (the stand-in's exit-marker put to the Record task's end), the achieved rates,
executions, failures, and CPU seconds per component (from /proc). Ends with "N passed, M failed".
"""

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--rate", type=float, default=3.0)
ap.add_argument("--minutes", type=float, default=10.0)
ap.add_argument("--drain-s", type=float, default=180.0)
ap.add_argument("--jobs", type=int, default=8)
ap.add_argument("--ice-every", type=float, default=7.0)
ap.add_argument("--throttle-every", type=float, default=3.0)
A = ap.parse_args()
D = A.dir
ENV = os.environ
SM = ENV["SPOTFIT_STATE_MACHINE_ARN"]
SFN_URL = ENV["AWS_ENDPOINT_URL_SFN"]
FAULTS = ENV["SPOTFIT_FAULTS_URL"]
cfg = Config(retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=32, read_timeout=120)
sfn = boto3.client("stepfunctions", endpoint_url=SFN_URL, config=cfg)
ddb = boto3.client("dynamodb", config=cfg)
s3 = boto3.client("s3", config=cfg)
ec2 = boto3.client("ec2", endpoint_url=ENV["AWS_ENDPOINT_URL"], config=cfg)  # moto itself: the truth, no faults
BUCKET = ENV["SPOTFIT_BUCKET"]
STAMP = time.strftime("%H%M%S")
PREFIX = f"soak-{STAMP}-"


def say(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ---------------------------------------------------------------- CPU accounting (/proc)
TICK = os.sysconf("SC_CLK_TCK")


def component_of(cmd: str) -> str | None:
    if "moto_iam_server" in cmd:
        return "moto"
    if "ec2_fault_proxy" in cmd:
        return "ec2 fault layer"
    if "local-sfn.mjs" in cmd:
        return "local-sfn (node)"
    if "event_pump.py run" in cmd:
        return "event pump"
    if "instance_standin" in cmd:
        return "instant stand-in"
    if "spotfit-local-invoke" in cmd:
        parts = cmd.split()
        return "lambda " + (parts[-1] if parts else "?")
    if "soak.py" in cmd:
        return "driver"
    return None


def cpu_by_component() -> dict:
    """CPU seconds (user+sys, plus reaped children's) per component, over live processes."""
    out = collections.Counter()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            st = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        comp = component_of(cmd)
        if not comp:
            continue
        f = st[st.rindex(")") + 2:].split()
        # fields after the comm: state(0) … utime(11) stime(12) cutime(13) cstime(14)
        out[comp] += sum(int(x) for x in f[11:15]) / TICK
    return out


def cpu_total():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) / TICK, idle / TICK


# ---------------------------------------------------------------- the candidates, for the faults
def role_env(comp):
    env = {k: v for k, v in ENV.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    with open(os.path.join(ENV["SPOTFIT_ROLES_DIR"], f"{comp}.env")) as f:
        for w in f.read().replace("export ", " ").split():
            if "=" in w:
                k, v = w.split("=", 1)
                env[k] = v
    return env


def spec(job_i: int) -> dict:
    return {"name": f"soak-job-{job_i}", "command": ["true"], "hints": {"vcpu": 1, "memory_gib": 1},
            "timeout_s": 600, "market": "spot", "retry": {"max_attempts": 3}}


probe = subprocess.run([ENV["SPOTFIT_LOCAL_INVOKE"], "size-job"], input=json.dumps({"spec": spec(0), "execution": "soak-probe"}).encode(),
                       capture_output=True, env=role_env("size-job"), check=True)
TOP = [c["instance_type"] for c in json.loads(probe.stdout)["candidates"][:3]]
say(f"top candidates: {TOP}")


def fault(body):
    req = urllib.request.Request(FAULTS + "/faults", data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


# ---------------------------------------------------------------- drive
n_total = int(round(A.rate * A.minutes * 60))
submitted = {}  # name -> submit time (s)
start_errors = []
stop_faults = threading.Event()
fault_log = collections.Counter()


def injector():
    rnd = random.Random(12)
    next_ice, next_thr = time.time() + A.ice_every / 2, time.time() + A.throttle_every / 2
    while not stop_faults.is_set():
        now = time.time()
        try:
            if A.ice_every > 0 and now >= next_ice:
                fault({"instance_type": rnd.choice(TOP), "code": "InsufficientInstanceCapacity", "count": rnd.randint(1, 3)})
                fault_log["ice armed"] += 1
                next_ice = now + A.ice_every
            if A.throttle_every > 0 and now >= next_thr:
                fault({"market": "spot", "code": "RequestLimitExceeded", "count": 1})
                fault_log["throttle armed"] += 1
                next_thr = now + A.throttle_every
        except Exception as e:
            say("fault injection failed:", e)
        stop_faults.wait(0.2)


local = threading.local()


def running_names():
    """Every RUNNING execution's name (ListExecutions pages at 1,000)."""
    names, tok = [], None
    while True:
        kw = {"stateMachineArn": SM, "statusFilter": "RUNNING", "maxResults": 1000}
        if tok:
            kw["nextToken"] = tok
        page = sfn.list_executions(**kw)
        names += [e["name"] for e in page["executions"]]
        tok = page.get("nextToken")
        if not tok:
            return names


def start_one(i: int):
    c = getattr(local, "c", None)
    if c is None:
        c = local.c = boto3.client("stepfunctions", endpoint_url=SFN_URL, config=cfg)
    name = f"{PREFIX}{i:06d}"
    t = time.time()
    try:
        c.start_execution(stateMachineArn=SM, name=name, input=json.dumps(spec(i % A.jobs)))
        submitted[name] = t
    except Exception as e:
        start_errors.append((name, repr(e)))


cpu0, cpu_tot0 = cpu_by_component(), cpu_total()
inj = threading.Thread(target=injector, daemon=True)
inj.start()
say(f"driving {n_total} executions at {A.rate}/s for {A.minutes} min")
pool = ThreadPoolExecutor(max_workers=8)
t_start = time.time()
lag_max = 0.0
futs = []
for i in range(n_total):
    due = t_start + i / A.rate
    d = due - time.time()
    if d > 0:
        time.sleep(d)
    else:
        lag_max = max(lag_max, -d)
    futs.append(pool.submit(start_one, i))
    if i and i % max(1, int(A.rate * 30)) == 0:
        running = len(running_names())
        say(f"  {i} started, {running} running, cpu load {os.getloadavg()[0]:.1f}")
for f in futs:
    f.result()
t_last_start = time.time()
pool.shutdown()
stop_faults.set()
say(f"all started in {t_last_start - t_start:.1f} s (max start lag {lag_max:.1f} s); draining")
t_drain = time.time()
while True:
    mine = [n for n in running_names() if n.startswith(PREFIX)]
    if not mine or time.time() - t_drain > A.drain_s:
        break
    time.sleep(1)
t_end = time.time()
time.sleep(2)  # the last EC2 events and deliveries
cpu1, cpu_tot1 = cpu_by_component(), cpu_total()
say(f"drained in {t_end - t_drain:.1f} s ({len(mine)} still running)")

# ---------------------------------------------------------------- gather
stats = json.load(urllib.request.urlopen(SFN_URL + "/_local/stats", timeout=120))
exs = {e["name"]: e for e in stats["executions"] if e["name"].startswith(PREFIX)}
hist_pool = ThreadPoolExecutor(max_workers=4)


def history(name):
    c = getattr(local, "c", None)
    if c is None:
        c = local.c = boto3.client("stepfunctions", endpoint_url=SFN_URL, config=cfg)
    arn = exs[name]["arn"]
    ev, tok = [], None
    while True:
        kw = {"executionArn": arn, "maxResults": 1000, "includeExecutionData": True}
        if tok:
            kw["nextToken"] = tok
        page = c.get_execution_history(**kw)
        ev += page["events"]
        tok = page.get("nextToken")
        if not tok:
            return name, ev


histories = dict(hist_pool.map(history, list(exs)))
outputs = {}
for name in exs:
    d = sfn.describe_execution(executionArn=exs[name]["arn"])
    if d.get("output"):
        outputs[name] = json.loads(d["output"])

instances = collections.defaultdict(list)
live_left = []
for page in ec2.get_paginator("describe_instances").paginate(Filters=[{"Name": "tag:spotfit:managed", "Values": ["true"]}]):
    for r in page["Reservations"]:
        for i in r["Instances"]:
            tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
            rid = tags.get("spotfit:run-id", "")
            if rid.startswith(PREFIX):
                instances[(rid, tags.get("spotfit:attempt"))].append(i["InstanceId"])
                if i["State"]["Name"] not in ("terminated", "shutting-down"):
                    live_left.append((i["InstanceId"], rid, i["State"]["Name"]))


def scan(table):
    items, kw = [], {"TableName": table}
    while True:
        page = ddb.scan(**kw)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]


rows = collections.defaultdict(list)
for it in scan(ENV["SPOTFIT_RUNS_TABLE"]):
    rid = it["run_id"]["S"]
    if rid.startswith(PREFIX):
        rows[rid].append((int(it["attempt"]["N"]), json.loads(it["doc"]["S"])))
waits_left = [(i["run_id"]["S"], i["attempt"]["N"]) for i in scan(ENV["SPOTFIT_WAITS_TABLE"])]
profiles = {i["job"]["S"]: json.loads(i["doc"]["S"]) for i in scan(ENV["SPOTFIT_PROFILES_TABLE"])}
records = collections.Counter()
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="records/"):
    for o in page.get("Contents", []):
        base = o["Key"].rsplit("/", 1)[-1][:-len(".json")]
        rid, att = base.rsplit("-", 1)
        if rid.startswith(PREFIX):
            records[(rid, int(att))] += 1
markers = {}
try:
    for line in open(os.path.join(D, "standin", "instant.jsonl")):
        m = json.loads(line)
        markers[(m["run_id"], int(m["attempt"]))] = m["marker_put_ms"] / 1000
except FileNotFoundError:
    pass

# ---------------------------------------------------------------- assertions
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {str(detail)[:1500]}")


statuses = collections.Counter(e["status"] for e in exs.values())
not_ok = [(n, e["status"]) for n, e in exs.items() if e["status"] != "SUCCEEDED"]
check(f"every StartExecution accepted ({len(submitted)}/{n_total})", not start_errors and len(submitted) == n_total, start_errors[:5])
check(f"every execution SUCCEEDED ({dict(statuses)})", len(exs) == n_total and not not_ok,
      [(n, s, outputs.get(n, {}).get("error")) for n, s in not_ok[:10]])
dups = {k: v for k, v in instances.items() if len(v) > 1}
check(f"no duplicate instance: ≤ 1 per (run id, attempt) ({sum(len(v) for v in instances.values())} instances, {len(instances)} attempts)",
      not dups, list(dups.items())[:10])
check("no orphan instance: none of the soak's instances left live after the drain", not live_left, live_left[:10])
check("no orphan wait: the waits table is empty", not waits_left, waits_left[:10])

attempts_of = {}
bad_rows, bad_records, succeeded_attempts = [], [], collections.Counter()
for name in exs:
    hist = (outputs.get(name) or {}).get("history") or []
    attempts_of[name] = len(hist)
    got = sorted(rows.get(name, []), key=lambda x: x[0])
    want = list(range(1, len(hist) + 1))
    if [a for a, _ in got] != want or not want:
        bad_rows.append((name, [a for a, _ in got], want))
        continue
    for (a, doc), h in zip(got, hist):
        if doc.get("status") in (None, "running") or doc.get("status") != h.get("status"):
            bad_rows.append((name, a, doc.get("status"), h.get("status")))
        if doc.get("status") == "succeeded":
            succeeded_attempts[doc.get("job")] += 1
    for a in want:
        if records.get((name, a), 0) != 1:
            bad_records.append((name, a, records.get((name, a), 0)))
extra_records = [k for k in records if k[0] not in exs or k[1] > attempts_of.get(k[0], 0)]
check(f"exactly one final run row per attempt ({sum(attempts_of.values())} attempts)", not bad_rows, bad_rows[:10])
check("exactly one records/ object per attempt, none for an attempt that did not happen", not bad_records and not extra_records,
      (bad_records[:10], extra_records[:10]))
prof_bad = {j: (profiles.get(j, {}).get("runs"), n) for j, n in succeeded_attempts.items() if profiles.get(j, {}).get("runs") != n}
check(f"profile run counts add up ({sum(succeeded_attempts.values())} succeeded attempts over {len(succeeded_attempts)} jobs)",
      not prof_bad and succeeded_attempts, prof_bad)
den = open(ENV["SPOTFIT_IAM_DENIALS"]).read().strip().splitlines()
check("no IAM denial", not den, den[:5])

# ---------------------------------------------------------------- figures


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


sub_run, mark_rec = [], []
for name, ev in histories.items():
    t_sub = submitted.get(name)
    awaits = [e["timestamp"].timestamp() for e in ev if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "Await"]
    if t_sub and awaits:
        sub_run.append(awaits[0] - t_sub)
    # Record's end for each attempt, in order
    rec_ends, cur = [], None
    for e in ev:
        if e["type"].endswith("StateEntered"):
            cur = e["stateEnteredEventDetails"]["name"]
        elif e["type"] == "TaskStateExited" and cur == "Record":
            rec_ends.append(e["timestamp"].timestamp())
    for a, t_rec in enumerate(rec_ends, 1):
        t_m = markers.get((name, a))
        if t_m:
            mark_rec.append(t_rec - t_m)
stops = [e["stopped"] / 1000 for e in exs.values() if e.get("stopped")]
starts = sorted(submitted.values())
start_rate = (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 else 0
done_rate = len(stops) / (max(stops) - starts[0]) if stops and starts else 0
attempts_hist = collections.Counter(attempts_of.values())
ice = sum(1 for e in json.load(urllib.request.urlopen(FAULTS + "/calls", timeout=60)) if e["outcome"] == "InsufficientInstanceCapacity")
calls = json.load(urllib.request.urlopen(FAULTS + "/calls", timeout=60))
outcomes = collections.Counter(c["outcome"] for c in calls)
trans = [e["transitions"] for e in exs.values()]
wall = cpu_tot1[0] - cpu_tot0[0]
busy = wall - (cpu_tot1[1] - cpu_tot0[1])
ncpu = os.cpu_count() or 1
print()
print(f"executions: {len(exs)} started of {n_total}; failures: {len(start_errors)} start errors, {len(not_ok)} not SUCCEEDED")
print(f"attempts per execution: {dict(sorted(attempts_hist.items()))}; transitions per execution: p50 {pct(trans, 50)} max {max(trans) if trans else 0}")
print(f"rate: target {A.rate:.2f}/s; starts {start_rate:.2f}/s (max start lag {lag_max:.1f} s); completions {done_rate:.2f}/s "
      f"over {max(stops) - starts[0] if stops else 0:.0f} s; drain {t_end - t_drain:.1f} s")
print(f"RunInstances outcomes at the fault layer: {dict(outcomes)}; faults armed: {dict(fault_log)}")
print(f"submit→running (StartExecution → Await entered): n={len(sub_run)} p50={pct(sub_run, 50):.2f} s p99={pct(sub_run, 99):.2f} s max={max(sub_run or [0]):.2f} s")
print(f"marker→recorded (exit marker put → Record done): n={len(mark_rec)} p50={pct(mark_rec, 50):.2f} s p99={pct(mark_rec, 99):.2f} s max={max(mark_rec or [0]):.2f} s")
dt_all = cpu_tot1[0] / ncpu - cpu_tot0[0] / ncpu
print(f"CPU: {busy / ncpu:.0f} of {wall / ncpu:.0f} core-seconds busy on {ncpu} cores ({100 * busy / wall if wall else 0:.0f} %) from the start to the drain's end")
groups = collections.Counter()
for k in set(cpu0) | set(cpu1):
    groups[k] = cpu1.get(k, 0) - cpu0.get(k, 0)
lam = sum(v for k, v in groups.items() if k.startswith("lambda "))
for k, v in sorted(groups.items(), key=lambda kv: -kv[1]):
    print(f"  {k:28s} {v:8.1f} CPU s  ({v / len(exs) * 1000 if exs else 0:.0f} ms per execution)")
print(f"  {'all lambdas':28s} {lam:8.1f} CPU s")
if stats.get("warm"):
    print("warm pools (local-sfn):", json.dumps(stats["warm"]["functions"]))
check(f"starts sustained at ≥ 95 % of {A.rate}/s (got {start_rate:.2f}/s)", start_rate >= 0.95 * A.rate)
check(f"completions sustained at ≥ 90 % of {A.rate}/s (got {done_rate:.2f}/s) and drained within {A.drain_s:.0f} s",
      done_rate >= 0.9 * A.rate and not mine, f"{len(mine)} still running")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
