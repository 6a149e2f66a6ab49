#!/usr/bin/env bash
# The whole test suite: set up .venv if needed, then lint (ruff), type-check (mypy) and pytest.
# mypy (one core, ~2 min without its cache) runs beside pytest, whose tests mostly wait on the
# processes they start; the script fails if either fails. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
echo "== ruff" && .venv/bin/ruff check .
mypy_log="$(mktemp)"
.venv/bin/mypy > "$mypy_log" 2>&1 &
mypy_pid=$!
echo "== pytest"
pytest_rc=0
.venv/bin/python -m pytest "$@" || pytest_rc=$?
mypy_rc=0
wait "$mypy_pid" || mypy_rc=$?
echo "== mypy" && cat "$mypy_log" && rm -f "$mypy_log"
[ "$pytest_rc" -eq 0 ] && [ "$mypy_rc" -eq 0 ]
