#!/usr/bin/env bash
# End to end: the real ASL (statemachine/spotfit.asl.json) executed by aws-local-stepfunctions
# under Node 22, every Task state served by the real Rust handler (spotfit-local-invoke, wired
# from the environment like the Lambdas' main.rs), against moto + the EC2 fault layer, while
# stand-in "instances" run the rendered user data, which fetches the agent from the emulated
# bucket and runs the job under the monitor (scripts/lib/instance_standin.py).
# IAM is enforced: the template `cdk synth` gives (synthesized here for the emulator's VPC and
# subnets) is read for each Lambda's and the instance's role and policies, which are created in
# moto; every handler and the agent run on their own role's STS credentials (only set-up and the
# assertions below use the admin), and moto authorizes every call (scripts/local-stack iam).
# The execution waits on a task token (docs/callback.md): the local Step Functions service
# (statemachine/tests/local-sfn.mjs) runs the ASL, the template's EventBridge rules are created in
# moto with S3 → EventBridge on, and the event pump (scripts/lib/event_pump.py) delivers each event
# to job-events (and plays EC2's state-change events, which moto does not emit).
# Scenarios: capacity fallback to the third candidate and a full run; a spot interruption
# retried on another pool with both attempts costed; `spotfit cancel` mid-run (instance gone
# within a minute, row cancelled); an instance that vanishes with no event, finished as lost by
# the reaper's sweep; a hung attempt ended by its deadline (Await's timeout → Check → timed_out);
# the same marker event delivered three times (one transition); a job's schedule fired twice for
# one tick (one execution, named by job and tick); infra/README's first job (`spotfit submit
# --wait`); live spot prices (the refresher on a seeded market, ranking per AZ, a refreshed and
# a stale overlay, throttled and truncated refreshes, a run billed from the price history);
# the CLI on the deployment by stack name (`--stack`: runs, status, and the report rendered in
# Chromium); the launch handler invoked twice
# with the same input; the Await's arm invocation lost to a timeout; a launch cut off after
# starting its instance; and a negative control: the same pipeline with one statement removed
# from one role fails, naming the denied action and the role. Prints the marker → end latency.
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
# The real agent: `spotfit-agent` (a workspace member, so built above), the binary user data
# fetches and starts on EC2. Off EC2 its IMDS poller must not reach for 169.254.169.254, so the
# stand-in instances run with it off. The CLI is `spotfit`.
agent="$PWD/target/debug/spotfit-agent"
cli="$PWD/target/debug/spotfit"
export SPOTFIT_IMDS=off

dir=$(mktemp -d)
standin_pid=""
pricing_pid=""
cleanup() {
  [ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null && wait "$standin_pid" 2>/dev/null || true
  [ -n "$pricing_pid" ] && kill "$pricing_pid" 2>/dev/null || true
  scripts/local-stack stop "$dir"
  [ -n "${KEEP_E2E:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT
export SPOTFIT_REAP_STALE_S=3 SPOTFIT_REAP_GRACE_S=60
# A short boot grace: the deadline scenario ends 20 s after its 5 s timeout, not 10 minutes.
export SPOTFIT_BOOT_GRACE_S=20
# The job schedules of the scheduled-run scenario, in the synthesized template.
export SPOTFIT_SYNTH_ARGS="-c spotfit:jobsFile=$PWD/scripts/tests/fixtures/e2e-jobs.json"
source scripts/lib/pipeline_stack.sh
pipeline_stack_up "$dir" "$agent"
as_role() { # COMPONENT CMD…: run CMD on that component's STS credentials
  local comp="$1"; shift
  # shellcheck disable=SC1090
  ( source "$SPOTFIT_ROLES_DIR/$comp.env"; "$@" )
}
invoke() { as_role "$1" "$SPOTFIT_LOCAL_INVOKE" "$1"; }

# The deployment as the CLI finds it by name (`--stack spotfit-e2e`): a stand-in stack in the
# emulator's CloudFormation whose outputs are the keys the CLI reads (infra/stack-outputs.json,
# which the CDK stack's own outputs are checked against by infra/test/contract.test.ts), valued
# with this emulator's bucket, tables and state machine.
"$PY" - <<'PY'
import boto3, json, os
values = {"BucketName": "SPOTFIT_BUCKET", "RunsTable": "SPOTFIT_RUNS_TABLE", "ProfilesTable": "SPOTFIT_PROFILES_TABLE",
          "WaitsTable": "SPOTFIT_WAITS_TABLE", "StateMachineArn": "SPOTFIT_STATE_MACHINE_ARN"}
keys = [o["key"] for o in json.load(open("infra/stack-outputs.json"))["outputs"]]
tpl = {"Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
       "Outputs": {k: {"Value": os.environ[values[k]]} for k in keys}}
boto3.client("cloudformation").create_stack(StackName="spotfit-e2e", TemplateBody=json.dumps(tpl))
PY

check "static IAM check of what moto's evaluator skips (conditions, non-S3 resource ARNs)" scripts/lib/template_iam.py static "$TEMPLATE"
fault() { curl -sf -X "$1" "$SPOTFIT_FAULTS_URL/$2" -H 'Content-Type: application/json' ${3:+-d "$3"} >/dev/null; }

mkdir -p "$dir/standin"
"$PY" scripts/lib/instance_standin.py "$dir/standin" --interrupt-run e2e-interrupt --after 2 --hang-run e2e-deadline &
standin_pid=$!

# --- 1. capacity fallback, then a full run -------------------------------------------------
cat > "$dir/job.json" <<'JSON'
{"name": "e2e-etl", "command": ["python3", "-c", "import time\nx = b'x' * (64 << 20)\nt = time.time()\nwhile time.time() - t < 3: pass\nprint('it''s done: $(not run)')"],
 "env": {"HOSTILE": "$(touch /tmp/spotfit-e2e-pwned) 'q' \"d\""}, "hints": {"vcpu": 1, "memory_gib": 2}, "timeout_s": 600, "market": "spot"}
JSON
# The ranking is deterministic: ask the size handler for the order, then fail the first two types.
invoke size-job <<< "{\"spec\": $(cat "$dir/job.json"), \"execution\": \"probe\"}" > "$dir/size.out"
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
assert any(i.get("why", {}).get("S") == "interrupted" for i in cap), cap
# AND the interrupted attempt joined its pool's history as one interruption (learned rates)
first = h[0]["pool"]
hist = [i for i in cap if i["pool"]["S"].startswith(f"exposure#{first['instance_type']}/{first['az']}/spot#")]
assert len(hist) == 1 and int(hist[0]["interruptions"]["N"]) >= 1 and "e2e-interrupt#1" in hist[0]["counted"]["SS"], hist
print("ok")
PY

wait_armed() { # RUN_ID: until an execution waits on its attempt (the waits table has it), 60 s
  "$PY" - "$1" <<'PY'
import boto3, os, sys, time
ddb = boto3.client("dynamodb")
for _ in range(600):
    items = ddb.query(TableName=os.environ["SPOTFIT_WAITS_TABLE"], KeyConditionExpression="run_id = :r",
                      ExpressionAttributeValues={":r": {"S": sys.argv[1]}})["Items"]
    if items:
        print(items[0]["instance_id"]["S"]); sys.exit(0)
    time.sleep(0.1)
sys.exit(f"{sys.argv[1]} never armed")
PY
}

# --- 3. spotfit cancel mid-run: the execution stops, its instance goes within a minute, row cancelled
cat > "$dir/sleepy.json" <<'JSON'
{"name": "e2e-orphan", "command": ["sleep", "120"], "hints": {"vcpu": 1, "memory_gib": 1}, "timeout_s": 600}
JSON
node statemachine/tests/run-execution.mjs "$dir/sleepy.json" e2e-cancel > "$dir/e2e-cancel.out" &
runner=$!
cancel_iid=$(wait_armed e2e-cancel)
t_cancel=$(date +%s.%N)
"$cli" cancel e2e-cancel --reason "e2e: cancelled mid-run" > "$dir/cancel.out"
wait "$runner" || true
check "spotfit cancel: ABORTED, instance terminated within a minute, row cancelled with its cost" - "$dir" "$cancel_iid" "$t_cancel" <<'PY'
import boto3, json, os, sys, time
d, iid, t0 = sys.argv[1], sys.argv[2], float(sys.argv[3])
out = json.load(open(f"{d}/e2e-cancel.out"))
assert out["status"] == "ABORTED", out
assert "cancelled run e2e-cancel" in open(f"{d}/cancel.out").read()
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"])
ddb = boto3.client("dynamodb")
key = {"run_id": {"S": "e2e-cancel"}, "attempt": {"N": "1"}}
while True:
    st = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
    rec = json.loads(ddb.get_item(TableName=os.environ["SPOTFIT_RUNS_TABLE"], Key=key)["Item"]["doc"]["S"])
    if st in ("terminated", "shutting-down") and rec["status"] == "cancelled":
        break
    assert time.time() - t0 < 60, (st, rec["status"])
    time.sleep(0.2)
took = time.time() - t0
assert rec["cost_usd"] > 0, rec
assert not ddb.query(TableName=os.environ["SPOTFIT_WAITS_TABLE"], KeyConditionExpression="run_id = :r",
                     ExpressionAttributeValues={":r": {"S": "e2e-cancel"}})["Items"], "wait left behind"
print(f"cancel → instance terminated and row cancelled in {took:.1f} s")
PY

# --- 3b. the instance vanishes and no event says so: the reaper's sweep finishes the attempt ------
cat > "$dir/vanish.json" <<'JSON'
{"name": "e2e-vanish", "command": ["sleep", "120"], "hints": {"vcpu": 1, "memory_gib": 1}, "timeout_s": 600, "retry": {"max_attempts": 1}}
JSON
node statemachine/tests/run-execution.mjs "$dir/vanish.json" e2e-vanish > "$dir/e2e-vanish.out" &
runner=$!
vanish_iid=$(wait_armed e2e-vanish)
echo "$vanish_iid" >> "$dir/events-drop"
"$PY" -c 'import boto3,os,sys; boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).terminate_instances(InstanceIds=[sys.argv[1]])' "$vanish_iid"
sleep 2
vanish_before=$("$PY" -c 'import boto3,os; print(boto3.client("stepfunctions", endpoint_url=os.environ["AWS_ENDPOINT_URL_SFN"]).describe_execution(executionArn=os.environ["SPOTFIT_STATE_MACHINE_ARN"].replace(":stateMachine:", ":execution:") + ":e2e-vanish")["status"])')
echo '{}' | invoke reap-instances > "$dir/sweep.out"
wait "$runner" || true
check "vanished without an event: still waiting until the sweep, which finishes it as lost" - "$dir" "$vanish_before" <<'PY'
import boto3, json, os, sys
d, before = sys.argv[1], sys.argv[2]
assert before == "RUNNING", f"something other than the sweep ended it: {before}"
sweep = json.load(open(f"{d}/sweep.out"))["sweep"]
assert ["e2e-vanish", 1] in sweep["completed"], sweep
out = json.load(open(f"{d}/e2e-vanish.out"))
assert out["status"] == "FAILED" and out["error"] == "RetriesExhausted", out
rec = json.loads(boto3.client("dynamodb").get_item(TableName=os.environ["SPOTFIT_RUNS_TABLE"],
    Key={"run_id": {"S": "e2e-vanish"}, "attempt": {"N": "1"}})["Item"]["doc"]["S"])
assert rec["status"] == "lost", rec
print("ok")
PY

# --- 3c. a hung attempt: its deadline ends the wait (Await times out) → Check → timed_out ---------
cat > "$dir/deadline.json" <<'JSON'
{"name": "e2e-deadline", "command": ["sleep", "300"], "hints": {"vcpu": 1, "memory_gib": 1}, "timeout_s": 5}
JSON
execute "$dir/deadline.json" e2e-deadline
check "deadline: the Await task times out at the attempt's deadline, Check says timed_out, terminated, recorded" - "$dir" <<'PY'
import boto3, json, os, sys
d = sys.argv[1]
out = json.load(open(f"{d}/e2e-deadline.out"))
assert out["status"] == "FAILED" and out["error"] == "JobTimedOut", out
e = out["entered"]
assert e[e.index("Await") + 1] == "Check" and "Terminate" in e and "Record" in e, e
assert 20_000 < out["ms"] < 90_000, out["ms"]
rec = json.loads(boto3.client("dynamodb").get_item(TableName=os.environ["SPOTFIT_RUNS_TABLE"],
    Key={"run_id": {"S": "e2e-deadline"}, "attempt": {"N": "1"}})["Item"]["doc"]["S"])
assert rec["status"] == "timed_out", rec
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"])
iid = rec["placed"]["instance_id"]
st = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
assert st in ("terminated", "shutting-down"), st
print("ok")
PY

# --- 3d. the same marker event three times (EventBridge delivers at least once): one transition ---
cat > "$dir/dup.json" <<'JSON'
{"name": "e2e-dup", "command": ["python3", "-c", "import time; time.sleep(3)"], "hints": {"vcpu": 1, "memory_gib": 1}, "timeout_s": 600}
JSON
node statemachine/tests/run-execution.mjs "$dir/dup.json" e2e-dup > "$dir/e2e-dup.out" &
runner=$!
"$PY" - <<'PY'
import boto3, datetime, json, os, shlex, subprocess, time, uuid
s3 = boto3.client("s3"); b = os.environ["SPOTFIT_BUCKET"]
for _ in range(600):
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix="runs/job=e2e-dup/").get("Contents", []) if o["Key"].endswith(".exit")]
    if keys:
        break
    time.sleep(0.05)
else:
    raise SystemExit("no marker")
for _ in range(2):
    ev = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
          "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
          "resources": [f"arn:aws:s3:::{b}"], "detail": {"version": "0", "bucket": {"name": b}, "object": {"key": keys[0], "size": 1}, "reason": "PutObject"}}
    subprocess.run(shlex.split(os.environ["SPOTFIT_PUT_EVENT"]), input=json.dumps(ev).encode(), check=True, capture_output=True)
PY
wait "$runner" || true
sleep 2
check "a marker event delivered three times: one SendTaskSuccess accepted, one TaskSucceeded, no error" - "$dir" <<'PY'
import boto3, json, os, sys
d = sys.argv[1]
out = json.load(open(f"{d}/e2e-dup.out"))
assert out["status"] == "SUCCEEDED", out
sfn = boto3.client("stepfunctions", endpoint_url=os.environ["AWS_ENDPOINT_URL_SFN"])
arn = os.environ["SPOTFIT_STATE_MACHINE_ARN"].replace(":stateMachine:", ":execution:") + ":e2e-dup"
events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
assert sum(1 for e in events if e["type"] == "TaskSucceeded") == 1, [e["type"] for e in events]
assert [e["stateEnteredEventDetails"]["name"] for e in events if e["type"] == "TaskStateEntered"].count("Await") == 1
deliveries = [json.loads(l) for l in open(f"{d}/events.log") if "e2e-dup" in l and "Object Created" in l]
assert len(deliveries) >= 3 and all(x["rc"] == 0 for x in deliveries), deliveries
actions = [json.loads(x["stdout"])["action"] for x in deliveries]
assert sum(1 for a in actions if a.get("completion") == "completed") == 1, actions
print("deliveries:", [a.get("completion") for a in actions])
PY

# --- 4. the launch handler twice with the same input: one instance ------------------------------
invoke size-job <<< "{\"spec\": $(cat "$dir/sleepy.json"), \"execution\": \"e2e-twice\"}" > "$dir/twice.in"
invoke launch-instance < "$dir/twice.in" > "$dir/twice.a"
invoke launch-instance < "$dir/twice.in" > "$dir/twice.b"
invoke terminate-instance < "$dir/twice.b" > /dev/null
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

# --- 5. check-job lost to a timeout mid-job: retried, the job completes and is recorded ----------
execute "$dir/long.json" e2e-check-timeout --timeout-once check-job:1
check "the Await's arm invocation lost to a timeout: retried with a fresh token, job succeeded and recorded" - "$dir" <<'PY'
import boto3, json, os, sys
d = sys.argv[1]
out = json.load(open(f"{d}/e2e-check-timeout.out"))
assert out["status"] == "SUCCEEDED", out
assert "Await:timed-out" in out["states"] and "CleanUp" not in out["states"], out["states"]
assert [a["status"] for a in out["output"]["history"]] == ["succeeded"], out["output"]["history"]
it = boto3.client("dynamodb").get_item(TableName=os.environ["SPOTFIT_RUNS_TABLE"], Key={"run_id": {"S": "e2e-check-timeout"}, "attempt": {"N": "1"}})["Item"]
assert json.loads(it["doc"]["S"])["status"] == "succeeded", it
print("ok")
PY

# --- 6. launch cut off after its walk started an instance: the retry finds it, no second one -----
invoke size-job <<< "{\"spec\": $(cat "$dir/long.json"), \"execution\": \"probe2\"}" > "$dir/size2.out"
read -r lfirst < <("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["candidates"][0]["instance_type"])' "$dir/size2.out")
fault POST faults "{\"instance_type\": \"$lfirst\", \"code\": \"InsufficientInstanceCapacity\", \"count\": -1}"
execute "$dir/long.json" e2e-launch-timeout --timeout-once launch-instance:1
fault DELETE faults
check "launch cut off mid-walk: the retry found the first call's instance, exactly one started" - "$dir" <<'PY'
import boto3, json, os, sys
d = sys.argv[1]
out = json.load(open(f"{d}/e2e-launch-timeout.out"))
assert out["status"] == "SUCCEEDED", out
assert out["states"][:3] == ["Size", "Launch", "Launch:timed-out"] and out["states"][3] == "Launch", out["states"]
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"])
ids = [i["InstanceId"] for r in ec2.describe_instances(Filters=[{"Name": "tag:spotfit:run-id", "Values": ["e2e-launch-timeout"]}])["Reservations"] for i in r["Instances"]]
assert ids == [out["output"]["history"][0]["instance_id"]], (ids, out["output"]["history"])
print("ok")
PY

# --- 7. EC2's limits: pool rejections and region-wide quotas --------------------------------------
# Marks left by the scenarios above would hide the pools these ones are about.
clear_capacity() {
  "$PY" -c '
import boto3, os
ddb = boto3.client("dynamodb"); t = os.environ["SPOTFIT_CAPACITY_TABLE"]
for i in ddb.scan(TableName=t)["Items"]: ddb.delete_item(TableName=t, Key={"pool": i["pool"]})'
}
clear_capacity
cat > "$dir/short.json" <<'JSON'
{"name": "e2e-short", "command": ["python3", "-c", "print('done')"], "hints": {"vcpu": 1, "memory_gib": 1}, "timeout_s": 600}
JSON
invoke size-job <<< "{\"spec\": $(cat "$dir/short.json"), \"execution\": \"probe3\"}" > "$dir/size3.out"
read -r s1 s2 s3 < <("$PY" -c 'import json,sys; c=json.load(open(sys.argv[1]))["candidates"]; print(*[x["instance_type"] for x in c[:3]])' "$dir/size3.out")
curl -sf -X DELETE "$SPOTFIT_FAULTS_URL/calls" >/dev/null
fault POST faults "{\"instance_type\": \"$s1\", \"code\": \"Unsupported\", \"count\": -1}"
fault POST faults "{\"instance_type\": \"$s2\", \"code\": \"Unsupported\", \"count\": -1}"
execute "$dir/short.json" e2e-unsupported
fault DELETE faults
check "Unsupported on the first two candidates: the third is launched, no capacity mark" - "$dir" "$s1" "$s2" "$s3" <<'PY'
import boto3, json, os, sys
d, s1, s2, s3 = sys.argv[1:5]
out = json.load(open(f"{d}/e2e-unsupported.out"))
assert out["status"] == "SUCCEEDED", out
assert out["output"]["history"][0]["pool"]["instance_type"] == s3, out["output"]["history"]
cap = [i for i in boto3.client("dynamodb").scan(TableName=os.environ["SPOTFIT_CAPACITY_TABLE"])["Items"] if not i["pool"]["S"].startswith("exposure#")]  # pool history is no mark
assert not cap, cap
print("ok")
PY

spot_od="$dir/spot-od.json"
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); j["name"]="e2e-quota-od"; j["market"]="spot-then-on-demand"; json.dump(j, open(sys.argv[2], "w"))' "$dir/short.json" "$spot_od"
curl -sf -X DELETE "$SPOTFIT_FAULTS_URL/calls" >/dev/null
fault POST faults '{"market": "spot", "code": "MaxSpotInstanceCountExceeded", "count": -1}'
execute "$spot_od" e2e-quota-od
fault DELETE faults
check "spot quota with on-demand allowed: one spot call, then on-demand; no capacity mark" - "$dir" <<'PY'
import boto3, json, os, sys, urllib.request
d = sys.argv[1]
out = json.load(open(f"{d}/e2e-quota-od.out"))
assert out["status"] == "SUCCEEDED", out
assert out["output"]["history"][0]["pool"]["market"] == "on-demand", out["output"]["history"]
calls = json.load(urllib.request.urlopen(os.environ["SPOTFIT_FAULTS_URL"] + "/calls"))
assert [c["outcome"] for c in calls] == ["MaxSpotInstanceCountExceeded", "launched"], calls
assert calls[1]["market"] == "on-demand", calls
cap = [i for i in boto3.client("dynamodb").scan(TableName=os.environ["SPOTFIT_CAPACITY_TABLE"])["Items"] if not i["pool"]["S"].startswith("exposure#")]  # pool history is no mark
assert not cap, cap
print("ok")
PY

curl -sf -X DELETE "$SPOTFIT_FAULTS_URL/calls" >/dev/null
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); j["name"]="e2e-quota-wait"; json.dump(j, open(sys.argv[2], "w"))' "$dir/short.json" "$dir/quota-wait.json"
fault POST faults '{"market": "spot", "code": "VcpuLimitExceeded", "count": 3}'
execute "$dir/quota-wait.json" e2e-quota-wait
fault DELETE faults
check "spot quota, spot only: waits for quota (backs off), launches once the fault layer lifts it after 3 calls" - "$dir" <<'PY'
import json, os, sys, urllib.request
d = sys.argv[1]
out = json.load(open(f"{d}/e2e-quota-wait.out"))
assert out["status"] == "SUCCEEDED", out
assert out["states"][:5] == ["Size", "Launch", "Launch", "Launch", "Launch"], out["states"]
calls = json.load(urllib.request.urlopen(os.environ["SPOTFIT_FAULTS_URL"] + "/calls"))
assert [c["outcome"] for c in calls] == ["VcpuLimitExceeded"] * 3 + ["launched"], calls
assert len({c["instance_type"] for c in calls[:3]}) == 1, "a quota must not walk the pools"
print("ok")
PY

# --- a scheduled run happens once per tick ----------------------------------------------------------
# The synthesized rule of scripts/tests/fixtures/e2e-jobs.json, fired by the event pump as
# EventBridge would (its input transformer applied to the "Scheduled Event"), to start-scheduled on
# its role: twice at once (a duplicate delivery), once more after the run ended, then the next tick.
check "a scheduled run happens once per tick: duplicate deliveries start nothing, the next tick runs" - "$dir" <<'PY'
import boto3, json, os, subprocess, sys, time
d = sys.argv[1]
sfn = boto3.client("stepfunctions", endpoint_url=os.environ["AWS_ENDPOINT_URL_SFN"])
arn = os.environ["SPOTFIT_STATE_MACHINE_ARN"]
def tick(at, n):
    p = subprocess.run([sys.executable, "scripts/lib/event_pump.py", "tick", d, "Jobe2etick", at, "--deliveries", str(n)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout, p.stderr)
    return [json.loads(json.loads(l)["output"]) for l in p.stdout.splitlines()]
def finished(name):
    ex = arn.replace(":stateMachine:", ":execution:") + ":" + name
    for _ in range(240):
        st = sfn.describe_execution(executionArn=ex)["status"]
        if st != "RUNNING":
            return st
        time.sleep(0.5)
    raise AssertionError(f"{name} still running")
ours = lambda: sorted(e["name"] for e in sfn.list_executions(stateMachineArn=arn)["executions"] if e["name"].endswith("-e2e-tick"))
first = tick("2026-12-03T02:00:00Z", 2)
run1 = "20261203T020000Z-e2e-tick"
assert [r["run_id"] for r in first] == [run1, run1] and all(r["action"] == "started" for r in first), first
assert first[0]["execution_arn"] == first[1]["execution_arn"], first
assert ours() == [run1], ours()
assert finished(run1) == "SUCCEEDED"
late = tick("2026-12-03T02:00:00Z", 1)
assert late[0]["action"] == "already_ran", late
nxt = tick("2026-12-03T03:00:00Z", 1)
run2 = "20261203T030000Z-e2e-tick"
assert nxt[0]["run_id"] == run2 and nxt[0]["action"] == "started", nxt
assert finished(run2) == "SUCCEEDED"
assert ours() == [run1, run2], ours()
ddb = boto3.client("dynamodb")
for run in (run1, run2):
    rows = ddb.query(TableName=os.environ["SPOTFIT_RUNS_TABLE"], KeyConditionExpression="run_id = :r",
                     ExpressionAttributeValues={":r": {"S": run}})["Items"]
    recs = [json.loads(r["doc"]["S"]) for r in rows]
    assert [(r["attempt"], r["status"]) for r in recs] == [(1, "succeeded")], recs
print(f"executions: {ours()}; the duplicate deliveries answered started (same execution) and already_ran")
PY

# --- the deployment guide's first job, as infra/README.md gives it ----------------------------------
# `spotfit submit examples/quick-python.json --state-machine "$SM" --wait` (the operator's own
# credentials: here the set-up's), against the local Step Functions service.
# As infra/README says it: the stack by name, no ARN typed in (and none in the environment).
rc=0; env -u SPOTFIT_STATE_MACHINE_ARN "$cli" --stack spotfit-e2e submit examples/quick-python.json --wait --poll 0.5 > "$dir/submit.out" 2>&1 || rc=$?
check "infra/README's first job: spotfit --stack NAME submit examples/quick-python.json --wait exits 0, SUCCEEDED, one attempt costed, recorded" - "$dir/submit.out" "$rc" <<'PY'
import boto3, json, os, re, sys
out, rc = open(sys.argv[1]).read(), int(sys.argv[2])
assert rc == 0, (rc, out)
m = re.search(r"^submitted quick-python as run (\S+)$", out, re.M)
assert m, out
run = m.group(1)
assert re.search(r"^SUCCEEDED$", out, re.M), out
assert re.search(r"^  attempt 1 succeeded on \S+ \$\d+\.\d{4}$", out, re.M), out
for state in ("Size", "Launch", "Await", "Terminate", "Record"):
    assert re.search(rf"^  \d\d:\d\d:\d\d {state}$", out, re.M), (state, out)
ddb = boto3.client("dynamodb")
it = ddb.get_item(TableName=os.environ["SPOTFIT_RUNS_TABLE"], Key={"run_id": {"S": run}, "attempt": {"N": "1"}})["Item"]
rec = json.loads(it["doc"]["S"])
assert rec["status"] == "succeeded" and rec["cost_usd"] > 0, rec
print(f"run {run}: " + " → ".join(re.findall(r"^  \d\d:\d\d:\d\d (\S+)$", out, re.M)))
PY

# --- how soon the end was noticed, and what an attempt cost the control plane ----------------------
check "the end is noticed ≤ 5 s (p95) after the exit marker lands; ≤ 15 transitions per attempt" - "$dir" <<'PY'
import boto3, datetime, json, os, sys
d = sys.argv[1]
s3 = boto3.client("s3"); b = os.environ["SPOTFIT_BUCKET"]
sfn = boto3.client("stepfunctions", endpoint_url=os.environ["AWS_ENDPOINT_URL_SFN"])
lat, per_attempt = [], []
for ex in sfn.list_executions(stateMachineArn=os.environ["SPOTFIT_STATE_MACHINE_ARN"])["executions"]:
    events = sfn.get_execution_history(executionArn=ex["executionArn"], maxResults=1000)["events"]
    done = [e["timestamp"] for e in events if e["type"] == "TaskSucceeded"]
    name = ex["name"]
    markers = [o for o in s3.list_objects_v2(Bucket=b, Prefix="runs/").get("Contents", [])
               if o["Key"].endswith(f"/{name}.exit") or f"/{name}-a" in o["Key"] and o["Key"].endswith(".exit")]
    for m in markers:
        landed = m["LastModified"].timestamp()
        after = [t.timestamp() for t in done if t.timestamp() >= landed - 1]
        if after:
            lat.append(min(after) - landed)
    attempts = sum(1 for e in events if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "Launch")
    if ex["status"] == "SUCCEEDED" and attempts:
        trans = sum(1 for e in events if e["type"].endswith("StateEntered"))
        per_attempt.append(trans / attempts)
lat.sort()
assert len(lat) >= 4, lat
p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
print(f"marker → end noticed: n={len(lat)} p50={lat[len(lat)//2]:.2f} s p95={p95:.2f} s max={lat[-1]:.2f} s (S3 LastModified has 1 s resolution)")
print(f"states entered per attempt (succeeded executions): max {max(per_attempt):.1f}")
assert p95 <= 5.0, lat
assert max(per_attempt) <= 15, per_attempt
PY

# --- live spot prices: the refresher, ranking per AZ, a stale overlay, a failed refresh, the bill ---
# The fault layer serves a seeded market for DescribeSpotPriceHistory (moto's is one fake row per
# pool): every us-east-1 type of the catalog in us-east-1a/b/c (use1-az6/az1/az2 in moto) at its
# snapshot price, but the probe job's first pick on the snapshot ($pfirst) at a factor per zone.
# The deployment's subnets are in use1-az6 and use1-az1.
invoke size-job <<< "{\"spec\": $(cat "$dir/job.json"), \"execution\": \"probe-snapshot\"}" > "$dir/size-snap.out"
pfirst=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["candidates"][0]["instance_type"])' "$dir/size-snap.out")
spot_market() { # FACTOR_AZ6 FACTOR_AZ1 [CHANGE_AT_EPOCH_S]: seed the market
  "$PY" - "$pfirst" "$@" <<'PY'
import json, os, sys, time, urllib.request
from datetime import datetime, timezone
first, f6, f1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
change = float(sys.argv[4]) if len(sys.argv) > 4 else None
cat = json.load(open("data/catalog/catalog.json"))
r = cat["regions"].index("us-east-1")
iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")
then = time.time() - 3 * 3600
rows = []
for t, reg, od, spot, *_ in cat["offers"]:
    if reg != r or spot is None:
        continue
    name = cat["types"][t][0]
    for az, az_id, f in (("us-east-1a", "use1-az6", f6), ("us-east-1b", "use1-az1", f1), ("us-east-1c", "use1-az2", 0.8)):
        f = f if name == first else 1.0
        rows.append({"instance_type": name, "az": az, "az_id": az_id, "price": round(spot * f, 6), "at": iso(then)})
        if change is not None:  # every pool doubles at CHANGE: whichever pool a run gets, its price moves
            rows.append({"instance_type": name, "az": az, "az_id": az_id, "price": round(spot * f * 2, 6), "at": iso(change)})
req = urllib.request.Request(os.environ["SPOTFIT_FAULTS_URL"] + "/spot-prices", data=json.dumps({"prices": rows}).encode(),
                             headers={"Content-Type": "application/json"}, method="POST")
print(json.load(urllib.request.urlopen(req))["rows"], "rows seeded", file=sys.stderr)
PY
}
# moto has no Pricing API: the refresher's on-demand read goes to a stand-in serving GetProducts'
# documented shape (scripts/lib/pricing_standin.py) at the snapshot's us-east-1 list prices × 0.9.
"$PY" -c 'import json; c=json.load(open("data/catalog/catalog.json")); r=c["regions"].index("us-east-1"); json.dump({c["types"][o[0]][0]: round(o[2]*0.9, 6) for o in c["offers"] if o[1]==r and o[2]}, open("'"$dir"'/od-prices.json","w"))'
pricing_port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$PY" scripts/lib/pricing_standin.py "$dir/od-prices.json" "$pricing_port" "$dir/pricing.log" &
pricing_pid=$!
export AWS_ENDPOINT_URL_PRICING="http://127.0.0.1:$pricing_port"
sleep 0.5
overlay_sum() { "$PY" -c 'import boto3,os,hashlib; b=boto3.client("s3").get_object(Bucket=os.environ["SPOTFIT_BUCKET"],Key="prices/us-east-1/spot.json")["Body"].read(); print(hashlib.sha256(b).hexdigest()[:16], len(b))'; }
spot_market 0.9 0.45
fault DELETE spot-price-calls
rc=0; invoke refresh-prices <<< '{}' > "$dir/refresh1.out" 2> "$dir/refresh1.err" || rc=$?
curl -sf "$SPOTFIT_FAULTS_URL/spot-price-calls" > "$dir/refresh1.calls"
invoke size-job <<< "{\"spec\": $(cat "$dir/job.json"), \"execution\": \"probe-live\"}" > "$dir/size-live.out"
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); j["market"]="on-demand"; print(json.dumps({"spec": j, "execution": "probe-od"}))' "$dir/job.json" | invoke size-job > "$dir/size-od.out"
check "refresh-prices writes the overlay for the full type list (its role, the seeded market); the cheaper AZ of a type ranks first, live" - "$dir" "$pfirst" "$rc" <<'PY'
import boto3, json, os, sys
d, first, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = json.load(open(f"{d}/refresh1.out"))
assert rc == 0 and out["written"], (rc, out, open(f"{d}/refresh1.err").read())
calls = json.load(open(f"{d}/refresh1.calls"))
body = boto3.client("s3").get_object(Bucket=os.environ["SPOTFIT_BUCKET"], Key="prices/us-east-1/spot.json")["Body"].read()
o = json.loads(body)
assert o["region"] == "us-east-1" and set(o["spot"][first]) == {"use1-az6", "use1-az1", "use1-az2"}, o["spot"].get(first)
assert out["quotes"] == calls["rows"] == 3 * out["types"], (out, calls)
c = json.load(open(f"{d}/size-live.out"))["candidates"]
top = c[0]
assert (top["instance_type"], top["az"], top.get("price_source")) == (first, "use1-az1", "live"), top
assert abs(top["price_per_hour"] - o["spot"][first]["use1-az1"]) < 1e-9, top
nxt = c[1]
assert (nxt["instance_type"], nxt["az"]) == (first, "use1-az6") and nxt["price_per_hour"] > top["price_per_hour"], nxt
assert not any(x.get("az") == "use1-az2" for x in c), "use1-az2 has no subnet: never a candidate"
# the on-demand list prices, read from the Pricing API (the stand-in) on the first refresh
od = json.load(open(f"{d}/od-prices.json"))
assert out["on_demand"] == len(o["on_demand"]) > 300 and all(abs(o["on_demand"][t] - od[t]) < 1e-9 for t in o["on_demand"]), out
odc = json.load(open(f"{d}/size-od.out"))["candidates"][0]
assert odc["market"] == "on-demand" and odc.get("price_source") == "live" and abs(odc["price_per_hour"] - od[odc["instance_type"]]) < 1e-9, odc
pages = [json.loads(l) for l in open(f"{d}/pricing.log")]
print(f"refresh: {out['types']} types, {out['quotes']} quotes, {calls['calls']} DescribeSpotPriceHistory calls, "
      f"{out['on_demand']} on-demand prices in {len(pages)} GetProducts pages, "
      f"{out['elapsed_ms']} ms; overlay {len(body)} bytes; {first}: use1-az1 ${top['price_per_hour']:.4f} before use1-az6 ${nxt['price_per_hour']:.4f}")
PY

# The cold-start cost of the overlay: size-job as a fresh process (cold, as a new Lambda sandbox
# is), five times with the overlay in the bucket and five times without.
cold_size() { for _ in 1 2 3 4 5; do s=$(date +%s%N); invoke size-job <<< "{\"spec\": $(cat "$dir/job.json")}" >/dev/null; echo $(( ($(date +%s%N) - s) / 1000000 )); done; }
cold_size > "$dir/cold-live.ms"
"$PY" -c 'import boto3,os; s3=boto3.client("s3"); b=os.environ["SPOTFIT_BUCKET"]; s3.copy_object(Bucket=b,Key="prices-kept/spot.json",CopySource={"Bucket":b,"Key":"prices/us-east-1/spot.json"}); s3.delete_object(Bucket=b,Key="prices/us-east-1/spot.json")'
cold_size > "$dir/cold-snapshot.ms"
"$PY" -c 'import boto3,os; s3=boto3.client("s3"); b=os.environ["SPOTFIT_BUCKET"]; s3.copy_object(Bucket=b,Key="prices/us-east-1/spot.json",CopySource={"Bucket":b,"Key":"prices-kept/spot.json"})'
check "cold-start cost of the overlay in size-job (a fresh process per call; medians of 5)" - "$dir" <<'PY'
import statistics, sys
d = sys.argv[1]
live = [int(x) for x in open(f"{d}/cold-live.ms").read().split()]
snap = [int(x) for x in open(f"{d}/cold-snapshot.ms").read().split()]
print(f"size-job cold: {statistics.median(live)} ms with the overlay, {statistics.median(snap)} ms without "
      f"(+{statistics.median(live) - statistics.median(snap)} ms; debug build, process start and STS credentials included)")
assert statistics.median(live) - statistics.median(snap) < 500, (live, snap)
PY

spot_market 0.3 0.9
invoke refresh-prices <<< '{}' > "$dir/refresh2.out"
invoke size-job <<< "{\"spec\": $(cat "$dir/job.json"), \"execution\": \"probe-live2\"}" > "$dir/size-live2.out"
check "a refreshed overlay changes the next ranking without a redeploy (use1-az6 now the cheaper)" - "$dir" "$pfirst" <<'PY'
import json, sys
d, first = sys.argv[1:3]
top = json.load(open(f"{d}/size-live2.out"))["candidates"][0]
assert (top["instance_type"], top["az"], top.get("price_source")) == (first, "use1-az6", "live"), top
print(f"{first}: use1-az6 ${top['price_per_hour']:.4f} first")
PY

# A failed refresh keeps the overlay: throttled past the SDK's retries, a listing cut after its first
# page (InternalError on every later page), and — the retries' job — two throttles then an answer.
before=$(overlay_sum)
fault POST spot-price-faults '{"throttle": 100}'
rc1=0; invoke refresh-prices <<< '{}' > "$dir/refresh-throttled.out" 2>/dev/null || rc1=$?
after1=$(overlay_sum)
spot_market 0.3 0.9
fault POST spot-price-faults '{"fail_after_pages": 1, "code": "InternalError", "count": -1}'
rc2=0; invoke refresh-prices <<< '{}' > "$dir/refresh-cut.out" 2>/dev/null || rc2=$?
after2=$(overlay_sum)
fault POST spot-price-faults '{"throttle": 2}'
rc3=0; invoke refresh-prices <<< '{}' > "$dir/refresh-retried.out" 2>/dev/null || rc3=$?
fault DELETE spot-price-faults
check "throttled and truncated refreshes fail and keep the previous overlay; two throttles are retried through" - "$dir" "$before" "$after1" "$after2" "$rc1" "$rc2" "$rc3" <<'PY'
import json, sys
d, before, a1, a2 = sys.argv[1:5]
rc1, rc2, rc3 = map(int, sys.argv[5:8])
t = json.load(open(f"{d}/refresh-throttled.out")); c = json.load(open(f"{d}/refresh-cut.out"))
assert rc1 == 1 and t["errorType"] == "Throttled", t
assert rc2 == 1 and c["errorType"] == "ServiceUnavailable", c
assert before == a1 == a2, (before, a1, a2)
r = json.load(open(f"{d}/refresh-retried.out"))
assert rc3 == 0 and r["written"], r
print(f"throttled: {t['errorMessage'][:90]}; cut: {c['errorMessage'][:90]}; overlay kept ({before})")
PY

# Stale: the overlay rewritten as of 7 h ago (the bound is 6 h) → the snapshot ranks, with a warning.
"$PY" -c 'import boto3,os,json,time; s3=boto3.client("s3"); b=os.environ["SPOTFIT_BUCKET"]; k="prices/us-east-1/spot.json"; o=json.loads(s3.get_object(Bucket=b,Key=k)["Body"].read()); o["fetched_at_ms"]=int((time.time()-7*3600)*1000); s3.put_object(Bucket=b,Key=k,Body=json.dumps(o).encode())'
invoke size-job <<< "{\"spec\": $(cat "$dir/job.json"), \"execution\": \"probe-stale\"}" > "$dir/size-stale.out" 2> "$dir/size-stale.err"
check "a stale overlay is ignored with a logged warning: the snapshot's ranking again" - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
live = json.load(open(f"{d}/size-live.out"))["candidates"]
stale = json.load(open(f"{d}/size-stale.out"))["candidates"]
snap = json.load(open(f"{d}/size-snap.out"))["candidates"]
assert all("price_source" not in c for c in stale), stale[0]
assert [(c["instance_type"], c["price_per_hour"]) for c in stale] == [(c["instance_type"], c["price_per_hour"]) for c in snap]
err = open(f"{d}/size-stale.err").read()
assert "WARN" in err and "spot prices: not live" in err and "older than the 360 min bound" in err, err
print(err.strip().splitlines()[-1][:200])
PY

# The bill: a spot run of ~20 s with every pool's price doubling 3 s after its launch; its row's cost
# against the hand-computed figure from its launch and termination times and the seeded prices.
cat > "$dir/billed.json" <<'JSON'
{"name": "e2e-billed", "command": ["python3", "-c", "import time; time.sleep(20)"], "hints": {"vcpu": 1, "memory_gib": 1}, "timeout_s": 600, "market": "spot"}
JSON
# The change is seeded once the attempt is armed (launched), 3 s on: a change set before the
# launch could fall before it on a slow machine (seen: refresh and launch took over 10 s).
spot_market 0.9 0.45
invoke refresh-prices <<< '{}' > /dev/null
node statemachine/tests/run-execution.mjs "$dir/billed.json" e2e-billed > "$dir/e2e-billed.out" &
runner=$!
wait_armed e2e-billed > /dev/null
spot_market 0.9 0.45 "$(( $(date +%s) + 3 ))"
wait "$runner" || true
head -c 400 "$dir/e2e-billed.out"; echo
check "a run's recorded cost is the hand-computed bill: its lifetime at the seeded prices, the change mid-run, the volume, billed" - "$dir" <<'PY'
import boto3, json, os, sys
from datetime import datetime, timezone
d = sys.argv[1]
out = json.load(open(f"{d}/e2e-billed.out"))
assert out["status"] == "SUCCEEDED", out
inst = out["output"]["instance"]
t0, t1 = inst["launched_at_ms"], inst["terminated_at_ms"]
pool = inst["pool"]
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"])
# the seeded history of the pool, as the fault layer holds it (read back through EC2's API)
hist = ec2.describe_spot_price_history(InstanceTypes=[pool["instance_type"]], AvailabilityZone="us-east-1a" if pool["az"] == "use1-az6" else "us-east-1b",
                                       StartTime=datetime.fromtimestamp(t0 / 1000, timezone.utc), EndTime=datetime.fromtimestamp(t1 / 1000, timezone.utc), ProductDescriptions=["Linux/UNIX"])["SpotPriceHistory"]
pts = sorted((int(h["Timestamp"].timestamp() * 1000), float(h["SpotPrice"])) for h in hist)
assert len(pts) == 2 and t0 < pts[1][0] < t1, ("the change must fall mid-run", t0, t1, pts)
(_, p0), (tc, p1) = pts
secs = (t1 - t0) / 1000
want = p0 * (tc - t0) / 3.6e6 + p1 * (t1 - tc) / 3.6e6 + p0 * max(0, 60 - secs) / 3600
want += inst.get("storage_per_hour", 0) * max(60, secs) / 3600
row = boto3.client("dynamodb").get_item(TableName=os.environ["SPOTFIT_RUNS_TABLE"], Key={"run_id": {"S": "e2e-billed"}, "attempt": {"N": "1"}})["Item"]
rec = json.loads(row["doc"]["S"])
assert rec["cost_basis"] == "billed", rec
assert abs(rec["cost_usd"] - want) < 1e-9, (rec["cost_usd"], want)
# AND its instance time joined its pool's history (the learned interruption rate's data)
items = boto3.client("dynamodb").scan(TableName=os.environ["SPOTFIT_CAPACITY_TABLE"])["Items"]
mine = [i for i in items if i["pool"]["S"].startswith("exposure#") and "e2e-billed#1" in i.get("counted", {}).get("SS", [])]
assert len(mine) == 1 and mine[0]["az"]["S"] == pool["az"], mine
assert float(mine[0]["hours"]["N"]) >= secs / 3600 - 1e-9, mine
print(f"{pool['instance_type']} in {pool['az']}: {secs:.1f} s, ${p0} then ${p1} from {(tc - t0) / 1000:.1f} s in → "
      f"${rec['cost_usd']:.8f} billed (= hand-computed ${want:.8f}; ranked at ${inst['price_per_hour']}/h)")
PY
fault DELETE spot-prices
kill "$pricing_pid" 2>/dev/null || true

# --- the CLI on the deployment: `--stack NAME` (runs, status, profile, logs, report; submit above) --
# The stack (spotfit-e2e, created at the start) is found by name in the emulator's CloudFormation.
# The report is opened in headless Chromium and checked against the samples the bucket
# holds (read here with boto3, not through spotfit).
ensure_apt chromium
ensure_npm scripts/report-check
"$PY" - "$dir/ddb-runs.json" <<'PY'
import boto3, json, os, sys
ddb = boto3.client("dynamodb")
docs = []
for page in ddb.get_paginator("scan").paginate(TableName=os.environ["SPOTFIT_RUNS_TABLE"]):
    docs += [json.loads(i["doc"]["S"]) for i in page["Items"]]
json.dump(docs, open(sys.argv[1], "w"))
PY
rc=0; "$cli" --stack spotfit-e2e runs --json --limit 0 > "$dir/stack-runs.json" 2> "$dir/stack-runs.err" || rc=$?
rc_t=0; "$cli" --stack spotfit-e2e runs e2e-etl > "$dir/stack-runs.txt" 2>&1 || rc_t=$?
check "spotfit --stack NAME runs: every end-to-end attempt, with its cost, read through the stack's outputs" - "$dir" "$rc" "$rc_t" <<'PY'
import json, sys
d, rc, rc_t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
assert rc == 0 and rc_t == 0, open(f"{d}/stack-runs.err").read() + open(f"{d}/stack-runs.txt").read()
got = {(r["run_id"], r["attempt"]): r["cost_usd"] for r in json.load(open(f"{d}/stack-runs.json"))}
want = {(r["run_id"], r["attempt"]): r["cost_usd"] for r in json.load(open(f"{d}/ddb-runs.json"))}
assert got == want, (sorted(set(got) ^ set(want)), len(got), len(want))
assert any(c > 0 for c in got.values())
txt = open(f"{d}/stack-runs.txt").read()
assert "e2e-fallback" in txt and "$" in txt, txt
print(f"{len(got)} attempts, ${sum(got.values()):.6f} in all")
PY
rc_s=0; "$cli" --stack spotfit-e2e status e2e-interrupt --json > "$dir/status.json" 2> "$dir/status.err" || rc_s=$?
rc_c=0; "$cli" --stack spotfit-e2e status e2e-cancel > "$dir/status-cancel.txt" 2>&1 || rc_c=$?
rc_n=0; "$cli" --stack spotfit-e2e status no-such-run > "$dir/status-none.txt" 2>&1 || rc_n=$?
check "spotfit --stack NAME status: the execution's state, both attempts of the interrupted run, its last sample; exit 0 / 1 / 2" - "$dir" "$rc_s" "$rc_c" "$rc_n" <<'PY'
import json, sys
d, rc_s, rc_c, rc_n = sys.argv[1], *map(int, sys.argv[2:5])
assert rc_s == 0, (rc_s, open(f"{d}/status.err").read())
st = json.load(open(f"{d}/status.json"))
assert st["execution"]["status"] == "SUCCEEDED", st["execution"]
assert [a["status"] for a in st["attempts"]] == ["interrupted", "succeeded"], [a["status"] for a in st["attempts"]]
assert st["last_sample"] and st["last_sample"]["run_id"] == "e2e-interrupt-a2", st["last_sample"]
cancel = open(f"{d}/status-cancel.txt").read()
assert rc_c == 1 and "execution ABORTED" in cancel and "cancelled" in cancel, (rc_c, cancel)
assert rc_n == 2 and "no run no-such-run" in open(f"{d}/status-none.txt").read(), rc_n
print(cancel.splitlines()[0])
PY
rc_p=0; "$cli" --stack spotfit-e2e profile e2e-etl --json > "$dir/stack-profile.json" 2> "$dir/stack-profile.err" || rc_p=$?
rc_l=0; "$cli" --stack spotfit-e2e logs e2e-fallback > "$dir/stack-logs.out" 2>&1 || rc_l=$?
check "spotfit --stack NAME profile and logs: the job's profile from the profiles table, the run's stdout from the bucket" - "$dir" "$rc_p" "$rc_l" <<'PY'
import json, sys
d, rc_p, rc_l = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
assert rc_p == 0, open(f"{d}/stack-profile.err").read()
p = json.load(open(f"{d}/stack-profile.json"))["profile"]
assert p["job"] == "e2e-etl" and p["runs"] >= 1 and p["succeeded"] >= 1, p
logs = open(f"{d}/stack-logs.out").read()
assert rc_l == 0 and "its done: $(not run)" in logs, (rc_l, logs)  # the job's print: 'it''s' is Python's 'its'
print(f"profile: {p['runs']} runs; logs: {logs.strip()!r}")
PY
rc=0; "$cli" --stack spotfit-e2e report --charts-per-job 3 -o "$dir/report.html" 2> "$dir/report.err" || rc=$?
"$PY" scripts/lib/report_expect.py --runs "$dir/ddb-runs.json" --bucket "$SPOTFIT_BUCKET" --per-job 3 > "$dir/report-expect.json"
mkdir -p target/report-test
check "spotfit --stack NAME report: every attempt in the ledger, each charted attempt's samples drawn, no console error in Chromium" - "$dir" "$rc" <<'PY'
import json, subprocess, sys
d, rc = sys.argv[1], int(sys.argv[2])
assert rc == 0, open(f"{d}/report.err").read()
runs = json.load(open(f"{d}/ddb-runs.json"))
page = open(f"{d}/report.html").read()
for r in runs:
    assert f'data-run="{r["run_id"]}" data-attempt="{r["attempt"]}"' in page, (r["run_id"], r["attempt"])
assert 'data-job="e2e-etl"' in page and "stack spotfit-e2e" in page
out = subprocess.run(["node", "scripts/report-check/check.mjs", f"{d}/report.html", f"{d}/report-expect.json",
                      "--shot", "target/report-test/e2e-etl.png", "--shot-job", "e2e-etl"], capture_output=True, text=True)
assert out.returncode == 0, out.stdout + out.stderr
exp = json.load(open(f"{d}/report-expect.json"))
print(f"{len(runs)} attempts of {len(exp['attempts'])} jobs; {len(exp['charted'])} charted, "
      f"{sum(exp['samples'][k] for k in exp['charted'])} samples drawn; checker: {out.stdout.strip()}")
PY

# --- every component ran within its role -----------------------------------------------------------
check "no IAM denial in any scenario above" - <<'PY'
import os
den = open(os.environ["SPOTFIT_IAM_DENIALS"]).read().strip()
assert not den, den
PY

# --- nothing left running -------------------------------------------------------------------------
sleep 1
check "no instance left running in the emulator" - <<'PY'
import boto3, os
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"])
left = [(i["InstanceId"], i["State"]["Name"]) for r in ec2.describe_instances()["Reservations"] for i in r["Instances"] if i["State"]["Name"] not in ("terminated", "shutting-down")]
assert not left, left
PY
# --- negative control: one statement less in one role, in a fresh emulator -> the run fails -------
neg="$dir/negative"; mkdir -p "$neg"
(
  scripts/local-stack start "$neg" >/dev/null
  scripts/local-stack seed "$neg" >/dev/null
  # shellcheck disable=SC1091
  source "$neg/env"
  # The same template; its subnets differ from this emulator's, which moto's action-level EC2
  # evaluation does not see (the static check above covers resource ARNs).
  "$PY" -c 'import boto3,os,sys; boto3.client("s3").upload_file(sys.argv[1], os.environ["SPOTFIT_BUCKET"], os.environ["SPOTFIT_AGENT_KEY"])' "$agent"
  # Describe (ec2:DescribeInstances): an action no other statement of check-job grants. (Dropping
  # HeartbeatRunRow would go unseen here: moto evaluates DynamoDB by action only, and check-job may
  # PutItem on the capacity table; the node tests pin that grant to the runs table.)
  scripts/local-stack iam "$neg" "$TEMPLATE" --drop check-job:Describe >/dev/null
  # A private Step Functions service for this run (run-execution starts one when no endpoint is set),
  # serving the handlers on this emulator's roles.
  unset AWS_ENDPOINT_URL_SFN
  SPOTFIT_ROLES_DIR="$neg/roles" node statemachine/tests/run-execution.mjs "$dir/sleepy.json" e2e-negative > "$neg/run.out"
  cp "$SPOTFIT_IAM_DENIALS" "$neg/denials.log"
  scripts/local-stack stop "$neg"
)
check "negative control: without check-job's Describe statement the run fails, naming ec2:DescribeInstances and the role" - "$neg" <<'PY'
import json, sys
d = sys.argv[1]
out = json.load(open(f"{d}/run.out"))
assert out["status"] == "FAILED", out
den = [l for l in open(f"{d}/denials.log").read().splitlines() if l]
assert den, "no denial logged"
assert all(l.split()[1] == "ec2:DescribeInstances" and "/CheckJobServiceRole" in l.split()[2] for l in den), den
print("denied:", den[0]); print("execution:", out["error"], out["cause"][:300])
PY
cat "$dir/check.out"

echo "fallback execution: $(echo "$t1 - $t0" | bc) s; whole e2e script: $(( $(date +%s) - t_start )) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
