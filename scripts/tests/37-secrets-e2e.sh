#!/usr/bin/env bash
# End to end for job roles and secrets (issue: data and secrets), through the real user data on
# stand-in instances (the stack of scripts/tests/32-pipeline-e2e.sh: the real ASL, the real
# handlers, moto with the template's IAM enforced, the event pump, instance_standin.py):
#   1. a job whose spec names the job role `e2e-reader` (spotfit:jobRoles: may read
#      ssm:/e2e/db/* and secretsmanager:e2e/api-*) and two env_from references: it runs on that
#      role's instance profile, the agent reads both values with that role's credentials, and
#      the job sees exactly them (it prints their SHA-256, never the values);
#   2. the same references under the role `e2e-nothing` (no secret grant): the read is denied
#      (moto's IAM), the job is not started, the run is recorded failed with exit 125 and the
#      denial in its stderr tail; nothing is retried on another instance;
#   3. the marker values are found nowhere: every execution's input, output and history (the
#      local Step Functions service), every S3 object (gzip parts decompressed), every item of
#      every DynamoDB table, every EC2 instance's tags and user data, and every file the stack,
#      the stand-in instances and the handlers wrote (user data, console logs, agent and handler
#      logs, spools, IAM denial log).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
ensure_node22
ensure_npm statemachine/tests
t_start=$(date +%s)

log "building the handlers' local invoker and the agent"
cargo build -q --workspace --all-targets --features "$SPOTFIT_FEATURES" 2>&1
export SPOTFIT_LOCAL_INVOKE="$PWD/target/debug/spotfit-local-invoke"
agent="$PWD/target/debug/spotfit-agent"
export SPOTFIT_IMDS=off

dir=$(mktemp -d)
standin_pid=""
cleanup() {
  [ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null && wait "$standin_pid" 2>/dev/null || true
  scripts/local-stack stop "$dir"
  [ -n "${KEEP_E2E:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT

# The markers live in this process's environment only (never in a file of the test).
SPOTFIT_E2E_DB_MARKER="db-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')-MARKER"
SPOTFIT_E2E_API_MARKER="api-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')-MARKER"
export SPOTFIT_E2E_DB_MARKER SPOTFIT_E2E_API_MARKER

export SPOTFIT_SYNTH_ARGS='-c spotfit:jobRoles={"e2e-reader":{"secrets":["ssm:/e2e/db/*","secretsmanager:e2e/api-*"]},"e2e-nothing":{}}'
export SPOTFIT_REAP_STALE_S=3 SPOTFIT_REAP_GRACE_S=60 SPOTFIT_BOOT_GRACE_S=30
source scripts/lib/pipeline_stack.sh
pipeline_stack_up "$dir" "$agent"
[ -n "${SPOTFIT_JOB_PROFILES:-}" ] || { echo "FAIL: the stack gave the launcher no job roles" >&2; exit 1; }
echo "job roles: $SPOTFIT_JOB_PROFILES"

# The secrets, in the emulator's stores (as the set-up's admin).
"$PY" - <<'PY'
import boto3, os
boto3.client("ssm").put_parameter(Name="/e2e/db/password", Type="SecureString", Value=os.environ["SPOTFIT_E2E_DB_MARKER"])
boto3.client("secretsmanager").create_secret(Name="e2e/api-key", SecretString=os.environ["SPOTFIT_E2E_API_MARKER"])
PY

mkdir -p "$dir/standin"
"$PY" scripts/lib/instance_standin.py "$dir/standin" &
standin_pid=$!

job() { # NAME ROLE: a job that prints the SHA-256 of both variables (never the values)
  cat > "$dir/$1.json" <<JSON
{"name": "$1", "role": "$2",
 "command": ["sh", "-c", "test -n \"\$DB_PASSWORD\" && test -n \"\$API_KEY\" && printf %s \"\$DB_PASSWORD\" | sha256sum && printf %s \"\$API_KEY\" | sha256sum"],
 "env_from": {"DB_PASSWORD": "ssm:/e2e/db/password", "API_KEY": "secretsmanager:e2e/api-key"},
 "env": {"PLAIN": "not-a-secret"},
 "hints": {"vcpu": 1, "memory_gib": 1}, "timeout_s": 300}
JSON
}

# --- 1. the job role reads both secrets; the job gets exactly them -----------------------------
job e2e-secrets e2e-reader
execute "$dir/e2e-secrets.json" e2e-secrets
check "job role e2e-reader: both secrets read on the instance with that role, the job saw exactly them" - "$dir" <<'PY'
import boto3, hashlib, json, os, sys
d = sys.argv[1]
out = json.load(open(f"{d}/e2e-secrets.out"))
assert out["status"] == "SUCCEEDED", out
iid = out["output"]["instance"]["instance_id"]
# The profile the launch passed (moto forgets it once the instance is terminated; the stand-in
# read it from DescribeInstances at boot to pick the credentials IMDS would give).
standin = open(f"{d}/standin/standin.log").read()
assert f"instance {iid} runs with jobrole-e2e-reader" in standin, standin[-2000:]
logs = "\n".join(open(os.path.join(root, f), errors="replace").read() for root, _, fs in os.walk(f"{d}/standin/{iid}") for f in fs if f == "console.log")
want = [hashlib.sha256(os.environ[v].encode()).hexdigest() for v in ("SPOTFIT_E2E_DB_MARKER", "SPOTFIT_E2E_API_MARKER")]
for w in want:
    assert w in logs, f"the job did not see the secret (sha256 {w} not in its output): {logs[-1500:]}"
print(f"instance {iid} on the e2e-reader profile; both SHA-256 in the job's output")
print("ok")
PY

# --- 2. a role without the grant: denied, not started, recorded failed with the reason ---------
job e2e-denied e2e-nothing
execute "$dir/e2e-denied.json" e2e-denied
check "job role e2e-nothing: the read is denied, the job is not started, the run is failed (125) with the denial in its record" - "$dir" <<'PY'
import boto3, json, os, sys
d = sys.argv[1]
out = json.load(open(f"{d}/e2e-denied.out"))
assert out["status"] == "FAILED", out
ddb = boto3.client("dynamodb")
items = ddb.query(TableName=os.environ["SPOTFIT_RUNS_TABLE"], KeyConditionExpression="run_id = :r",
                  ExpressionAttributeValues={":r": {"S": "e2e-denied"}})["Items"]
recs = [json.loads(i["doc"]["S"]) for i in items]
assert len(recs) == 1, f"one attempt, not retried elsewhere: {len(recs)}"
r = recs[0]
code = ((r.get("summary") or {}).get("exit") or {}).get("code")
assert r["status"] == "failed" and code == 125, r
tail = json.dumps(r)
# The first reference read (in name order) is API_KEY's.
assert "cannot read secretsmanager:e2e/api-key: AccessDenied" in tail, tail[-1500:]
print(f"record: status {r['status']}, exit {code}")
print("ok")
PY

# --- 3. the marker values are nowhere ----------------------------------------------------------
check "the secret values appear nowhere spotfit or AWS keep anything" - "$dir" <<'PY'
import base64, boto3, gzip, json, os, sys
d = sys.argv[1]
markers = [os.environ["SPOTFIT_E2E_DB_MARKER"], os.environ["SPOTFIT_E2E_API_MARKER"]]
found, searched = [], {}
def look(where, data):
    if isinstance(data, str):
        data = data.encode()
    for m in markers:
        if m.encode() in data:
            found.append(f"{where}: {m[:6]}…")
    kind = where.split(":", 1)[0]
    searched[kind] = searched.get(kind, 0) + 1
# Step Functions: every execution's input, output and history
sfn = boto3.client("stepfunctions", endpoint_url=os.environ["AWS_ENDPOINT_URL_SFN"])
arns = [json.load(open(f"{d}/{name}.out"))["executionArn"] for name in ("e2e-secrets", "e2e-denied")]
for arn in arns:
    look("sfn-execution:" + arn, json.dumps(sfn.describe_execution(executionArn=arn), default=str))
    tok = None
    while True:
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **({"nextToken": tok} if tok else {}))
        look("sfn-history:" + arn, json.dumps(page["events"], default=str))
        tok = page.get("nextToken")
        if not tok:
            break
# S3: every object (gzip parts decompressed). A control first: a gzip log part holding a
# marker, planted by hand, which the search must report (and nothing else).
s3 = boto3.client("s3")
PLANTED = "logs/job=planted/dt=2026-01-01/run=planted/part-00000.log.gz"
s3.put_object(Bucket=os.environ["SPOTFIT_BUCKET"], Key=PLANTED, Body=gzip.compress(b"x " + markers[0].encode() + b" y"))
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=os.environ["SPOTFIT_BUCKET"]):
    for o in page.get("Contents", []):
        body = s3.get_object(Bucket=os.environ["SPOTFIT_BUCKET"], Key=o["Key"])["Body"].read()
        if o["Key"].endswith(".gz"):
            body = gzip.decompress(body)
        look("s3:" + o["Key"], body)
# DynamoDB: every item of every table
ddb = boto3.client("dynamodb")
for t in ddb.list_tables()["TableNames"]:
    for page in ddb.get_paginator("scan").paginate(TableName=t):
        look("dynamodb:" + t, json.dumps(page["Items"]))
# EC2: every instance's tags and user data
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"])
for r in ec2.describe_instances()["Reservations"]:
    for i in r["Instances"]:
        look("ec2-tags:" + i["InstanceId"], json.dumps(i.get("Tags", [])))
        ud = ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")["UserData"].get("Value", "")
        look("ec2-user-data:" + i["InstanceId"], base64.b64decode(ud) if ud else b"")
# Every file the stack, the stand-in instances and the handlers wrote
for root, _, files in os.walk(d):
    for f in files:
        p = os.path.join(root, f)
        try:
            data = open(p, "rb").read()
        except OSError:
            continue
        if p.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except OSError:
                pass
        look("file:" + os.path.relpath(p, d), data)
print("searched: " + ", ".join(f"{k} {v}" for k, v in sorted(searched.items())))
assert searched.get("s3", 0) > 0 and searched.get("dynamodb", 0) > 0 and searched.get("sfn-history", 0) > 0, searched
# The one finding is the control planted above: the search does find a marker that is there.
assert found == [f"s3:{PLANTED}: {markers[0][:6]}…"], found
s3.delete_object(Bucket=os.environ["SPOTFIT_BUCKET"], Key=PLANTED)
print("ok")
PY

echo "whole secrets e2e: $(( $(date +%s) - t_start )) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
