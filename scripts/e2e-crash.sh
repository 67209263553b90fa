#!/usr/bin/env bash
# SIGKILL during replaces and closes, 20 runs (the main suite runs 2): every order at the broker
# maps to a decision record by client id, and `audit verify` is green after each restart.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { python3 -m venv .venv; .venv/bin/python -m pip install -q -e '.[test]'; }
GATEWAY_CRASH_RUNS=${GATEWAY_CRASH_RUNS:-20} exec .venv/bin/python -m pytest -q -p no:randomly \
  tests/integration/test_crash_replaces.py "$@"
