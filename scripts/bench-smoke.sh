#!/usr/bin/env bash
# Every benchmark in bench/ in a smoke mode (tiny counts, no timing assertions): CI runs this so
# a policy or interface change that breaks one fails the build. Full runs: see each file's doc.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY bench/bench_policy.py --iterations 300 --rounds 1 --large 1000
$PY bench/bench_audit.py --records 300 --seq-seconds 1
$PY bench/bench_proxy.py --smoke
$PY bench/bench_budget.py --smoke
$PY bench/bench_dashboard.py --smoke
echo "bench-smoke: every benchmark ran"
