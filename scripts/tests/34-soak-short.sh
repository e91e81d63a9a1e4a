#!/usr/bin/env bash
# A short soak (scripts/soak): 1 execution/s for 60 s through the local Step Functions service
# with warm Lambda pools, the event pump, the EC2 fault layer (capacity errors and throttling)
# and moto with IAM enforced, instant stand-in jobs; the same assertions as the full soak (no
# duplicate instance, no orphan instance or wait, every attempt recorded exactly once, profile
# counts, no IAM denial, the rate sustained) and its latency and CPU figures.
# The full one (3/s for 10 minutes) is not for CI: run `scripts/soak` by hand.
# No cargo here: the binaries come from SPOTFIT_BIN_DIR (default target/debug), as in scripts/soak.
# Prints "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/soak --rate "${SOAK_RATE:-1}" --minutes "${SOAK_MINUTES:-1}" --drain-s 60
