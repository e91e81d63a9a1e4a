#!/usr/bin/env bash
# The synthesized template deployed to moto server's CloudFormation (started here on a free
# loopback port, stopped on exit): VPC and subnets created in the emulator, `cdk synth` with
# them (offline), assets published as `cdk deploy` would, CreateStack → CREATE_COMPLETE, then the
# resources read back through the S3, DynamoDB, EC2, Lambda, Step Functions, Events and IAM APIs.
set -euo pipefail
source "$(dirname "$0")/../../infra/test/env.sh"
ensure_py "moto[server]==$MOTO_VERSION" "boto3==$BOTO3_VERSION"
infra_build

WORK="$(mktemp -d)"
PORT="$(free_port)"
MOTO_PID=""
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -f "$WORK/moto.log" ]; then echo "--- moto server log (tail)"; grep -v ' - - \[' "$WORK/moto.log" | tail -40; fi
  if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

moto_server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
ENDPOINT="http://127.0.0.1:$PORT"
up() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=1)' "$ENDPOINT" 2>/dev/null; }
for _ in $(seq 1 100); do up && break; sleep 0.1; done
up || { echo "moto server did not start"; cat "$WORK/moto.log"; echo "0 passed, 1 failed"; exit 1; }
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1

net="$(python3 "$INFRA/test/deploy_emulator.py" setup-network "$ENDPOINT")"
vpc="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["vpc"])' "$net")"
subnets="$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])["subnets"]))' "$net")"
echo "emulator network: $vpc $subnets"

# Synthesized for the emulator's account and region, so ARNs and asset buckets line up.
CDK_DEFAULT_ACCOUNT=123456789012 CDK_DEFAULT_REGION=us-east-1 \
  infra_synth "$WORK/cdk.out" -c "spotfit:vpcId=$vpc" -c "spotfit:subnets=$subnets" -c spotfit:removal=destroy
ASL="$(cd "$INFRA" && node -e 'console.log(require("./dist/lib/config").defaultStateMachineFile(require("./dist/lib/config").repoRoot()))')"
python3 "$INFRA/test/deploy_emulator.py" deploy "$ENDPOINT" "$WORK/cdk.out" "$ASL" "$INFRA/jobs.json"
