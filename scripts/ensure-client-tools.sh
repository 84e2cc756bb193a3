#!/usr/bin/env bash
# Make sure the client examples under tests/clients can run: redis-py in .paywatch/clients-venv
# (pinned in tests/clients/requirements.txt) and ioredis in tests/clients/node_modules (from
# tests/clients/package-lock.json). Idempotent and quick when nothing changed: each records the
# hash of what it was built from. Needs python3 (>= 3.8, with venv) and Node.js >= 20.15 with npm.
set -euo pipefail
cd "$(dirname "$0")/.."

clients=tests/clients
venv=.paywatch/clients-venv
requirements="$clients/requirements.txt"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if ! [[ -x "$venv/bin/python" && -f "$venv/.stamp" && "$(cat "$venv/.stamp")" == "$want" ]]; then
    python="${PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 || { echo "client tools: $python is missing" >&2; exit 1; }
    if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
        if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        else
            echo "client tools: the Python venv module is missing (Debian: apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --requirement "$requirements"
    echo "$want" >"$venv/.stamp"
    echo "client tools: $venv ready"
fi

lock="$(sha256sum "$clients/package-lock.json" | cut -d' ' -f1)"
if ! [[ -f "$clients/node_modules/.stamp" && "$(cat "$clients/node_modules/.stamp")" == "$lock" ]]; then
    command -v npm >/dev/null 2>&1 || { echo "client tools: npm is missing (install Node.js >= 20.15)" >&2; exit 1; }
    (cd "$clients" && npm ci --silent --no-audit --no-fund)
    echo "$lock" >"$clients/node_modules/.stamp"
    echo "client tools: $clients/node_modules ready"
fi
