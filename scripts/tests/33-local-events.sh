#!/usr/bin/env bash
# The local stack's EventBridge (docs/callback.md, "Local emulator"): the stack's event rules
# (scripts/tests/fixtures/events-template.json until the CDK change lands) created in moto by
# `scripts/local-stack events`, delivered by the event pump (scripts/lib/event_pump.py) to a stub
# function (scripts/tests/fixtures/stub-invoke.py, which records what it gets and fails on demand)
# on the function role's credentials (`scripts/local-stack iam` of the same template, enforced).
# Checks: the pattern semantics (unit tests, and moto's matcher against AWS's on the stack's
# patterns); S3 exit markers, EC2 state changes, spot warnings (through the instance stand-in) and
# Step Functions status changes reach job-events, and only those the patterns select; an instance
# in events-drop produces none; a failed delivery is retried, and one that fails every time ends in
# the dead-letter file. Needs no cargo build. Prints "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
ensure_py "moto[server]==5.2.5" boto3 >/dev/null
PY="$TOOLS/venv/bin/python"
TEMPLATE="$PWD/scripts/tests/fixtures/events-template.json"

dir=$(mktemp -d)
standin_pid=""
cleanup() {
  [ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null && wait "$standin_pid" 2>/dev/null || true
  scripts/local-stack stop "$dir"
  [ -n "${KEEP_EVENTS:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT

passed=0; failed=0
check() { # NAME ARGS…: a python assertion script (stdin or file) with ARGS; counts ok/FAIL
  local name="$1"; shift
  if "$PY" "$@" >"$dir/check.out" 2>&1; then passed=$((passed+1)); echo "ok   $name"; sed 's/^/     /' "$dir/check.out" | grep -v '^     ok$' || true
  else failed=$((failed+1)); echo "FAIL $name"; cat "$dir/check.out"; fi
}

check "pattern validation and matching (unit tests; moto's matcher agrees with AWS's on the stack's patterns)" scripts/lib/event_pump.py selftest

scripts/local-stack start "$dir" >/dev/null
scripts/local-stack seed "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
scripts/local-stack iam "$dir" "$TEMPLATE" >/dev/null
scripts/local-stack events "$dir" "$TEMPLATE" >/dev/null
export STUB_INVOKE_LOG="$dir/stub.log" STUB_INVOKE_FAIL="$dir/stub-fail"
: > "$STUB_INVOKE_LOG"; : > "$STUB_INVOKE_FAIL"
export SPOTFIT_LOCAL_INVOKE="$PWD/scripts/tests/fixtures/stub-invoke.py"
scripts/local-stack pump "$dir" >/dev/null

# Helpers for the checks: wait for the stub to have been given events, and what it got.
cat > "$dir/lib.py" <<'PY'
import json, os, time
import boto3
D = os.environ["EVDIR"]
def got():
    with open(os.environ["STUB_INVOKE_LOG"]) as f:
        return [json.loads(l) for l in f if l.strip()]
def wait_for(pred, timeout=5.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        hits = [g for g in got() if pred(g)]
        if hits:
            return hits, time.time() - t0
        time.sleep(0.02)
    return [], timeout
def log():
    p = os.path.join(D, "events.log")
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
def role_key(comp):
    words = open(os.path.join(D, "roles", f"{comp}.env")).read().replace("export ", " ").split()
    return dict(w.split("=", 1) for w in words)["AWS_ACCESS_KEY_ID"]
def put_object(key, body=b"0"):
    boto3.client("s3").put_object(Bucket=os.environ["SPOTFIT_BUCKET"], Key=key, Body=body)
def key_of(g):
    return g["event"].get("detail", {}).get("object", {}).get("key")
PY
export EVDIR="$dir" PYTHONPATH="$dir"

check "events: the four pattern rules in moto with resolved patterns, one queue for job-events, S3 → EventBridge on" - <<'PY'
import json, os, boto3
cfg = json.load(open(os.path.join(os.environ["EVDIR"], "events.json")))
assert sorted(cfg["components"]) == ["job-events"], cfg["components"]
assert cfg["components"]["job-events"]["deliveries"] == 3, cfg["components"]
assert cfg["skipped"] == [{"rule": "ReaperSchedule02258773", "why": "schedule"}], cfg["skipped"]
ev = boto3.client("events")
moto_rules = {r["Name"]: json.loads(r["EventPattern"]) for r in ev.list_rules()["Rules"]}
assert moto_rules == {r["name"]: r["pattern"] for r in cfg["rules"]}, moto_rules
flat = json.dumps(moto_rules)
assert os.environ["SPOTFIT_BUCKET"] in flat and "arn:aws:states:us-east-1:123456789012:stateMachine:spotfit" in flat and "Ref" not in flat, flat
for name in moto_rules:
    t = ev.list_targets_by_rule(Rule=name)["Targets"]
    assert [x["Arn"].split(":")[-1] for x in t] == ["spotfit-local-events-job-events"], t
# moto's GetBucketNotificationConfiguration leaves EventBridgeConfiguration out; (a) shows it is on.
assert cfg["s3_eventbridge"] is True, cfg
PY

check "events: set-up refuses what AWS would not deliver (a pattern PutRule refuses, S3 rules without the bucket's EventBridge, no invoke permission)" - "$TEMPLATE" <<'PY'
import copy, json, os, subprocess, sys, tempfile
base = json.load(open(sys.argv[1]))
def refused(change, want):
    t = copy.deepcopy(base)
    change(t["Resources"])
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(t, f)
    p = subprocess.run([sys.executable, "scripts/lib/event_pump.py", "setup", os.environ["EVDIR"], f.name], capture_output=True, text=True)
    assert p.returncode != 0 and all(w in p.stderr for w in want), (want, p.returncode, p.stderr)
    print(p.stderr.strip())
def two_ops(r):
    r["ExitMarkers3C1F0A77"]["Properties"]["EventPattern"]["detail"]["object"]["key"] = [{"prefix": "runs/", "suffix": ".exit"}]
refused(two_ops, ["ExitMarkers3C1F0A77", "one operator per object"])
refused(lambda r: r.pop("DataNotifications5D9B2A4C"), ["ExitMarkers3C1F0A77", "EventBridge notifications"])
refused(lambda r: r.pop("ExecutionsEndedAllowEventRuleSpotfitJobEvents"), ["ExecutionsEndedD4E5F6A7", "Lambda::Permission"])
def other_ref(r):
    r["ExecutionsEndedD4E5F6A7"]["Properties"]["EventPattern"]["detail"]["stateMachineArn"] = [{"Ref": "EventsDeadLetters49D856A5"}]
refused(other_ref, ["ExecutionsEndedD4E5F6A7", "cannot resolve"])
PY

check "seed: the waits table (run_id S, attempt N; TTL expires_at), in iam-names.json as Waits" - <<'PY'
import json, os, boto3
ddb = boto3.client("dynamodb")
t = ddb.describe_table(TableName=os.environ["SPOTFIT_WAITS_TABLE"])["Table"]
assert os.environ["SPOTFIT_WAITS_TABLE"] == "spotfit-waits", os.environ["SPOTFIT_WAITS_TABLE"]
assert [(k["AttributeName"], k["KeyType"]) for k in t["KeySchema"]] == [("run_id", "HASH"), ("attempt", "RANGE")], t["KeySchema"]
assert {a["AttributeName"]: a["AttributeType"] for a in t["AttributeDefinitions"]} == {"run_id": "S", "attempt": "N"}, t
ttl = ddb.describe_time_to_live(TableName=os.environ["SPOTFIT_WAITS_TABLE"])["TimeToLiveDescription"]
assert ttl.get("AttributeName") == "expires_at" and ttl["TimeToLiveStatus"] == "ENABLED", ttl
names = json.load(open(os.path.join(os.environ["EVDIR"], "iam-names.json")))
assert names["tables"]["Waits"] == "spotfit-waits", names
PY

# --- (a), (b): S3 ------------------------------------------------------------------------------------
check "(a) a .exit object under runs/ → job-events gets one Object Created event with that key, within 2 s, on its role" - <<'PY'
import time
from lib import *
key = "runs/job=ev/run=a/ev-a.exit"
t0 = time.time()
put_object(key)
hits, _ = wait_for(lambda g: key_of(g) == key, 2.0)
assert hits, f"nothing delivered within 2 s: {got()}"
latency = hits[0]["at"] - t0
time.sleep(0.5)
hits = [g for g in got() if key_of(g) == key]
assert len(hits) == 1, hits
g = hits[0]
e = g["event"]
assert g["component"] == "job-events" and e["source"] == "aws.s3" and e["detail-type"] == "Object Created", g
assert e["detail"]["bucket"]["name"] == os.environ["SPOTFIT_BUCKET"] and e["account"] == "123456789012" and e["id"], e
assert g["access_key"] == role_key("job-events"), "not the function role's credentials"
print(f"latency put_object → function: {latency * 1000:.0f} ms")
assert latency < 2.0
PY

check "(b) a .json under runs/, and a .exit outside runs/ → nothing delivered" - <<'PY'
import time
from lib import *
put_object("runs/job=ev/run=b/ev-b.json", b"{}")
put_object("other/ev-b.exit")
put_object("runs/job=ev/run=b/ev-b-sentinel.exit")  # delivered: by then the two above would have been
hits, _ = wait_for(lambda g: key_of(g) == "runs/job=ev/run=b/ev-b-sentinel.exit", 3.0)
assert hits, "the sentinel was not delivered"
time.sleep(0.5)
bad = [key_of(g) for g in got() if key_of(g) in ("runs/job=ev/run=b/ev-b.json", "other/ev-b.exit")]
assert not bad, bad
PY

# --- (c), (d): EC2 ------------------------------------------------------------------------------------
check "(c) a managed instance run and terminated → shutting-down and terminated delivered, nothing for pending/running" - <<'PY'
import time
from lib import *
ec2 = boto3.client("ec2")
iid = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=[
    {"ResourceType": "instance", "Tags": [{"Key": "spotfit:managed", "Value": "true"}]}])["Instances"][0]["InstanceId"]
time.sleep(0.6)
ec2.terminate_instances(InstanceIds=[iid])
mine = lambda g: g["event"].get("detail", {}).get("instance-id") == iid
for _ in range(150):
    states = sorted(g["event"]["detail"]["state"] for g in got() if mine(g))
    if len(states) >= 2:
        break
    time.sleep(0.02)
time.sleep(0.5)
evs = [g["event"] for g in got() if mine(g)]
states = sorted(e["detail"]["state"] for e in evs)
assert states == ["shutting-down", "terminated"], states
e = evs[0]
assert e["source"] == "aws.ec2" and e["detail-type"] == "EC2 Instance State-change Notification", e
assert e["resources"] == [f"arn:aws:ec2:us-east-1:123456789012:instance/{iid}"] and e["region"] == "us-east-1", e
emitted = [json.loads(l)["state"] for l in open(os.path.join(D, "events-emitted.jsonl")) if iid in l]
assert emitted == ["pending", "running", "shutting-down", "terminated"], emitted
PY

check "(d) an instance in events-drop → no event; a managed one terminated with it → its events" - <<'PY'
import time
from lib import *
ec2 = boto3.client("ec2")
tags = [{"ResourceType": "instance", "Tags": [{"Key": "spotfit:managed", "Value": "true"}]}]
a, b = (i["InstanceId"] for i in ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2, TagSpecifications=tags)["Instances"])
with open(os.path.join(D, "events-drop"), "a") as f:
    f.write(a + "\n")
time.sleep(0.6)
ec2.terminate_instances(InstanceIds=[a, b])
hits, _ = wait_for(lambda g: g["event"].get("detail", {}).get("instance-id") == b and g["event"]["detail"]["state"] == "terminated", 3.0)
assert hits, "the sentinel instance's events were not delivered"
time.sleep(0.5)
dropped = [g for g in got() if g["event"].get("detail", {}).get("instance-id") == a]
assert not dropped, dropped
emitted = [l for l in open(os.path.join(D, "events-emitted.jsonl")) if a in l and ("terminated" in l or "shutting-down" in l)]
assert not emitted, emitted
PY

# --- (e): Step Functions, through SPOTFIT_PUT_EVENT ----------------------------------------------------
check "(e) put: ABORTED of the state machine → delivered with its detail unchanged; SUCCEEDED, or another machine's FAILED → not" - <<'PY'
import shlex, subprocess, time, uuid
from lib import *
SM = "arn:aws:states:us-east-1:123456789012:stateMachine:spotfit"
def sfn_event(status, sm=SM):
    ex = f"ev-e-{status.lower()}-{uuid.uuid4().hex[:6]}"
    return ex, {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Step Functions Execution Status Change",
                "source": "aws.states", "account": "123456789012", "time": "2026-01-02T03:04:05Z", "region": "us-east-1",
                "resources": [f"arn:aws:states:us-east-1:123456789012:execution:spotfit:{ex}"],
                "detail": {"executionArn": f"arn:aws:states:us-east-1:123456789012:execution:spotfit:{ex}", "stateMachineArn": sm,
                           "name": ex, "status": status, "startDate": 1700000000000, "stopDate": 1700000001000,
                           "input": "{\"name\": \"<id> <time> <source> <detail>\"}", "output": None}}
def put(ev):
    p = subprocess.run(shlex.split(os.environ["SPOTFIT_PUT_EVENT"]), input=json.dumps(ev).encode(), capture_output=True)
    assert p.returncode == 0, p.stderr
name = lambda g: g["event"].get("detail", {}).get("name")
ok_ex, ok = sfn_event("SUCCEEDED"); put(ok)
other_ex, other = sfn_event("FAILED", SM + "-other"); put(other)
ab_ex, ab = sfn_event("ABORTED"); put(ab)
hits, _ = wait_for(lambda g: name(g) == ab_ex, 3.0)
assert hits, "ABORTED not delivered"
time.sleep(0.5)
e = hits[0]["event"]
assert e["detail"] == ab["detail"], ("detail changed on the way", e["detail"], ab["detail"])
assert e["time"] == "2026-01-02T03:04:05Z" and e["resources"] == ab["resources"] and e["source"] == "aws.states", e
assert not [g for g in got() if name(g) in (ok_ex, other_ex)], "SUCCEEDED or another machine's event delivered"
PY

# --- (f), (g): retries and the dead-letter file --------------------------------------------------------
check "(f) the first delivery fails → delivered again; events.log has attempt 1 (rc 1) and attempt 2 (rc 0)" - <<'PY'
import time
from lib import *
key = "runs/job=ev/run=f/ev-flaky.exit"
with open(os.environ["STUB_INVOKE_FAIL"], "a") as f:
    f.write("ev-flaky.exit 1\n")
put_object(key)
for _ in range(300):
    if any(key_of(g) == key and g["rc"] == 0 for g in got()):
        break
    time.sleep(0.02)
time.sleep(0.3)
calls = [g["rc"] for g in got() if key_of(g) == key]
assert calls == [1, 0], calls
eid = [g["event"]["id"] for g in got() if key_of(g) == key]
assert eid[0] == eid[1], ("the redelivery is the same event", eid)
lines = [l for l in log() if l["event_id"] == eid[0]]
assert [(l["attempt"], l["rc"]) for l in lines] == [(1, 1), (2, 0)], lines
retry_s = lines[1]["received_at"] - lines[0]["done_at"]
print(f"redelivered {retry_s:.2f} s after the failure")
assert retry_s < 3, retry_s
assert not os.path.exists(os.path.join(D, "events-dead.jsonl")) or eid[0] not in open(os.path.join(D, "events-dead.jsonl")).read()
PY

check "(g) a delivery that fails every time → 3 attempts, then events-dead.jsonl, no 4th" - <<'PY'
import time
from lib import *
key = "runs/job=ev/run=g/ev-doomed.exit"
with open(os.environ["STUB_INVOKE_FAIL"], "a") as f:
    f.write("ev-doomed.exit 99\n")
put_object(key)
dead = os.path.join(D, "events-dead.jsonl")
for _ in range(500):
    if os.path.exists(dead) and "ev-doomed.exit" in open(dead).read():
        break
    time.sleep(0.02)
time.sleep(2.5)  # a 4th delivery would come within this
rows = [json.loads(l) for l in open(dead)] if os.path.exists(dead) else []
mine = [r for r in rows if r["event"].get("detail", {}).get("object", {}).get("key") == key]
assert len(mine) == 1 and mine[0]["attempts"] == 3 and mine[0]["component"] == "job-events", rows
assert mine[0]["event"]["detail-type"] == "Object Created", mine[0]
calls = [g["rc"] for g in got() if key_of(g) == key]
assert calls == [1, 1, 1], calls
lines = [(l["attempt"], l["rc"]) for l in log() if l["event_id"] == mine[0]["event"]["id"]]
assert lines == [(1, 1), (2, 1), (3, 1)], lines
PY

# --- (h): the instance stand-in's spot interruption ----------------------------------------------------
# What runs "on the instance" here is `sleep`: it needs no role, so the stand-in's instance
# credentials are a placeholder (the fixture template has no instance profile).
mkdir -p "$dir/standin" "$dir/standin-roles"
echo "export AWS_ACCESS_KEY_ID=unused AWS_SECRET_ACCESS_KEY=unused" > "$dir/standin-roles/instance.env"
SPOTFIT_ROLES_DIR="$dir/standin-roles" "$PY" scripts/lib/instance_standin.py "$dir/standin" --interrupt-run ev-spot --after 0.5 &
standin_pid=$!
check "(h) stand-in interrupts a spot instance → Interruption Warning, then shutting-down/terminated, to job-events" - <<'PY'
import base64, time
from lib import *
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"])
iid = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, UserData="#!/bin/bash\nsleep 60\n", TagSpecifications=[
    {"ResourceType": "instance", "Tags": [{"Key": "spotfit:managed", "Value": "true"}, {"Key": "spotfit:run-id", "Value": "ev-spot"},
                                          {"Key": "spotfit:attempt", "Value": "1"}]}])["Instances"][0]["InstanceId"]
mine = lambda g: g["event"].get("detail", {}).get("instance-id") == iid
for _ in range(400):
    if len([g for g in got() if mine(g)]) >= 3:
        break
    time.sleep(0.02)
time.sleep(0.3)
evs = sorted((g["at"], g["event"]["detail-type"], g["event"]["detail"].get("state") or g["event"]["detail"].get("instance-action")) for g in got() if mine(g))
kinds = [(k, s) for _, k, s in evs]
assert sorted(kinds) == [("EC2 Instance State-change Notification", "shutting-down"), ("EC2 Instance State-change Notification", "terminated"),
                         ("EC2 Spot Instance Interruption Warning", "terminate")], (kinds, open(os.path.join(D, "standin", "standin.log")).read())
w = [g["event"] for g in got() if mine(g) and g["event"]["detail-type"] == "EC2 Spot Instance Interruption Warning"][0]
assert w["source"] == "aws.ec2" and w["resources"] == [f"arn:aws:ec2:us-east-1:123456789012:instance/{iid}"], w
state = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
assert state["State"]["Name"] == "terminated" and state["StateReason"]["Code"] == "Server.SpotInstanceTermination", state
PY

check "every delivery logged with its fields; nothing filtered (moto routed only what AWS would); no IAM denial" - <<'PY'
from lib import *
lines = log()
assert lines, "events.log is empty"
need = {"event_id", "component", "source", "detail_type", "event_time", "received_at", "done_at", "rc", "attempt", "stdout"}
for l in lines:
    assert need <= set(l) or l.get("filtered"), l
filtered = [l for l in lines if l.get("filtered")]
assert not filtered, filtered
assert len([l for l in lines if not l.get("filtered")]) == len(got()), (len(lines), len(got()))
den = open(os.environ["SPOTFIT_IAM_DENIALS"]).read().strip()
assert not den, den
PY

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
