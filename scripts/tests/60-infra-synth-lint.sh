#!/usr/bin/env bash
# The CDK app: compiled, its assertion tests (node:test), `cdk synth` with no network, cfn-lint
# (W3005 ignored: CDK's DependsOn style), checkov (every failure fixed or suppressed in code
# with a reason), parliament (every IAM action, condition key and resource ARN valid), and the
# negative tests of scripts/lib/template_iam.py's static check (infra/test/template_iam_test.py).
# Prints "N passed, M failed".
set -euo pipefail
source "$(dirname "$0")/../../infra/test/env.sh"
ensure_py "cfn-lint==$CFN_LINT_VERSION"
ensure_checkov
ensure_parliament
infra_build

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

assertion_tests() {
  (cd "$INFRA" && node --test dist/test/*.test.js >"$OUT/node-test.log" 2>&1) || { tail -60 "$OUT/node-test.log"; return 1; }
  grep -E '^# (tests|pass|fail)' "$OUT/node-test.log" | tr '\n' ' '; echo
}
synth_offline() {
  infra_synth "$OUT/cdk.out" -c "spotfit:vpcId=$TEST_VPC" -c "spotfit:subnets=$TEST_SUBNETS" &&
    test -s "$OUT/cdk.out/Spotfit.template.json"
}
cfn_lint() {
  cfn-lint --ignore-checks W3005 -- "$OUT/cdk.out/Spotfit.template.json"
}
checkov_scan() {
  # --skip-download: no network; the checks ship with the package.
  "$TOOLS/checkov/bin/checkov" -f "$OUT/cdk.out/Spotfit.template.json" --framework cloudformation \
      --skip-download --quiet --compact -o json >"$OUT/checkov.json" 2>"$OUT/checkov.err" || true
  python3 - "$OUT/checkov.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc = doc[0] if isinstance(doc, list) else doc
s = doc["summary"]
print(f"checkov: passed {s['passed']}, failed {s['failed']}, skipped (suppressed in code) {s['skipped']}")
for c in doc["results"].get("failed_checks", []):
    print(f"  FAILED {c['check_id']} {c['resource']}: {c['check_name']}")
missing = [c for c in doc["results"].get("skipped_checks", []) if not (c.get("check_result", {}).get("suppress_comment") or "").strip()]
for c in missing:
    print(f"  suppressed without a reason: {c['check_id']} {c['resource']}")
ok = s["failed"] == 0 and s["passed"] > 0 and not missing
sys.exit(0 if ok else 1)
PY
}

iam_lint() {
  "$TOOLS/parliament/bin/python" "$INFRA/test/iam_lint.py" "$OUT/cdk.out/Spotfit.template.json" >"$OUT/iam.log" ||
    { cat "$OUT/iam.log"; return 1; }
  grep -c '^accepted' "$OUT/iam.log" | xargs printf 'parliament: no finding (%s accepted notes: RunInstances split statements, the public AMI parameter, SendTask* on the state machine)\n'
}

template_iam_static() {
  # The static IAM check of scripts/lib/template_iam.py (the e2e runs it; the states:* rules are
  # the only enforcement of SendTask*/StartExecution locally): passes this template, fails each
  # broken variant of it.
  python3 "$INFRA/test/template_iam_test.py" "$OUT/cdk.out/Spotfit.template.json" >"$OUT/template-iam.log" ||
    { cat "$OUT/template-iam.log"; return 1; }
  tail -1 "$OUT/template-iam.log" | sed 's/^/template_iam static and roles: /'
}

check "node:test assertion tests (security properties, contracts)" assertion_tests
check "cdk synth with no network (unshare -n)" synth_offline
check "cfn-lint clean (ignoring W3005)" cfn_lint
check "checkov: no unsuppressed failure, every suppression has a reason" checkov_scan
check "parliament: IAM actions, condition keys and resource ARNs valid" iam_lint
check "template_iam.py static: passes the template, fails each broken variant" template_iam_static
finish
