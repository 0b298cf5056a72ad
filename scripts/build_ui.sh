#!/usr/bin/env bash
# Builds the workspace UI (ui/, React + Vite) into airflow_aml/service/ui_static/ when the bundle is
# missing or older than its sources; a no-op (a few milliseconds) otherwise. Run by setup.sh and by
# the wheel build (scripts/hatch_build.py). Without npm it warns and leaves the UI unbuilt: the
# service then answers /ui/ with a 404 naming this step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bundle=airflow_aml/service/ui_static/aml-ui.js
sources=(ui/src ui/public ui/package.json ui/package-lock.json ui/vite.config.ts ui/tsconfig.json)
[ -d ui ] || exit 0  # an sdist or checkout without the UI sources: nothing to build
if [ -f "$bundle" ] && [ -z "$(find "${sources[@]}" -newer "$bundle" -print -quit)" ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "build_ui.sh: npm not found; the workspace UI is not built (install Node.js 20 and npm)" >&2
    exit 0
fi
# npm ci only when the lock changed since the last install (it deletes and refetches node_modules).
if [ ! -f ui/node_modules/.package-lock.json ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
    (cd ui && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd ui && npm run --silent build >/dev/null)
touch "$bundle"  # newer than every source, even when the build kept an older file time
