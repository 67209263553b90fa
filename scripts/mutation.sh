#!/usr/bin/env bash
# Mutation testing of the safety core with mutmut: each mutant is one small change to a safety
# check (a comparison flipped, a condition dropped, a constant changed); a test must fail for it.
#
#   scripts/mutation.sh                 safety files changed since the base ref (see below)
#   MUTATION_ALL=1 scripts/mutation.sh  every safety file
#   scripts/mutation.sh FILE...         these files (each must be a safety file)
#
# Environment:
#   MUTATION_BASE      git ref to diff against. Default: the merge base with the upstream branch
#                      when HEAD is ahead of it, else HEAD~1 (on a fresh clone of main: what the
#                      newest commit, usually a merge, changed).
#   MUTATION_TESTS     pytest arguments selecting the tests that may kill mutants
#                      (default: tests/unit tests/integration).
#   MUTATION_JOBS      parallel mutant runs (default: number of cores).
#   MUTATION_KEEP=DIR  keep the scratch copy (mutants/, results) in DIR for `mutmut show`.
#   MUTATION_SHOW      how many survivors to print with their diff (default 40).
#   MUTATION_BUDGET_S  stop mutmut after this many seconds (CI); mutants not reached by then
#                      are reported and count as not killed.
#
# It works on a scratch copy of the tracked files (uncommitted edits included), never in the
# checkout. Surviving mutants are printed with their diff; each must be killed by a new test or
# listed with its reason in tests/mutation-equivalents.md (those are counted as killed here,
# and listed apart). The last line is always `mutation: K killed of N (P%)`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY="$ROOT/.venv/bin/python"
if [ ! -x "$PY" ]; then
  python3 -m venv .venv
  "$PY" -m pip install -q --disable-pip-version-check -e '.[test]'
fi

# The safety core. The ledger and the order path join this list once they settle.
SAFETY=(
  gateway/risk/engine.py gateway/risk/activity.py gateway/risk/rules
  gateway/policy/signing.py gateway/policy/trust.py gateway/policy/store.py
  gateway/audit/log.py gateway/audit/verify.py gateway/audit/checkpoint.py
  gateway/keys/clients.py gateway/keys/vault.py
  gateway/control
)
# Being rewritten: mutate them once the rewrite lands (then move them into SAFETY).
EXCLUDED=(gateway/pipeline.py gateway/risk/portfolio.py)

safety_files() {
  local entry
  for entry in "${SAFETY[@]}"; do
    if [ -d "$entry" ]; then find "$entry" -name '*.py' ! -name '__init__.py'; else echo "$entry"; fi
  done | sort -u
}

is_safety() {
  safety_files | grep -qxF "$1"
}

base_ref() {
  if [ -n "${MUTATION_BASE:-}" ]; then echo "$MUTATION_BASE"; return; fi
  local upstream
  if upstream=$(git rev-parse --abbrev-ref --symbolic-full-name '@{upstream}' 2>/dev/null) \
     && [ "$(git rev-parse "$upstream")" != "$(git rev-parse HEAD)" ]; then
    git merge-base HEAD "$upstream"
  elif git rev-parse -q --verify HEAD~1 >/dev/null; then
    echo HEAD~1
  else
    git hash-object -t tree /dev/null  # a single commit: everything is new
  fi
}

if [ $# -gt 0 ]; then
  FILES=()
  for f in "$@"; do
    is_safety "$f" || { echo "mutation.sh: $f is not a safety file (see SAFETY in $0)" >&2; exit 2; }
    FILES+=("$f")
  done
elif [ "${MUTATION_ALL:-0}" = 1 ]; then
  mapfile -t FILES < <(safety_files)
else
  BASE=$(base_ref)
  mapfile -t CHANGED < <(git diff --name-only "$BASE" -- gateway; git diff --name-only -- gateway)
  FILES=()
  for f in $(printf '%s\n' "${CHANGED[@]}" | sort -u); do
    [ -f "$f" ] && is_safety "$f" && FILES+=("$f")
  done
  echo "mutation.sh: safety files changed since $BASE: ${FILES[*]:-none}"
fi
for f in "${FILES[@]}"; do
  for x in "${EXCLUDED[@]}"; do [ "$f" = "$x" ] && { echo "mutation.sh: $f is excluded" >&2; exit 2; }; done
done

if [ ${#FILES[@]} -eq 0 ]; then
  echo "mutation: 0 killed of 0 (100%)"
  exit 0
fi

WORK=${MUTATION_KEEP:-$(mktemp -d /tmp/mutation.XXXXXX)}
mkdir -p "$WORK"
[ -n "${MUTATION_KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$WORK"

# mutmut reads [mutmut] from setup.cfg when pyproject.toml has no [tool.mutmut].
{
  echo "[mutmut]"
  echo "source_paths = gateway"
  echo "only_mutate ="
  for f in "${FILES[@]}"; do echo "    $f"; done
  # Tests read files beside the package (policies/default.yaml, ...): copy everything tracked.
  echo "also_copy ="
  for f in $(git ls-files | cut -d/ -f1 | sort -u); do [ "$f" = gateway ] || echo "    $f"; done
  echo "pytest_add_cli_args_test_selection ="
  for a in ${MUTATION_TESTS:-tests/unit tests/integration}; do echo "    $a"; done
  # No random order, no per-test timeout plugin interplay: mutmut times each mutant itself.
  echo "pytest_add_cli_args ="
  echo "    -p"
  echo "    no:randomly"
  echo "    -q"
  echo "    -x"
  echo "timeout_multiplier = 5.0"
  echo "timeout_constant = 10.0"
} > "$WORK/setup.cfg"

cd "$WORK"
JOBS=${MUTATION_JOBS:-$(nproc)}
echo "mutation.sh: mutating ${#FILES[@]} file(s) with $JOBS worker(s) in $WORK"
status=0
BUDGET=()
[ -n "${MUTATION_BUDGET_S:-}" ] && BUDGET=(timeout --signal=INT --kill-after=30 "$MUTATION_BUDGET_S")
"${BUDGET[@]}" "$PY" -m mutmut run --max-children "$JOBS" > mutmut-run.log 2>&1 || status=$?
if [ $status -eq 124 ] || [ $status -eq 130 ]; then
  echo "mutation.sh: stopped at the time budget (${MUTATION_BUDGET_S} s); mutants not reached count as not killed"
  status=0
elif [ $status -ne 0 ]; then
  tr "\r" "\n" < mutmut-run.log | tail -40
  echo "mutation.sh: mutmut run failed (exit $status)" >&2
fi
"$PY" -m mutmut results --all true > mutmut-results.txt 2>/dev/null || true
"$PY" - "$ROOT/tests/mutation-equivalents.md" <<'EOF'
"""Count mutmut's verdicts; survivors listed in mutation-equivalents.md count as killed."""
import os
import re
import subprocess
import sys
from pathlib import Path

equivalents = set()
listing = Path(sys.argv[1])
if listing.exists():
    equivalents = set(re.findall(r"`(gateway\.[\w.]+__mutmut_\d+)`", listing.read_text()))

killed = total = 0
survivors, equivalent, other, unchecked = [], [], [], []
for line in Path("mutmut-results.txt").read_text().splitlines():
    name, _, status = line.strip().rpartition(": ")
    if not name:
        continue
    total += 1
    if status == "killed":
        killed += 1
    elif status in ("survived", "no tests") and name in equivalents:
        killed += 1
        equivalent.append(name)
    elif status in ("survived", "no tests"):
        survivors.append((name, status))
    elif status == "not checked":  # mutmut stopped before it: counts against the score
        unchecked.append(name)
    else:  # timeout, suspicious, segfault: a mutant that hangs or crashes the tests is caught
        killed += 1
        other.append((name, status))

SHOW = int(os.environ.get("MUTATION_SHOW", "40"))  # `mutmut show` costs a second each
for i, (name, status) in enumerate(survivors):
    print(f"--- {status}: {name}")
    if i < SHOW:
        diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], capture_output=True, text=True).stdout
        print("\n".join(diff.splitlines()[1:]))
if len(survivors) > SHOW:
    print(f"(diffs of the first {SHOW} only; `mutmut show NAME` in the scratch copy shows any other)")
if equivalent:
    print(f"{len(equivalent)} survivor(s) listed as equivalent in tests/mutation-equivalents.md")
if other:
    print(f"{len(other)} mutant(s) caught by a timeout or crash: " + ", ".join(f"{n} ({s})" for n, s in other[:20]))
if unchecked:
    print(f"{len(unchecked)} mutant(s) not checked (mutmut stopped early); counted as not killed")
pct = 100.0 * killed / total if total else 100.0
print(f"mutation: {killed} killed of {total} ({pct:.1f}%)")
EOF
exit $status
