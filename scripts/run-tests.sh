#!/usr/bin/env bash
# Runs the whole suite (unit, integration on the real Temporal server, sandbox, browser).
# Fails when a test fails or when no test ran (pytest exit 5).
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest -p no:cacheprovider --durations=15 "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "run-tests: no test was collected — treating as a failure" >&2
  exit 1
fi
exit "$code"
