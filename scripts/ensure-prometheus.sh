#!/usr/bin/env bash
# Make sure `prometheus` and `promtool` are on PATH, for tests/tests/observability.rs and
# scripts/check-deploy.sh: installs Debian's `prometheus` package when missing.
# Exit status: 0 when both are there; 2 when they are missing and cannot be installed here (no
# apt-get, or not root): the tests skip, loudly; 1 when an installation was tried and failed.
# Safe to run from several tests at once (one installs, the others wait).
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }
have && exit 0
if ! command -v apt-get >/dev/null 2>&1 || [[ "$(id -u)" != 0 ]]; then
    echo "prometheus: missing, and it cannot be installed here (needs root and apt-get; Debian: apt-get install prometheus)" >&2
    exit 2
fi
mkdir -p .paywatch
exec 9>.paywatch/ensure-prometheus.lock
flock 9
have && exit 0
echo "prometheus: installing Debian's prometheus package" >&2
export DEBIAN_FRONTEND=noninteractive
apt_install() {
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends prometheus >/dev/null
}
if ! apt_install 2>/dev/null; then
    apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null
    apt_install
fi
# The package may start a system service; the tests run their own Prometheus on free ports.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
have
