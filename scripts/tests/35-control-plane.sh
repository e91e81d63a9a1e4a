#!/usr/bin/env bash
# The control-plane cost model (scripts/bench-control-plane) run with its targets checked: at most
# 15 transitions per attempt, a 14-day attempt's history under 1,000 events, at most $0.0005 per
# job at 4,000 jobs a day whatever its length — from executed histories, before and after.
set -euo pipefail
cd "$(dirname "$0")/../.."
if scripts/bench-control-plane --check; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; exit 1; fi
