#!/usr/bin/env bash
# The README's first command, as a newcomer runs it: `bash scripts/quickstart` builds the local
# mode only (no AWS SDK crate in the build graph) and runs the example job twice, the second run
# sized from the first. Also: a build without the `aws` feature refuses the AWS-only commands with
# a clear message instead of failing somewhere deep.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
pass=0 fail=0
ok() { echo "  ok: $*"; pass=$((pass + 1)); }
bad() { echo "  FAILED: $*"; fail=$((fail + 1)); }

# 1. The quickstart's build graph has no AWS SDK crate; the `aws` feature brings them (so the
#    check can fail: it counts the same way in both).
sdk_default=$(cargo tree -q -p spotfit-cli -e normal --prefix none | grep -c '^aws-sdk-' || true)
sdk_aws=$(cargo tree -q -p spotfit-cli -e normal --prefix none --features aws | grep -c '^aws-sdk-' || true)
[ "$sdk_default" -eq 0 ] && ok "spotfit-cli without features: no aws-sdk-* crate" || bad "spotfit-cli default build has $sdk_default aws-sdk-* crates"
[ "$sdk_aws" -gt 0 ] && ok "spotfit-cli --features aws: $sdk_aws aws-sdk-* crates" || bad "the aws feature brings no SDK crate"

# 2. The README's set-up commands, read from the README itself: exactly two, the first the main
#    job (run below, as written there), the second the test suite, which .ci/run runs as written.
mapfile -t setup < <(python3 - README.md <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
    for line in block.splitlines():
        if line.strip():
            print(line.strip())
PY
)
[ "${#setup[@]}" -eq 2 ] && ok "the README's set-up holds two commands: ${setup[*]}" || bad "the README's set-up holds ${#setup[@]} commands: ${setup[*]-}"
suite="${setup[1]-}"
grep -qxF "$suite" .ci/run && ok ".ci/run runs the README's test command ($suite)" || bad ".ci/run does not run the README's test command ($suite)"

# 3. The README's first command, timed against issue 10's bound of 5 minutes from a cold clone
#    to the first job's summary (cold in CI's clean clone: nothing is built in the quickstart
#    profile).
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
t0=$(date +%s)
if SPOTFIT_STORE="$store" bash -c "${setup[0]-false}" > "$store/out.txt" 2>&1; then
  took=$(( $(date +%s) - t0 ))
  [ "$took" -le 300 ] && ok "scripts/quickstart exited 0 in $took s (bound: 300 s)" || bad "scripts/quickstart took $took s, over the 300 s bound"
else
  bad "scripts/quickstart failed"; tail -20 "$store/out.txt"
fi
grep -q '\[history\]' "$store/out.txt" && ok "the second run is sized from history" || bad "no history-based sizing in the output"
runs=$(target/quickstart/spotfit --store "$store" runs quick-python --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$runs" -eq 2 ] && ok "two runs recorded" || bad "$runs runs recorded, expected 2"

# 4. AWS-only commands in the local build: a clear refusal, exit 2.
set +e
msg=$(target/quickstart/spotfit submit examples/quick-python.json 2>&1); rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q 'needs AWS support' <<<"$msg" && ok "submit without the aws feature: exit 2, says why" || bad "submit without aws: rc=$rc: $msg"
set +e
msg=$(target/quickstart/spotfit monitor --upload s3://b/p --output - -- true 2>&1); rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q 'needs AWS support' <<<"$msg" && ok "monitor --upload s3:// without the aws feature: exit 2, says why" || bad "monitor s3 without aws: rc=$rc: $msg"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
