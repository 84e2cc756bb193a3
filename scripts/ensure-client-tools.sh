#!/usr/bin/env bash
# Make sure the client examples under tests/clients can run: redis-py in .paywatch/clients-venv
# (pinned in tests/clients/requirements.txt) and ioredis in tests/clients/node_modules (from
# tests/clients/package-lock.json). Idempotent and quick when nothing changed: each records the
# hash of what it was built from. Needs python3 (>= 3.8, with venv) and Node.js >= 20.15 with npm.
set -euo pipefail
cd "$(dirname "$0")/.."

clients=tests/clients
scripts/ensure-venv.sh .paywatch/clients-venv "$clients/requirements.txt"

lock="$(sha256sum "$clients/package-lock.json" | cut -d' ' -f1)"
if ! [[ -f "$clients/node_modules/.stamp" && "$(cat "$clients/node_modules/.stamp")" == "$lock" ]]; then
    command -v npm >/dev/null 2>&1 || { echo "client tools: npm is missing (install Node.js >= 20.15)" >&2; exit 1; }
    (cd "$clients" && npm ci --silent --no-audit --no-fund)
    echo "$lock" >"$clients/node_modules/.stamp"
    echo "client tools: $clients/node_modules ready"
fi
