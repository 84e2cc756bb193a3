#!/usr/bin/env bash
# Make sure `prometheus` and `promtool` are on PATH, for tests/tests/observability.rs and the
# deploy checks: installs Debian's `prometheus` package when missing (needs root and apt-get).
# Exits 0 when both are there, 1 (with the reason) when they cannot be installed.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    echo "prometheus: installing Debian's prometheus package" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    fi
    # The package starts a system service; the tests run their own Prometheus on free ports.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
else
    echo "prometheus: missing, and it cannot be installed here (needs root and apt-get; Debian: apt-get install prometheus)" >&2
    exit 1
fi
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
