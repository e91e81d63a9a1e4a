#!/usr/bin/env bash
# Runs the cost simulator on the traces shipped in data/traces/ and checks the targets of the
# sizing issue that spotfit meets there today (so a regression fails), plus invariants that
# must hold on any trace (every job placed, the floor lowest, spotfit cheaper than every
# baseline and the Spare Cores rule, OOM retries within 2%). Targets spotfit misses on a
# trace are printed, not checked: docs/notes/sizing.md says why.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh

# One workspace build (the feature set `cargo test --workspace` built): per-package builds would
# unify features differently and rebuild the AWS SDK crates.
cargo build -q --workspace --all-targets --features "$SPOTFIT_FEATURES"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# The CLI's subcommand is the same command.
target/debug/spotfit simulate data/traces/sizey_iwd.csv.gz --json > "$out/cli-sizey.json"

for t in data/traces/*.csv.gz; do
  name="$(basename "$t" .csv.gz)"
  target/debug/spotfit-sim "$t" --json --plot "$out/$name.svg" > "$out/$name.json"
  target/debug/spotfit-sim "$t" | sed -n '2,8p'
done

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
passed = failed = 0
def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}")
# Targets met on each shipped trace today (regression guard).
met = {
    "sizey_iwd": ["oom_retries", "beats_sparecores"],
    "ksegments_eager": ["oom_retries", "beats_sparecores"],
    "lotaru": ["oom_retries", "vs_batch_on_demand", "beats_sparecores"],
}
# spotfit's saving vs batch-spot today, less half a point (regression guard, not a target):
# sizey 10.3%, ksegments 9.7%, lotaru 29.7% (docs/notes/sizing.md).
min_saving_vs_spot = {"sizey_iwd": 0.098, "ksegments_eager": 0.092, "lotaru": 0.292}
for name, targets in met.items():
    r = json.load(open(os.path.join(out, name + ".json")))
    p = {x["policy"]: x for x in r["policies"]}
    sf = p["spotfit"]
    for t in targets:
        check(r["targets"][t], f"{name}: target {t} met")
    for t, ok in r["targets"].items():
        if not ok:
            print(f"note: {name}: target {t} missed")
    for pol in p.values():
        check(pol["unplaced"] == 0, f"{name}: {pol['policy']} placed every job")
        check(pol["jobs"] == r["jobs"], f"{name}: {pol['policy']} has an outcome for every job")
        check(p["floor"]["total_cost_usd"] <= pol["total_cost_usd"] + 1e-9, f"{name}: floor <= {pol['policy']}")
        check(len(pol["per_job"]) == r["jobs"], f"{name}: {pol['policy']} per-job breakdown in --json")
    for base in ("batch-on-demand", "batch-spot", "sparecores-rule"):
        check(sf["total_cost_usd"] < p[base]["total_cost_usd"], f"{name}: spotfit cheaper than {base}")
    check(sf["oom_retry_rate"] <= 0.02, f"{name}: spotfit OOM retries <= 2%")
    check(sf["oom_retry_rate"] <= p["sparecores-rule"]["oom_retry_rate"], f"{name}: spotfit OOM retries <= Spare Cores rule's")
    saving = 1 - sf["total_cost_usd"] / p["batch-spot"]["total_cost_usd"]
    check(saving >= min_saving_vs_spot[name], f"{name}: spotfit {saving:.1%} below batch-spot (>= {min_saving_vs_spot[name]:.1%})")
    svg = open(os.path.join(out, name + ".svg")).read()
    check(svg.startswith("<svg") and "spotfit" in svg, f"{name}: --plot wrote an SVG")
cli = json.load(open(os.path.join(out, "cli-sizey.json")))
ref = json.load(open(os.path.join(out, "sizey_iwd.json")))
check([p["total_cost_usd"] for p in cli["policies"]] == [p["total_cost_usd"] for p in ref["policies"]],
      "spotfit simulate == spotfit-sim")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
