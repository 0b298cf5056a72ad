#!/usr/bin/env bash
# Installs the project into ./.venv with uv (from uv.lock). Sourced by main.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet uv
fi
uv sync --quiet --frozen --extra dev --extra postgres --extra spark
bash scripts/build_ui.sh  # the workspace UI bundle, only when ui/ changed or it is missing
export PATH="$PWD/.venv/bin:$PATH"
