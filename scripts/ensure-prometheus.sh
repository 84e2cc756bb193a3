#!/usr/bin/env bash
# Make sure `prometheus` and `promtool` are on PATH, for tests/it/observability.rs and
# scripts/check-deploy.sh: installs Debian's `prometheus` package when missing.
# Exit status: see scripts/apt-ensure.sh (0 there, 2 cannot be installed here, 1 install failed).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/apt-ensure.sh
source scripts/apt-ensure.sh

have() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }
# The package may start a system service; the tests run their own Prometheus on free ports.
after_install() {
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
}
apt_ensure prometheus
