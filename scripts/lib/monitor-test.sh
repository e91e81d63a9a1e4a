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

# start_moto_s3: a moto server on 127.0.0.1:$PORT (log in $WORK/moto.log), MOTO_PID set, bucket
# `bkt` created. Needs ensure_py "moto[server]..." and the AWS_* test variables exported.
start_moto_s3() {
  moto_server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
  MOTO_PID=$!
  for _ in $(seq 50); do curl -s "http://127.0.0.1:$PORT" >/dev/null 2>&1 && break; sleep 0.1; done
  "$TOOLS/venv/bin/python" -c 'import boto3; boto3.client("s3").create_bucket(Bucket="bkt")'
}

# verify_s3_run RUN_ID EXPECT_STATUS [PREFIX=pre]: downloads the run's parts from s3://bkt/PREFIX/,
# checks every sample parses and seq 0..N-1 arrived exactly once (no gap, no duplicate, across
# all parts), the summary counts the same N with EXPECT_STATUS, and the exit marker is there.
verify_s3_run() {
  "$TOOLS/venv/bin/python" - "$1" "$2" "${3:-pre}" <<'PY'
import boto3, gzip, json, sys
run, want_status, prefix = sys.argv[1], sys.argv[2], sys.argv[3].strip("/") + "/"
s3 = boto3.client("s3")
keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket="bkt", Prefix=prefix) for o in p.get("Contents", [])]
parts = sorted(k for k in keys if f"/run={run}/part-" in k and k.startswith(prefix + "samples/"))  # not logs/ parts
seqs = []
for k in parts:
    body = gzip.decompress(s3.get_object(Bucket="bkt", Key=k)["Body"].read()).decode()
    seqs += [json.loads(l)["seq"] for l in body.splitlines() if l]
summary = [k for k in keys if k.endswith(f"/{run}.json") and k.startswith(prefix + "runs/")]
marker = [k for k in keys if k.endswith(f"/{run}.exit")]
ok = sorted(seqs) == list(range(len(seqs))) and len(seqs) == len(set(seqs)) and len(seqs) > 0
status = json.loads(s3.get_object(Bucket="bkt", Key=summary[0])["Body"].read())["status"] if summary else None
n = json.loads(s3.get_object(Bucket="bkt", Key=summary[0])["Body"].read())["samples"] if summary else -1
print(f"run {run}: {len(parts)} parts, {len(seqs)} samples (summary says {n}), unique {len(set(seqs))}, "
      f"gap-free {sorted(seqs) == list(range(len(seqs)))}, summary {bool(summary)}, marker {bool(marker)}, status {status}")
sys.exit(0 if ok and n == len(seqs) and marker and status == want_status else 1)
PY
}
