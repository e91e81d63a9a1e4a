# Sourced by scripts/tests/6x-infra-*.sh: tools and helpers for the infrastructure checks.
# Tools install into .tools/ (git-ignored) through scripts/lib/tools.sh on first use.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/tools.sh"
INFRA="$SPOTFIT_ROOT/infra"

# Pinned versions: bump deliberately, the checks' results depend on them.
CFN_LINT_VERSION=1.58.0
CHECKOV_VERSION=3.3.30
MOTO_VERSION=5.2.5
BOTO3_VERSION=1.44.8
DUCKDB_VERSION=2.0.1

PARLIAMENT_VERSION=1.6.4

# ensure_venv_tool NAME SPEC: SPEC installed in a venv of its own at .tools/NAME. checkov and
# parliament pin libraries of their own (boto3 among them): separate venvs keep them from changing
# the versions moto and the other tests run with.
ensure_venv_tool() {
  local name="$1" spec="$2"
  if [ ! -x "$TOOLS/$name/bin/python" ] || ! "$TOOLS/$name/bin/pip" show "${spec%%==*}" >/dev/null 2>&1; then
    log "installing $spec into $TOOLS/$name"
    python3 -m venv "$TOOLS/$name"
    "$TOOLS/$name/bin/pip" install -q --upgrade pip >/dev/null
    "$TOOLS/$name/bin/pip" install -q "$spec"
  fi
}
ensure_checkov() { ensure_venv_tool checkov "checkov==$CHECKOV_VERSION"; }
ensure_parliament() { ensure_venv_tool parliament "parliament==$PARLIAMENT_VERSION"; }

# The test context: synth needs a VPC and subnets; these ids are syntactically valid placeholders.
TEST_VPC=vpc-0123456789abcdef0
TEST_SUBNETS='{"use1-az1":"subnet-0123456789abcdef0","use1-az2":"subnet-0123456789abcdef1"}'

# infra_build: npm dependencies (cached in infra/node_modules) and the compiled app.
infra_build() {
  # Node 22: the AWS SDK for JavaScript inside the CDK CLI drops Node 20 in 2027 (it warns now).
  ensure_node22
  ensure_npm "$INFRA"
  (cd "$INFRA" && npx tsc -p .)
}

# infra_synth OUTDIR [extra cdk args...]: `cdk synth` of the app with placeholder Lambda code,
# inside a network namespace with no interfaces, so that any network access fails the synth.
infra_synth() {
  local out="$1"; shift
  local isolate=(unshare -n)
  if ! unshare -n true 2>/dev/null; then
    echo "infra_synth: unshare -n is not available here; cannot prove synth is offline" >&2
    return 1
  fi
  (cd "$INFRA" && "${isolate[@]}" npx cdk synth --no-notices --quiet --output "$out" \
      -c spotfit:lambdaCode=placeholder "$@" >/dev/null)
}

# Counters and a check runner that prints one line per check.
PASSED=0; FAILED=0; FAILED_NAMES=()
check() {
  local name="$1"; shift
  local t0=$SECONDS
  if "$@"; then
    PASSED=$((PASSED + 1)); printf 'ok   %-60s %3ds\n' "$name" $((SECONDS - t0))
  else
    FAILED=$((FAILED + 1)); FAILED_NAMES+=("$name"); printf 'FAIL %-60s %3ds\n' "$name" $((SECONDS - t0))
  fi
}
finish() {
  [ "$FAILED" -eq 0 ] || echo "failed: ${FAILED_NAMES[*]}" >&2
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
