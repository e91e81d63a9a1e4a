# Sourced by scripts/tests/20-monitor-*.sh: the binary behind `spotfit monitor` and a tiny
# check counter. $SPOTFIT_MONITOR_BIN wins; otherwise the crate's example binary (same
# arguments and code path as `spotfit monitor`, uploads to file:// only), built in debug.
monitor_bin() {
  if [ -n "${SPOTFIT_MONITOR_BIN:-}" ]; then echo "$SPOTFIT_MONITOR_BIN"; return; fi
  cargo build -q -p spotfit-monitor --features cli --example spotfit-monitor >&2
  echo "$PWD/target/debug/examples/spotfit-monitor"
}
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass+1)); echo "ok   - $1"; else fail=$((fail+1)); echo "FAIL - $1" >&2; fi; }
