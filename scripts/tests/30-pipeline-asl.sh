#!/usr/bin/env bash
# The state machine definition, offline: asl-validator accepts it (and rejects a broken copy),
# only the documented ${…Arn} placeholders appear, every Retry/Catch name is one a Lambda
# returns (shared/core/src/error_names.rs) or built in, every Task after Size catches into
# termination. Prints "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
ensure_npm statemachine/tests
node statemachine/tests/validate.mjs
