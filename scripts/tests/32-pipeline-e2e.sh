#!/usr/bin/env bash
# End to end: the real ASL (statemachine/spotfit.asl.json) executed by aws-local-stepfunctions
# under Node 22, every Task state served by the real Rust handler (spotfit-local-invoke, wired
# from the environment like the Lambdas' main.rs), against moto + the EC2 fault layer, while
# stand-in "instances" run the rendered user data, which fetches the agent from the emulated
# bucket and runs the job under the monitor (scripts/lib/instance_standin.py).
# Scenarios: capacity fallback to the third candidate and a full run; a spot interruption
# retried on another pool with both attempts costed; an execution aborted mid-run whose
# instance the reaper terminates; the launch handler invoked twice with the same input.
# Prints "N passed, M failed"; fails if any instance is left running.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
ensure_node22
ensure_npm statemachine/tests
t_start=$(date +%s)

log "building the handlers' local invoker and the agent"
# The whole workspace with every target: the same feature set as `cargo test --workspace`, so the
# AWS SDK crates built for it are reused (a `-p` build would unify features differently and
# rebuild them, ~20 min here).
cargo build -q --workspace --all-targets --features "$SPOTFIT_FEATURES" 2>&1
export SPOTFIT_LOCAL_INVOKE="$PWD/target/debug/spotfit-local-invoke"
# The real agent: the same `spotfit` binary that user data fetches and starts on EC2. Off EC2 its
# IMDS poller must not reach for 169.254.169.254, so the stand-in instances run with it off.
agent="$PWD/target/debug/spotfit"
export SPOTFIT_IMDS=off

dir=$(mktemp -d)
standin_pid=""
cleanup() {
  [ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null && wait "$standin_pid" 2>/dev/null || true
  scripts/local-stack stop "$dir"
  [ -n "${KEEP_E2E:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT
scripts/local-stack start "$dir" >/dev/null
scripts/local-stack seed "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
PY="$TOOLS/venv/bin/python"
"$PY" -c 'import boto3,os,sys; boto3.client("s3").upload_file(sys.argv[1], os.environ["SPOTFIT_BUCKET"], os.environ["SPOTFIT_AGENT_KEY"])' "$agent"
export SPOTFIT_REAP_STALE_S=3 SPOTFIT_REAP_GRACE_S=60

passed=0; failed=0
check() { # NAME PYTHON-EXPR-FILE…: run a python assertion script; count
  local name="$1"; shift
  if "$PY" "$@" >"$dir/check.out" 2>&1; then passed=$((passed+1)); echo "ok   $name"; else failed=$((failed+1)); echo "FAIL $name"; cat "$dir/check.out"; fi
}
fault() { curl -sf -X "$1" "$SPOTFIT_FAULTS_URL/$2" -H 'Content-Type: application/json' ${3:+-d "$3"} >/dev/null; }
execute() { # INPUT NAME [opts]: run the state machine, output JSON in $dir/NAME.out
  local input="$1" name="$2"; shift 2
  node statemachine/tests/run-execution.mjs "$input" "$name" "$@" > "$dir/$name.out"
  cat "$dir/$name.out" | head -c 400; echo
}

mkdir -p "$dir/standin"
"$PY" scripts/lib/instance_standin.py "$dir/standin" --interrupt-run e2e-interrupt --after 2 &
standin_pid=$!

# --- 1. capacity fallback, then a full run -------------------------------------------------
cat > "$dir/job.json" <<'JSON'
{"name": "e2e-etl", "command": ["python3", "-c", "import time\nx = b'x' * (64 << 20)\nt = time.time()\nwhile time.time() - t < 3: pass\nprint('it''s done: $(not run)')"],
 "env": {"HOSTILE": "$(touch /tmp/spotfit-e2e-pwned) 'q' \"d\""}, "hints": {"vcpu": 1, "memory_gib": 2}, "timeout_s": 600, "market": "spot"}
JSON
# The ranking is deterministic: ask the size handler for the order, then fail the first two types.
"$SPOTFIT_LOCAL_INVOKE" size-job <<< "{\"spec\": $(cat "$dir/job.json"), \"execution\": \"probe\"}" > "$dir/size.out"
read -r first second third < <("$PY" -c 'import json,sys; c=json.load(open(sys.argv[1]))["candidates"]; print(*[x["instance_type"] for x in c[:3]])' "$dir/size.out")
echo "ranked: $first, $second, $third"
fault POST faults "{\"instance_type\": \"$first\", \"code\": \"InsufficientInstanceCapacity\", \"count\": -1}"
fault POST faults "{\"instance_type\": \"$second\", \"code\": \"InsufficientInstanceCapacity\", \"count\": -1}"
t0=$(date +%s.%N)
execute "$dir/job.json" e2e-fallback
t1=$(date +%s.%N)
check "fallback: succeeded on the third candidate, job ran, samples in S3, terminated, recorded" - "$dir" "$first" "$second" "$third" <<'PY'
import boto3, json, os, sys, urllib.request
d, first, second, third = sys.argv[1:5]
out = json.load(open(f"{d}/e2e-fallback.out"))
assert out["status"] == "SUCCEEDED", out
st = out["output"]
inst = st["instance"]
assert inst["pool"]["instance_type"] == third, inst
tried = [t["pool"]["instance_type"] for t in inst["tried"]]
assert set(tried) == {first, second} and tried.index(first) < tried.index(second), tried
calls = json.load(urllib.request.urlopen(os.environ["SPOTFIT_FAULTS_URL"] + "/calls"))
ice = [c["instance_type"] for c in calls if c["outcome"] == "InsufficientInstanceCapacity"]
assert ice[0] == first and second in ice, calls
s3 = boto3.client("s3"); b = os.environ["SPOTFIT_BUCKET"]
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix="samples/job=e2e-etl/").get("Contents", [])]
assert any("/run=e2e-fallback/part-" in k for k in keys), keys
runs = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix="runs/job=e2e-etl/").get("Contents", [])]
assert any(k.endswith("e2e-fallback.exit") for k in runs), runs
summary = json.loads(s3.get_object(Bucket=b, Key=[k for k in runs if k.endswith("e2e-fallback.json")][0])["Body"].read())
assert summary["status"] == "succeeded" and summary["samples"] > 0, summary
assert summary["mem_max_bytes"] > 32 << 20, summary
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"])
state = ec2.describe_instances(InstanceIds=[inst["instance_id"]])["Reservations"][0]["Instances"][0]["State"]["Name"]
assert state in ("terminated", "shutting-down"), state
ddb = boto3.client("dynamodb")
row = ddb.get_item(TableName=os.environ["SPOTFIT_RUNS_TABLE"], Key={"run_id": {"S": "e2e-fallback"}, "attempt": {"N": "1"}})["Item"]
rec = json.loads(row["doc"]["S"])
assert rec["status"] == "succeeded" and rec["cost_usd"] > 0 and rec["placed"]["instance_type"] == third, rec
prof = ddb.get_item(TableName=os.environ["SPOTFIT_PROFILES_TABLE"], Key={"job": {"S": "e2e-etl"}})["Item"]
p = json.loads(prof["doc"]["S"]); assert p["runs"] == 1 and int(prof["version"]["N"]) == 1, p
athena = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix="records/").get("Contents", [])]
assert any(k.endswith("/e2e-fallback-1.json") for k in athena), athena
assert not os.path.exists("/tmp/spotfit-e2e-pwned"), "a job string was executed by the user data"
print("ok")
PY
fault DELETE faults

# --- 2. spot interruption mid-run: retried on another pool, both attempts costed ----------------
cat > "$dir/long.json" <<'JSON'
{"name": "e2e-long", "command": ["python3", "-c", "import time; time.sleep(5); print('done')"], "hints": {"vcpu": 1, "memory_gib": 1}, "timeout_s": 600, "retry": {"max_attempts": 3}}
JSON
execute "$dir/long.json" e2e-interrupt
check "interruption: attempt 1 interrupted, attempt 2 on another pool succeeded, both costed" - "$dir" <<'PY'
import boto3, json, os, sys
d = sys.argv[1]
out = json.load(open(f"{d}/e2e-interrupt.out"))
assert out["status"] == "SUCCEEDED", out
h = out["output"]["history"]
assert [a["status"] for a in h] == ["interrupted", "succeeded"], h
assert h[0]["pool"] != h[1]["pool"], h
assert all(a["cost_usd"] > 0 for a in h), h
ddb = boto3.client("dynamodb")
for attempt, status in ((1, "interrupted"), (2, "succeeded")):
    it = ddb.get_item(TableName=os.environ["SPOTFIT_RUNS_TABLE"], Key={"run_id": {"S": "e2e-interrupt"}, "attempt": {"N": str(attempt)}})["Item"]
    rec = json.loads(it["doc"]["S"]); assert rec["status"] == status and rec["cost_usd"] > 0, rec
cap = ddb.scan(TableName=os.environ["SPOTFIT_CAPACITY_TABLE"])["Items"]
assert any(i["why"]["S"] == "interrupted" for i in cap), cap
print("ok")
PY

# --- 3. execution stopped mid-run: the reaper terminates the orphan -----------------------------
cat > "$dir/sleepy.json" <<'JSON'
{"name": "e2e-orphan", "command": ["sleep", "120"], "hints": {"vcpu": 1, "memory_gib": 1}, "timeout_s": 600}
JSON
execute "$dir/sleepy.json" e2e-orphan --abort-after-checks 1
sleep 4
echo '{}' | "$SPOTFIT_LOCAL_INVOKE" reap-instances > "$dir/reap.out"
cat "$dir/reap.out"; echo
check "abort: the orphan is reaped as abandoned" - "$dir" <<'PY'
import boto3, json, os, sys
d = sys.argv[1]
assert json.load(open(f"{d}/e2e-orphan.out"))["status"] == "ABORTED"
rep = json.load(open(f"{d}/reap.out"))
mine = [r for r in rep["terminated"] if r["run_id"] == "e2e-orphan"]
assert mine and mine[0]["reason"] == "abandoned", rep
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"])
st = ec2.describe_instances(InstanceIds=[mine[0]["instance_id"]])["Reservations"][0]["Instances"][0]["State"]["Name"]
assert st in ("terminated", "shutting-down"), st
print("ok")
PY

# --- 4. the launch handler twice with the same input: one instance ------------------------------
"$SPOTFIT_LOCAL_INVOKE" size-job <<< "{\"spec\": $(cat "$dir/sleepy.json"), \"execution\": \"e2e-twice\"}" > "$dir/twice.in"
"$SPOTFIT_LOCAL_INVOKE" launch-instance < "$dir/twice.in" > "$dir/twice.a"
"$SPOTFIT_LOCAL_INVOKE" launch-instance < "$dir/twice.in" > "$dir/twice.b"
"$SPOTFIT_LOCAL_INVOKE" terminate-instance < "$dir/twice.b" > /dev/null
check "launch twice: exactly one instance" - "$dir" <<'PY'
import boto3, json, os, sys
d = sys.argv[1]
a, b = (json.load(open(f"{d}/twice.{x}"))["instance"]["instance_id"] for x in "ab")
assert a == b, (a, b)
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"])
ids = [i["InstanceId"] for r in ec2.describe_instances(Filters=[{"Name": "tag:spotfit:run-id", "Values": ["e2e-twice"]}])["Reservations"] for i in r["Instances"]]
assert ids == [a], ids
print("ok")
PY

# --- nothing left running -------------------------------------------------------------------------
sleep 1
check "no instance left running in the emulator" - <<'PY'
import boto3, os
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"])
left = [(i["InstanceId"], i["State"]["Name"]) for r in ec2.describe_instances()["Reservations"] for i in r["Instances"] if i["State"]["Name"] not in ("terminated", "shutting-down")]
assert not left, left
PY
echo "fallback execution: $(echo "$t1 - $t0" | bc) s; whole e2e script: $(( $(date +%s) - t_start )) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
