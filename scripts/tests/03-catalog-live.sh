#!/usr/bin/env bash
# `scripts/build-catalog --live` against the emulator: moto answers DescribeInstanceTypes and
# DescribeInstanceTypeOfferings, the EC2 fault layer a seeded spot market, and — moto has no
# Pricing API — a stand-in serving GetProducts' documented response shape (PriceList entries as
# JSON strings, NextToken pages) from the committed snapshot's us-east-1 on-demand prices. The
# benchmark scores and Spot Advisor buckets, which no AWS API serves, come from a folder derived
# from the committed snapshot. Checks the built catalog: its contract, the live on-demand and
# observed spot prices (the lowest zone's), the zones from the offerings.
# Not checked here: the real services' answers (no account), the Advisor's public file (no network).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
dir=$(mktemp -d)
pricing_pid=""
cleanup() { [ -n "$pricing_pid" ] && kill "$pricing_pid" 2>/dev/null; scripts/local-stack stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
scripts/local-stack start "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
PY="$TOOLS/venv/bin/python"

# The offline inputs no API serves, and the stand-ins' data, from the committed snapshot.
"$PY" - "$dir" <<'PY'
import csv, json, os, sys, urllib.request
d = sys.argv[1]
cat = json.load(open("data/catalog/catalog.json"))
r = cat["regions"].index("us-east-1")
os.makedirs(f"{d}/offline")
types = {row[0]: row for row in cat["types"]}
with open(f"{d}/offline/performance.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["instance_type", "stress_ng_div16_bestn", "stress_ng_div16_bestn_cores", "stress_ng_div16_best1"])
    for t, row in types.items():
        if row[11] is not None:
            w.writerow([t, row[11], row[12], row[13]])
offers = [(types_list := cat["types"])[o[0]][0] for o in cat["offers"] if o[1] == r]
with open(f"{d}/offline/spot-advisor.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["region", "instance_type", "os", "savings_vs_ondemand_pct", "interruption_bucket", "interruption_freq", "interruption_max_pct"])
    for o in cat["offers"]:
        if o[1] == r and o[5] is not None and o[2] and o[3]:
            w.writerow(["us-east-1", cat["types"][o[0]][0], "Linux", round(100 * (1 - o[3] / o[2])), o[5], "", ""])
od = {cat["types"][o[0]][0]: o[2] for o in cat["offers"] if o[1] == r and o[2]}
json.dump(od, open(f"{d}/ondemand.json", "w"))
# the spot market: every us-east-1 type in moto's three zones, us-east-1b (use1-az1) the cheapest
rows = []
for o in cat["offers"]:
    if o[1] == r and o[3]:
        for az, f in (("us-east-1a", 1.0), ("us-east-1b", 0.7), ("us-east-1c", 0.9)):
            rows.append({"instance_type": cat["types"][o[0]][0], "az": az, "az_id": {"us-east-1a": "use1-az6", "us-east-1b": "use1-az1", "us-east-1c": "use1-az2"}[az],
                         "price": round(o[3] * f, 6), "at": "2026-01-01T00:00:00Z"})
req = urllib.request.Request(os.environ["SPOTFIT_FAULTS_URL"] + "/spot-prices", data=json.dumps({"prices": rows}).encode(),
                             headers={"Content-Type": "application/json"}, method="POST")
urllib.request.urlopen(req).read()
PY

# The Pricing stand-in (scripts/lib/pricing_standin.py): GetProducts' documented shape, 100 a page.
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$PY" scripts/lib/pricing_standin.py "$dir/ondemand.json" "$port" "$dir/pricing-calls.log" &
pricing_pid=$!
sleep 1

t0=$(date +%s.%N)
AWS_ENDPOINT_URL_PRICING="http://127.0.0.1:$port" "$PY" scripts/build-catalog --live --regions us-east-1 "$dir/offline" "$dir/catalog.json"
t1=$(date +%s.%N)

"$PY" - "$dir" "$(echo "$t1 - $t0" | bc)" <<'PY'
import importlib.machinery, importlib.util, json, sys
d, secs = sys.argv[1], sys.argv[2]
loader = importlib.machinery.SourceFileLoader("build_catalog", "scripts/build-catalog")
spec = importlib.util.spec_from_loader("build_catalog", loader); b = importlib.util.module_from_spec(spec); loader.exec_module(b)
new = json.load(open(f"{d}/catalog.json")); old = json.load(open("data/catalog/catalog.json"))
od = json.load(open(f"{d}/ondemand.json"))
fails = []
def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok: fails.append(what)
check((new["type_columns"], new["offer_columns"], new["codes"]) == (b.TYPE_COLUMNS, b.OFFER_COLUMNS, b.CODES), "the contract: columns and codes as the loader reads them")
check(new["regions"] == ["us-east-1"] and new["built_from"].startswith("AWS APIs on "), f"one region, built from the APIs: {new['built_from'][:60]}")
offers = {new["types"][o[0]][0]: o for o in new["offers"]}
oldr = old["regions"].index("us-east-1")
olds = {old["types"][o[0]][0]: o for o in old["offers"] if o[1] == oldr}
both = [t for t in offers if t in olds and olds[t][3] and t in od]
check(len(offers) > 300 and len(both) > 300, f"{len(offers)} us-east-1 offers, {len(both)} priced in both")
check(all(abs(offers[t][2] - round(od[t], 6)) < 1e-9 for t in both), "on-demand: the Pricing API's price for every type")
obs = b.CODES["spot_source"]["observed"]
check(all(offers[t][4] == obs and abs(offers[t][3] - round(round(olds[t][3] * 0.7, 6), 6)) < 1e-6 for t in both),
      "spot: observed, the cheapest zone's price in force (us-east-1b at 0.7x), not the Advisor's estimate")
az = new["az_ids"]
check(set(az) <= {"use1-az1", "use1-az2", "use1-az4", "use1-az5", "use1-az6", "use1-az3"} and offers[both[0]][6], f"zones from the offerings: {az}")
calls = [json.loads(l) for l in open(f"{d}/pricing-calls.log")]
f = {x["Field"]: x["Value"] for x in calls[0]["filters"]}
check(f.get("regionCode") == "us-east-1" and f.get("operatingSystem") == "Linux" and f.get("tenancy") == "Shared"
      and f.get("capacitystatus") == "Used" and f.get("preInstalledSw") == "NA", f"GetProducts filters {f}, {len(calls)} pages")
print(f"build-catalog --live (us-east-1, emulator): {secs} s")
print(f"{7 - len(fails)} passed, {len(fails)} failed")
sys.exit(1 if fails else 0)
PY
