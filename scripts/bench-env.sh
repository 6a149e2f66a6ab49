#!/usr/bin/env bash
# Run bench/transport.py in its own environment, .venv-bench, with the peers it compares against
# (iceoryx2, Eclipse Zenoh: bench/requirements-peers.txt). The product's .venv never gets them.
# Only what `import fusion_stream` needs for the transport is installed (numpy, pyzmq, msgspec,
# rich, at the product's own bounds); fusion_stream itself runs from this checkout (PYTHONPATH).
#   scripts/bench-env.sh                      # full run with the peers
#   scripts/bench-env.sh --sizes 100B,4MiB,40MB --repeat 1 --json out/transport.json
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-bench
PY=${PYTHON:-python3}
if [[ ! -x $VENV/bin/python ]]; then
  "$PY" -m venv "$VENV"
fi
STAMP=$VENV/.installed
if [[ ! -f $STAMP || bench/requirements-peers.txt -nt $STAMP || pyproject.toml -nt $STAMP ]]; then
  # the transport's runtime dependencies, with the bounds pyproject.toml gives them
  mapfile -t DEPS < <("$VENV/bin/python" - <<'PYEOF'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
wanted = {"numpy", "pyzmq", "msgspec", "rich"}
for d in deps:
    if re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower() in wanted:
        print(d)
PYEOF
)
  if (( ${#DEPS[@]} != 4 )); then
    echo "bench-env.sh: expected numpy, pyzmq, msgspec and rich in pyproject.toml, found: ${DEPS[*]}" >&2
    exit 1
  fi
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "${DEPS[@]}" -r bench/requirements-peers.txt
  touch "$STAMP"
fi
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$VENV/bin/python" bench/transport.py "$@"
