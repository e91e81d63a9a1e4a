#!/usr/bin/env bash
# End to end for container jobs, through the real user data on stand-in instances (the stack of
# scripts/tests/32-pipeline-e2e.sh: the real ASL, the real handlers, moto with IAM enforced, the
# EC2 fault layer, the event pump, scripts/lib/instance_standin.py):
#   1. a container job whose image lives in a loopback registry that refuses anonymous pulls
#      (docker-registry with htpasswd: user AWS, the password of the emulator's ECR token), named
#      to the launcher as an ECR-compatible host (SPOTFIT_ECR_REGISTRIES); the rendered user data
#      logs in (`aws ecr get-login-password | docker login --password-stdin`: the stand-in answers
#      from moto's GetAuthorizationToken, `docker` is podman) and the agent pulls, runs and
#      measures the container through its cgroup: the summary's CPU seconds and peak memory
#      within ±5 % of what the `burn` workload is built to use;
#   2. the same image asked for more memory than the attempt's sized limit: the container is
#      OOM-killed, the attempt is recorded oom_killed, and the retry, sized with more memory,
#      succeeds.
# Needs the AWS SDK build (the whole workspace, as 32 does); run by the merger.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
source scripts/lib/containers.sh
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
TAG="spotfit-e2e-$$"
cleanup() {
  [ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null && wait "$standin_pid" 2>/dev/null || true
  containers_cleanup
  scripts/local-stack stop "$dir"
  [ -n "${KEEP_E2E:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT

# The registry's address is fixed before the stack starts: the launcher (its environment) and the
# stack's IAM (the synth context) both name it.
containers_init "$dir/ctr"
REGISTRY_PORT="$(free_port)"
export SPOTFIT_ECR_REGISTRIES="127.0.0.1:$REGISTRY_PORT"
export SPOTFIT_SYNTH_ARGS="-c spotfit:ecrRepositories=$TAG/burn -c spotfit:ecrRegistries=$SPOTFIT_ECR_REGISTRIES"
export SPOTFIT_REAP_STALE_S=3 SPOTFIT_REAP_GRACE_S=60 SPOTFIT_BOOT_GRACE_S=60
source scripts/lib/pipeline_stack.sh
pipeline_stack_up "$dir" "$agent"

# The registry's password is the emulator's ECR token's (base64 "AWS:PASSWORD"), as ECR's is.
"$PY" - "$dir/ecr-password" <<'PY'
import base64, boto3, sys
tok = boto3.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
user, password = base64.b64decode(tok).decode().split(":", 1)
assert user == "AWS", user
open(sys.argv[1], "w").write(password)
PY
registry_start "$dir" AWS "$dir/ecr-password"
LOCAL_REF="localhost/$TAG/burn:1"
REMOTE="$REGISTRY/$TAG/burn:1"
CLEANUP_IMAGES="$LOCAL_REF $REMOTE"
make_burn_image "$dir" "$LOCAL_REF"
registry_login
registry_push "$LOCAL_REF" "$TAG/burn:1"
podman logout "$REGISTRY" >/dev/null
# Anonymous pulls are refused: what the instance gets comes from its login.
if podman pull -q "$REMOTE" >/dev/null 2>&1; then echo "FAIL: the registry served an anonymous pull" >&2; exit 1; fi


mkdir -p "$dir/standin"
"$PY" scripts/lib/instance_standin.py "$dir/standin" &
standin_pid=$!

# --- 1. pulled with authentication, measured through the container's cgroup ---------------------
MIB=256 CPU_S=8
cat > "$dir/ctr.json" <<JSON
{"name": "e2e-ctr", "image": "$REMOTE", "command": ["burn", "$MIB", "$CPU_S"],
 "hints": {"vcpu": 1, "memory_gib": 1}, "timeout_s": 600}
JSON
execute "$dir/ctr.json" e2e-ctr
check "container job: pulled after the user data's login, succeeded, CPU and memory within ±5 % of the workload's" - "$dir" "$MIB" "$CPU_S" <<'PY'
import boto3, glob, gzip, json, os, sys
d, mib, cpu = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
out = json.load(open(f"{d}/e2e-ctr.out"))
assert out["status"] == "SUCCEEDED", out
s3 = boto3.client("s3"); b = os.environ["SPOTFIT_BUCKET"]
runs = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix="runs/job=e2e-ctr/").get("Contents", [])]
summary = json.loads(s3.get_object(Bucket=b, Key=[k for k in runs if k.endswith(".json")][0])["Body"].read())
assert summary["status"] == "succeeded" and summary["mem_metric"] == "cgroup", summary
parts = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix="samples/job=e2e-ctr/").get("Contents", [])]
samples = [json.loads(l) for k in parts for l in gzip.decompress(s3.get_object(Bucket=b, Key=k)["Body"].read()).splitlines() if l.strip()]
cpu_s = sum(s["cpu_cores"] * s["interval_s"] for s in samples)
mem = summary["mem_max_bytes"] / 2**20
print(f"measured on the stand-in: CPU {cpu_s:.3f} s (built {cpu} s, {100*(cpu_s-cpu)/cpu:+.2f} %), peak {mem:.1f} MiB (holds {mib} MiB, {100*(mem-mib)/mib:+.2f} %)")
assert abs(cpu_s - cpu) <= 0.05 * cpu, cpu_s
assert abs(mem - mib) <= 0.05 * mib, mem
# the user data logged in (the token through a pipe), and left no credentials behind
iid = out["output"]["instance"]["instance_id"]
home = f"{d}/standin/{iid}"
console = open(f"{home}/console.log", errors="replace").read()
assert "registry login" not in console, console[-2000:]
assert not os.path.exists(f"{home}/registry-auth"), "registry credentials outlived the job"
assert open(f"{d}/ecr-password").read() not in open(f"{home}/user-data.sh").read()
assert "169.254.169.254" in open(f"{home}/iptables.log").read()
print("ok")
PY

# --- 2. over the sized memory: OOM recorded, retried with more memory ---------------------------
cat > "$dir/oom-probe.json" <<JSON
{"name": "e2e-ctr-oom", "image": "$REMOTE", "command": ["burn", "1", "0"],
 "hints": {"vcpu": 1, "memory_gib": 0.25}, "timeout_s": 600, "retry": {"max_attempts": 3, "oom_memory_factor": 1.5}}
JSON
( source "$SPOTFIT_ROLES_DIR/size-job.env"; "$SPOTFIT_LOCAL_INVOKE" size-job ) \
  <<< "{\"spec\": $(cat "$dir/oom-probe.json"), \"execution\": \"probe-oom\"}" > "$dir/oom-size.out"
# More than attempt 1's limit (the sized memory), less than what the retry is sized to (×1.5 of
# at least that).
need_mib=$("$PY" -c 'import json,sys; r=json.load(open(sys.argv[1]))["requirement"]; print(r["memory_bytes"] // 2**20 + 96)' "$dir/oom-size.out")
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); j["command"]=["burn", sys.argv[2], "1"]; json.dump(j, open(sys.argv[3], "w"))' \
  "$dir/oom-probe.json" "$need_mib" "$dir/oom.json"
echo "attempt 1's limit: $(( need_mib - 96 )) MiB; the job holds $need_mib MiB"
execute "$dir/oom.json" e2e-ctr-oom
check "over its limit: attempt 1 oom_killed (exit 137), attempt 2 sized with more memory succeeded" - "$dir" <<'PY'
import boto3, json, os, sys
d = sys.argv[1]
out = json.load(open(f"{d}/e2e-ctr-oom.out"))
assert out["status"] == "SUCCEEDED", out
h = out["output"]["history"]
assert [a["status"] for a in h] == ["oom_killed", "succeeded"], h
ddb = boto3.client("dynamodb")
recs = [json.loads(ddb.get_item(TableName=os.environ["SPOTFIT_RUNS_TABLE"], Key={"run_id": {"S": "e2e-ctr-oom"}, "attempt": {"N": str(n)}})["Item"]["doc"]["S"]) for n in (1, 2)]
assert recs[0]["status"] == "oom_killed" and recs[1]["status"] == "succeeded", recs
req = out["output"].get("requirement")
if req is not None:  # the final state carries the last sizing when the output keeps it
    assert any("OOM kill in attempt 1" in n for n in req["notes"]), req
print("ok")
PY

check "no IAM denial (the instance role's ECR grant covers the login)" - <<'PY'
import os
den = open(os.environ["SPOTFIT_IAM_DENIALS"]).read().strip()
assert not den, den
PY
check "no container left" - "$REMOTE" <<'PY'
import subprocess, sys
left = subprocess.run(["podman", "ps", "-aq", "--filter", f"ancestor={sys.argv[1]}"], capture_output=True, text=True).stdout.split()
assert not left, left
PY

echo "whole container e2e: $(( $(date +%s) - t_start )) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
