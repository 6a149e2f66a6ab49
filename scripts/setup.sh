#!/usr/bin/env bash
# Create .venv and install fusion_stream with what the chosen extras need. Idempotent and quick
# when nothing changed: the install is redone only when pyproject.toml or the extras change.
# Usage: scripts/setup.sh [EXTRAS]   (default EXTRAS: dev)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"

py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "fusion_stream needs Python >= 3.10 (found: $("$py" --version 2>&1 || echo none))." >&2
    echo "Install it (Debian/Ubuntu: apt-get install python3 python3-venv) or set PYTHON=/path/to/python3." >&2
    exit 1
fi

# System libraries that wheels need but do not bundle: open3d loads libusb and libgomp.
need=()
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || need+=(libusb-1.0-0)
ldconfig -p 2>/dev/null | grep -q 'libgomp.so.1' || need+=(libgomp1)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing system packages: ${need[*]}" >&2
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
    if command -v apt-get >/dev/null; then
        $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "no apt-get here: install ${need[*]} with your package manager (the simulator needs them)" >&2
    fi
fi
# The viewer's browser test drives a headless Chromium; without one that test is skipped, so a
# failed install is a warning, not an error.
if [[ "$extras" == *dev* ]] && ! command -v chromium-headless-shell >/dev/null && ! command -v chromium >/dev/null \
    && command -v apt-get >/dev/null; then
    echo "installing chromium-headless-shell (for the viewer's browser test)" >&2
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
    { $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq chromium-headless-shell >/dev/null; } \
        || echo "warning: could not install chromium-headless-shell; the viewer's browser test will be skipped" >&2
fi

if [ ! -x .venv/bin/python ]; then
    if ! "$py" -m venv .venv 2>/dev/null; then
        echo "python venv module missing; installing python3-venv" >&2
        if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv >/dev/null; fi
        "$py" -m venv .venv
    fi
fi

stamp=".venv/.fusion_stream-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)-$extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing fusion_stream[$extras] into .venv ..." >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]" 2>&1 | grep -v '^WARNING: Location' >&2 || true
    .venv/bin/python -c "import fusion_stream, zmq, numpy, open3d" || { echo "installation failed (see above)" >&2; exit 1; }
    echo "$want" > "$stamp"
fi

# Compile the numba kernels into their on-disk cache now (tens of seconds of CPU the first time,
# ~2 s when cached), so no node's first frame pays for it under the supervisor's start-up grace.
# FUSION_STREAM_SETUP_JIT=0 leaves it to the caller (scripts/test.sh runs it beside mypy).
if [ "${FUSION_STREAM_SETUP_JIT:-1}" != 0 ]; then
    .venv/bin/python -m fusion_stream.cli.jit >/dev/null
fi
