#!/usr/bin/env bash
# Container jobs measured as the container, with podman (no Docker engine here) and a registry
# on loopback that refuses anonymous pulls (htpasswd: the stand-in for ECR's token login).
#   (a) without a login the pull is refused: the job fails, no container is left
#   (b) logged in, the agent pulls and runs the `burn` workload (holds M MiB, uses C CPU-seconds
#       of its own) and measures it through the container's cgroup: CPU seconds and peak memory
#       within ±5 % of C and M (the client process it waits on uses almost nothing)
#   (c) the same job with a memory limit below its need: exit 137, status oom_killed
#   (d) the runtime gets `--memory N --memory-swap N`, `--gpus all` and `--cidfile`, and is
#       asked whether the container was OOM-killed and to remove it, each as argv
#   (e) SIGTERM to the agent mid-run: summary and exit marker shipped, the container (whose
#       PID 1 ignores SIGTERM) killed and removed after them, the agent gone within 2.5 s
# The agent is $SPOTFIT_AGENT_BIN, else the SDK-free `spotfit-monitor` example binary (the
# same code path as `spotfit monitor` on an instance).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
source scripts/lib/monitor-test.sh
source scripts/lib/containers.sh
BIN="${SPOTFIT_AGENT_BIN:-$(monitor_bin)}"
WORK="$(mktemp -d)"
TAG="spotfit-test-$$"
LOCAL_REF="localhost/$TAG/burn:1"
MIB=256 CPU_S=8
cleanup() { containers_cleanup; if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

containers_init "$WORK/ctr"
CLEANUP_IMAGES="$LOCAL_REF"
make_burn_image "$WORK" "$LOCAL_REF"
registry_start "$WORK"
REMOTE="$REGISTRY/$TAG/burn:1"
CLEANUP_IMAGES="$LOCAL_REF $REMOTE"
registry_login
registry_push "$LOCAL_REF" "$TAG/burn:1"
podman logout "$REGISTRY" >/dev/null
echo "image $REMOTE pushed to the authenticated registry; logged out"

# A runtime that logs each call's argv, one word a line, then is podman.
cat > "$WORK/runtime" <<EOF
#!/bin/bash
{ printf '%s\n' "\$@"; echo ---; } >> "$WORK/runtime.log"
exec podman "\$@"
EOF
chmod +x "$WORK/runtime"
agent() { "$BIN" --no-gpu --imds off --interval 0.25 --container-runtime "$WORK/runtime" "$@"; }
leftover() { podman ps -aq --filter "ancestor=$REMOTE" | wc -l; }

# (a) anonymous: refused before any container exists
set +e
agent --image "$REMOTE" --summary "$WORK/a.json" -- burn 8 0.1 > "$WORK/a.out" 2> "$WORK/a.err"
rc_a=$?
set -e
check "(a) an unauthenticated pull is refused: the job fails (exit $rc_a)" "[ $rc_a -ne 0 ]"
check "(a) the runtime said why (unauthorized)" "grep -qi 'unauthorized\|authentication required' $WORK/a.err"
check "(a) the run is recorded as failed" "grep -q '\"status\": \"failed\"' $WORK/a.json"
check "(a) no container is left" "[ $(leftover) = 0 ]"

# (b) logged in: pulled, run, measured through the container's cgroup
registry_login
: > "$WORK/runtime.log"
set +e
agent --image "$REMOTE" --output "$WORK/b.ndjson" --summary "$WORK/b.json" --upload "file://$WORK/up" \
  -- burn "$MIB" "$CPU_S" > "$WORK/b.out" 2> "$WORK/b.err"
rc_b=$?
set -e
tail -n 12 "$WORK/b.err"
check "(b) the job succeeded (exit $rc_b)" "[ $rc_b = 0 ]"
python3 - "$WORK/b.ndjson" "$WORK/b.json" "$MIB" "$CPU_S" > "$WORK/b.facts" <<'PY'
import json, sys
samples = [json.loads(l) for l in open(sys.argv[1])]
summary = json.load(open(sys.argv[2]))
mib, cpu = float(sys.argv[3]), float(sys.argv[4])
cpu_s = sum(s["cpu_cores"] * s["interval_s"] for s in samples)
mem_mib = summary["mem_max_bytes"] / 2**20
print("cpu_s", f"{cpu_s:.3f}")
print("cpu_err_pct", f"{100 * (cpu_s - cpu) / cpu:+.2f}")
print("mem_mib", f"{mem_mib:.1f}")
print("mem_err_pct", f"{100 * (mem_mib - mib) / mib:+.2f}")
print("cpu_ok", int(abs(cpu_s - cpu) <= 0.05 * cpu))
print("mem_ok", int(abs(mem_mib - mib) <= 0.05 * mib))
print("metric", summary["mem_metric"])
print("status", summary["status"])
print("cgroup_samples", sum(1 for s in samples if s.get("cgroup_working_set_bytes") is not None))
# Before the container's cgroup is found the samples are the runtime client's (its pull).
print("client_cpu_s", f'{sum(s["cpu_cores"] * s["interval_s"] for s in samples if s["mem_metric"] != "cgroup"):.3f}')
print("samples", len(samples))
PY
f() { awk -v k="$1" '$1==k{print $2}' "$WORK/b.facts"; }
echo "measured: CPU $(f cpu_s) s (built to use $CPU_S s: $(f cpu_err_pct) %), peak memory $(f mem_mib) MiB (holds $MIB MiB: $(f mem_err_pct) %), $(f cgroup_samples)/$(f samples) samples from the container's cgroup, the others (the client, before the cgroup was found) $(f client_cpu_s) s of CPU"
check "(b) CPU seconds within ±5 % of $CPU_S s ($(f cpu_s) s)" "[ $(f cpu_ok) = 1 ]"
check "(b) peak memory within ±5 % of $MIB MiB ($(f mem_mib) MiB)" "[ $(f mem_ok) = 1 ]"
check "(b) memory is the container's cgroup working set" "[ $(f metric) = cgroup ]"
check "(b) summary status succeeded" "[ $(f status) = succeeded ]"
check "(b) summary and exit marker shipped" "[ -n \"\$(find $WORK/up -name '*.json')\" ] && [ -n \"\$(find $WORK/up -name '*.exit')\" ]"
check "(b) the container was inspected for an OOM kill, then removed (argv)" \
  "grep -qx '{{.State.OOMKilled}}' $WORK/runtime.log && grep -A2 -x rm $WORK/runtime.log | grep -qx -- -f"
check "(b) no container is left" "[ $(leftover) = 0 ]"

# (c) over its memory limit: the kernel kills it in the container, and the run says OOM
: > "$WORK/runtime.log"
set +e
agent --image "$REMOTE" --memory-limit 128m --summary "$WORK/c.json" -- burn "$MIB" 2 > /dev/null 2> "$WORK/c.err"
rc_c=$?
set -e
check "(c) over its limit the job exits 137 (got $rc_c)" "[ $rc_c = 137 ]"
check "(c) summary status oom_killed" "grep -q '\"status\": \"oom_killed\"' $WORK/c.json"
check "(c) no container is left" "[ $(leftover) = 0 ]"

# (d) the limit and the GPUs as separate words before `--` (no GPU here: the argv is the check;
# the argv builder's unit test covers the rest)
check "(d) --memory and --memory-swap of 128 MiB reached the runtime" \
  "grep -A1 -x -- --memory $WORK/runtime.log | grep -qx $((128 << 20)) && grep -A1 -x -- --memory-swap $WORK/runtime.log | grep -qx $((128 << 20))"
check "(d) the container's id goes to a cidfile" "grep -qx -- --cidfile $WORK/runtime.log"
check "(d) not --rm (the agent removes it after inspecting it)" "! grep -qx -- --rm $WORK/runtime.log"
cat > "$WORK/fake-runtime" <<EOF
#!/bin/bash
printf '%s\n' "\$@" > "$WORK/fake.log"
EOF
chmod +x "$WORK/fake-runtime"
"$BIN" --no-gpu --imds off --interval 0.25 --container-runtime "$WORK/fake-runtime" --gpus --memory-limit 64m \
  --image "$REMOTE" -- burn 1 0 > /dev/null 2>&1 || true
check "(d) --gpus all reached the runtime, before the image" \
  "grep -B100 -x -- -- $WORK/fake.log | grep -A1 -x -- --gpus | grep -qx all"

# (e) SIGTERM to the agent mid-run (a spot interruption): shipped first, then the container goes
"$BIN" --no-gpu --imds off --interval 0.25 --container-runtime "$WORK/runtime" --image "$REMOTE" \
  --summary "$WORK/e.json" --upload "file://$WORK/up-e" -- burn 16 60 > /dev/null 2> "$WORK/e.err" &
apid=$!
for _ in $(seq 100); do [ "$(leftover)" = 1 ] && break; sleep 0.1; done
sleep 1.5
t0=$(date +%s%N)
kill -TERM "$apid"
wait "$apid" || true
took_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
# The flush (last sample, summary, marker) has 1.8 s; removing the container comes after it.
check "(e) on SIGTERM the agent ends within 2.5 s (${took_ms} ms)" "[ $took_ms -le 2500 ]"
check "(e) the run is recorded interrupted and its exit marker shipped" \
  "grep -q '\"status\": \"interrupted\"' $WORK/e.json && [ -n \"\$(find $WORK/up-e -name '*.exit')\" ]"
check "(e) the container was killed and removed" "[ $(leftover) = 0 ]"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
