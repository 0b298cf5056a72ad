#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (Playwright drives it; no browser download).
# Sourced by test.sh; idempotent: an installed /usr/bin/chromium (or $AML_TEST_CHROMIUM) is kept.
# Without root or passwordless sudo it says why and goes on: the browser tests then fail, naming
# the missing binary.
set -euo pipefail

if [ -x "${AML_TEST_CHROMIUM:-/usr/bin/chromium}" ]; then
    :
elif [ "$(id -u)" = 0 ]; then
    echo "[chromium] installing Debian's chromium for the browser tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
        || echo "[chromium] could not install chromium" >&2
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "[chromium] installing Debian's chromium for the browser tests (sudo)" >&2
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
        || { sudo -n apt-get update -q >/dev/null && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
        || echo "[chromium] could not install chromium" >&2
else
    echo "[chromium] /usr/bin/chromium is missing and there is no root to install it: the browser tests will fail" >&2
fi
