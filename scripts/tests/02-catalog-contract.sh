#!/usr/bin/env bash
# The builder's side of the catalog contract: the columns and codes scripts/build-catalog writes
# must be the ones in the committed data/catalog/catalog.json, which the Rust loader holds against
# its own (shared/core/src/catalog.rs, `a_snapshot_whose_columns_or_codes_differ…`). An edit to the
# builder alone fails here; to the loader alone, there.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 - <<'PY'
import importlib.machinery, importlib.util, json, sys
loader = importlib.machinery.SourceFileLoader("build_catalog", "scripts/build-catalog")
spec = importlib.util.spec_from_loader("build_catalog", loader)
b = importlib.util.module_from_spec(spec)
loader.exec_module(b)
doc = json.load(open("data/catalog/catalog.json"))
fails = 0
for name, theirs in [("type_columns", b.TYPE_COLUMNS), ("offer_columns", b.OFFER_COLUMNS), ("codes", b.CODES)]:
    if doc.get(name) != theirs:
        print(f"FAIL: {name}: builder {theirs!r}, committed catalog {doc.get(name)!r}", file=sys.stderr)
        fails += 1
print(f"{3 - fails} passed, {fails} failed")
sys.exit(1 if fails else 0)
PY
