#!/usr/bin/env bash
# Sets up a virtual environment (if needed) with the gateway and its test extras, then runs
# the whole test suite. Extra arguments go to pytest.
#
# COVERAGE=1 (the default in CI) measures line coverage of gateway/, including the gatewayctl
# processes the tests start (coverage's subprocess patch), and prints it per module at the end,
# with the safety core's total on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

if [ "${COVERAGE:-${CI:+1}}" != 1 ]; then
  exec .venv/bin/python -m pytest -q "$@"
fi

RCFILE=tests/coverage.ini
DATA=$(mktemp -d "${TMPDIR:-/tmp}/gw-coverage.XXXXXX")
trap 'rm -rf "$DATA"' EXIT
export COVERAGE_FILE="$DATA/cov"  # absolute: subprocesses run in other directories
status=0
.venv/bin/python -m coverage run --rcfile="$RCFILE" -m pytest -q "$@" || status=$?
.venv/bin/python -m coverage combine --rcfile="$RCFILE" -q "$DATA" >/dev/null 2>&1 || true
echo
echo "coverage per module (tests and the gatewayctl processes they start):"
.venv/bin/python -m coverage report --rcfile="$RCFILE" --sort=cover || true
# The safety core (see scripts/mutation.sh); the issue's target is 95%.
SAFETY="gateway/risk/*,gateway/policy/*,gateway/audit/*,gateway/keys/*,gateway/control/*,gateway/pipeline*,gateway/guards/*"
total=$(.venv/bin/python -m coverage report --rcfile="$RCFILE" --include="$SAFETY" --format=total 2>/dev/null || echo "?")
echo "coverage: safety core ${total}% of lines"
exit $status
