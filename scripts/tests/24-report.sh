#!/usr/bin/env bash
# `spotfit report` on the local store, opened in a real headless Chromium (Debian's chromium,
# driven by playwright-core: scripts/report-check/check.mjs):
#   real `spotfit run`s of four jobs (one run three times, one holding 300 MiB, one OOM-killed in
#   its memory cgroup and retried bigger, one failing),
#   then the page of all of them and the page of one job. Each must render with no console
#   error and no network request, chart every sample the store holds for each charted attempt
#   (counted independently by scripts/lib/report_expect.py from the store's files), mark the
#   OOM kill on the killed attempt only, one trajectory point per attempt and one bar per day. A screenshot of one job's page is kept
#   at target/report-test/job-gzipper.png, and of the OOM-killed job at job-hungry.png.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
ensure_py
ensure_apt chromium
ensure_npm scripts/report-check
cargo build -q --workspace --all-targets --features "$SPOTFIT_FEATURES"
BIN="$PWD/target/debug/spotfit"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
OUT="$PWD/target/report-test"; mkdir -p "$OUT"
S="$WORK/store"

run() { "$BIN" --store "$S" run --interval 0.2 "$@" > /dev/null; }
for _ in 1 2 3; do run --job gzipper -- sh -c 'head -c 120000000 /dev/zero | gzip -1 > /dev/null'; done
run --job py-mem -- python3 -c 'import time; x = bytearray(300 << 20); time.sleep(1.2)'
# Sized (by its hint) to 512 MiB, needs ~900: OOM-killed in its memory cgroup, retried bigger.
cat > "$WORK/hungry.json" <<'JSON'
{"name": "hungry", "command": ["python3", "-c", "import time; x = bytearray(900 << 20); time.sleep(0.6)"],
 "hints": {"memory_gib": 0.5}, "retry": {"oom_memory_factor": 2.5}, "timeout_s": 120}
JSON
run "$WORK/hungry.json"
rc=0; run --job failing -- sh -c 'sleep 0.5; exit 3' || rc=$?
[ "$rc" = 3 ] || { echo "FAIL: the failing job's exit ($rc) was not passed on" >&2; exit 1; }

"$BIN" --store "$S" runs --json --limit 0 > "$WORK/runs.json"
PER_JOB=2
python3 scripts/lib/report_expect.py --runs "$WORK/runs.json" --store "$S" --per-job $PER_JOB > "$WORK/all.json"
# The OOM-killed attempt is among those charted, so its mark is checked (not passed vacuously).
python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); k=[k for k,v in e["oom"].items() if v]; assert len(k)==1 and k[0] in e["charted"], ("one OOM-killed attempt, charted", k)' "$WORK/all.json"
"$BIN" --store "$S" report --charts-per-job $PER_JOB -o "$WORK/all.html"
node scripts/report-check/check.mjs "$WORK/all.html" "$WORK/all.json" --shot "$OUT/job-hungry.png" --shot-job hungry

# One job's page: only its runs, and the screenshot of it.
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); json.dump([x for x in r if x["job"]=="gzipper"], open(sys.argv[2],"w"))' \
  "$WORK/runs.json" "$WORK/gzipper-runs.json"
python3 scripts/lib/report_expect.py --runs "$WORK/gzipper-runs.json" --store "$S" --per-job 10 > "$WORK/gzipper.json"
"$BIN" --store "$S" report gzipper -o "$WORK/gzipper.html"
node scripts/report-check/check.mjs "$WORK/gzipper.html" "$WORK/gzipper.json" --shot "$OUT/job-gzipper.png" --shot-job gzipper
[ -s "$OUT/job-gzipper.png" ] || { echo "FAIL: no screenshot" >&2; exit 1; }
echo "report: rendered and checked in Chromium; screenshot $OUT/job-gzipper.png"
