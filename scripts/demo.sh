#!/usr/bin/env bash
# The main job: set up .venv if needed, then run the demo graph (arguments go to `fusion-stream demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
exec .venv/bin/fusion-stream demo "$@"
