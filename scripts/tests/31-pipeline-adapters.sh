#!/usr/bin/env bash
# Adapter integration tests (EC2, S3, DynamoDB; capacity faults, ClientToken, interruption,
# reaper) against moto + spotfit's EC2 fault layer on loopback, started and stopped here, with
# IAM enforced (each adapter on its Lambda's role from the synthesized template).
# The Rust tests (shared/aws/tests/emulator.rs, feature `integration`) fail if run without it.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
dir=$(mktemp -d)
trap 'scripts/local-stack stop "$dir"; rm -rf "$dir"' EXIT
scripts/local-stack start "$dir" >/dev/null
scripts/local-stack seed "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
# IAM enforced: each adapter runs on the role the synthesized template gives its Lambda.
# shellcheck source=../../infra/test/env.sh
source infra/test/env.sh
infra_build
CDK_DEFAULT_ACCOUNT=123456789012 CDK_DEFAULT_REGION=us-east-1 \
  infra_synth "$dir/cdk.out" -c "spotfit:vpcId=$SPOTFIT_TEST_VPC" -c "spotfit:subnets=$SPOTFIT_SUBNETS"
scripts/local-stack iam "$dir" "$dir/cdk.out/Spotfit.template.json" >/dev/null
export SPOTFIT_ROLES_DIR="$dir/roles"
# --workspace keeps the feature set of `cargo test --workspace` (no rebuild of the SDK crates).
if ! cargo test --workspace --features "$SPOTFIT_FEATURES,spotfit-aws/integration" --test emulator -- --test-threads 4 2>&1; then
  if [ -s "$SPOTFIT_IAM_DENIALS" ]; then echo "IAM denials:" >&2; sort "$SPOTFIT_IAM_DENIALS" | uniq -c >&2; fi
  exit 1
fi
# No test may leave an instance running.
left=$("$TOOLS/venv/bin/python" -c '
import boto3, os
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
print(sum(1 for r in ec2.describe_instances()["Reservations"] for i in r["Instances"] if i["State"]["Name"] not in ("terminated", "shutting-down")))')
if [ "$left" != "0" ]; then echo "FAIL: $left instance(s) left running in the emulator" >&2; exit 1; fi
echo "no instance left running"
