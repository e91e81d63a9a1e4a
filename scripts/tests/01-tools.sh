#!/usr/bin/env bash
# The tool installer itself, on a fresh tools dir as a clean clone sees it: ensure_py must install
# a package the venv lacks (stop 18's CI failed every Python-using script because `pip show` of a
# missing package ended the script under pipefail), keep one already at its pinned version, and
# replace one pinned to another version. Uses `six`, a small pure-Python wheel. ensure_py is called
# as a plain statement, as the scripts call it: inside `&&` set -e would not apply and hide the bug.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { if [ "$2" = "$3" ]; then pass=$((pass+1)); else echo "FAIL: $1: got '$2', want '$3'" >&2; fail=$((fail+1)); fi; }
version() { "$tmp/tools/venv/bin/pip" show six 2>/dev/null | awk '/^Version:/{print $2}' || true; }

out=$(SPOTFIT_TOOLS="$tmp/tools" bash -c 'source scripts/lib/tools.sh; ensure_py six==1.16.0; echo ok' 2>/dev/null || true)
check "missing package installed" "$out/$(version)" "ok/1.16.0"
out=$(SPOTFIT_TOOLS="$tmp/tools" bash -c 'source scripts/lib/tools.sh; ensure_py six==1.16.0; echo ok' 2>&1 || true)
check "pinned and present: nothing installed" "$(grep -c 'pip install' <<<"$out" || true)" "0"
out=$(SPOTFIT_TOOLS="$tmp/tools" bash -c 'source scripts/lib/tools.sh; ensure_py six==1.17.0; echo ok' 2>/dev/null || true)
check "other pin replaces" "$out/$(version)" "ok/1.17.0"
out=$(SPOTFIT_TOOLS="$tmp/tools" bash -c 'source scripts/lib/tools.sh; ensure_py six; echo ok' 2>&1 || true)
check "unpinned and present: kept" "$(grep -c 'pip install' <<<"$out" || true)/$(version)" "0/1.17.0"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
