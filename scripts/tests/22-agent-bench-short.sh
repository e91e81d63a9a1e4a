#!/usr/bin/env bash
# The monitor benchmark, short: one 20 s repetition of scripts/bench-monitor on its default —
# the packaged spotfit-agent shipping to S3 (moto) during the run, beside resource-tracker
# 0.5.0 — with its targets checked (<= 1 ms CPU per 1 s sample, <= 6 MiB peak RSS, CPU and
# memory within +-5 %). The full figures come from `scripts/bench-monitor 3 60`.
set -euo pipefail
cd "$(dirname "$0")/../.."
if scripts/bench-monitor 1 20; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; exit 1; fi
