#!/usr/bin/env bash
# The Athena named queries (infra/athena/*.sql), run unchanged by DuckDB over NDJSON files in the
# S3 layout, with the columns of the Glue tables from the synthesized template, against figures
# recomputed independently in Python from the same files. Two data sets:
#   1. written by the real monitor: `spotfit run` (target/debug/spotfit, built by the workspace
#      tests before this script) runs real jobs into a fresh store; its objects/ directory has
#      the bucket's key layout (samples/, runs/, records/). $SPOTFIT_QUERY_DATA=DIR replaces this
#      with any such directory (e.g. an `aws s3 sync` of a real bucket).
#   2. a generated fixture (infra/athena/fixture.py) in the same schema, whose figures are also
#      known by construction, with what local runs cannot produce (interruptions, several pools).
set -euo pipefail
source "$(dirname "$0")/../../infra/test/env.sh"
ensure_py "duckdb==$DUCKDB_VERSION"
infra_build

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
infra_synth "$WORK/cdk.out" -c "spotfit:vpcId=$TEST_VPC" -c "spotfit:subnets=$TEST_SUBNETS"
TEMPLATE="$WORK/cdk.out/Spotfit.template.json"

real_monitor_data() {
  local store="$WORK/store"
  # --workspace --all-targets: the feature set `cargo test --workspace` already built (a `-p`
  # build unifies features differently and would rebuild the AWS SDK crates)
  (cd "$SPOTFIT_ROOT" && cargo build -q --workspace --all-targets --features "$SPOTFIT_FEATURES")
  local spotfit="$SPOTFIT_ROOT/target/debug/spotfit"
  # A job that keeps one core busy for ~1.5 s holding 64 MiB, run twice, and one that sleeps.
  local busy=$'import time\nx = bytearray(64 << 20)\nt = time.time()\nwhile time.time() - t < 1.5:\n    pass\n'
  for _ in 1 2; do
    "$spotfit" --store "$store" run --job infra-busy --interval 0.2 -- python3 -c "$busy" >/dev/null 2>"$WORK/run.log" ||
      { cat "$WORK/run.log"; return 1; }
  done
  "$spotfit" --store "$store" run --job infra-sleep --interval 0.2 -- sleep 1 >/dev/null 2>"$WORK/run.log" ||
    { cat "$WORK/run.log"; return 1; }
  echo "$store/objects"
}

if [ -n "${SPOTFIT_QUERY_DATA:-}" ]; then
  DATA="$SPOTFIT_QUERY_DATA"
  log "named queries over $DATA (SPOTFIT_QUERY_DATA)"
else
  log "named queries over samples and records written by spotfit run (the real monitor)"
  DATA="$(real_monitor_data)" || { echo "spotfit run failed: no real monitor data"; echo "0 passed, 1 failed"; exit 1; }
fi
TOTAL_P=0; TOTAL_F=0
run_check() {
  local out="$WORK/check.out"
  python3 "$INFRA/athena/check_queries.py" "$TEMPLATE" "$INFRA/athena" "$@" | tee "$out" || true
  local p f
  read -r p f < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$out" | tail -1)
  if [ -z "${p:-}" ]; then p=0; f=1; echo "check_queries.py ended without a result line"; fi
  TOTAL_P=$((TOTAL_P + p)); TOTAL_F=$((TOTAL_F + f))
}
run_check "$DATA"

log "named queries over the generated fixture"
python3 "$INFRA/athena/fixture.py" "$WORK/fixture" >"$WORK/expected.json"
run_check "$WORK/fixture" "$WORK/expected.json"

echo "$TOTAL_P passed, $TOTAL_F failed"
[ "$TOTAL_F" -eq 0 ]
