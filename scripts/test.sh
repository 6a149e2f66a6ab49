#!/usr/bin/env bash
# The whole test suite: set up .venv if needed, then lint (ruff), type-check (mypy) and pytest.
# mypy (one core, ~1 min without its cache) starts first, at the lowest priority: it runs beside
# the numba kernels' compilation and then in the time pytest's tests spend waiting on the
# processes they start, instead of taking a core from them (that cost pytest ~1 min of its 10).
# The script fails if either fails. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
FUSION_STREAM_SETUP_JIT=0 scripts/setup.sh dev
mypy_log="$(mktemp)"
nice -n 19 .venv/bin/mypy > "$mypy_log" 2>&1 &
mypy_pid=$!
# the numba kernels' cache, beside mypy rather than beside pytest (both take one core)
.venv/bin/python -m fusion_stream.cli.jit >/dev/null
echo "== ruff" && .venv/bin/ruff check .
echo "== pytest"
pytest_rc=0
.venv/bin/python -m pytest "$@" || pytest_rc=$?
mypy_rc=0
wait "$mypy_pid" || mypy_rc=$?
echo "== mypy" && cat "$mypy_log" && rm -f "$mypy_log"
[ "$pytest_rc" -eq 0 ] && [ "$mypy_rc" -eq 0 ]
