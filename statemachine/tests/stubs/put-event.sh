#!/usr/bin/env bash
# Stand-in for SPOTFIT_PUT_EVENT in the local-sfn tests: one EventBridge event JSON on stdin,
# appended as one line to $STUB_LOG/events.jsonl.
set -euo pipefail
tr -d '\n' >> "$STUB_LOG/events.jsonl"
echo >> "$STUB_LOG/events.jsonl"
