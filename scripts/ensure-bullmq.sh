#!/usr/bin/env bash
# Make sure the BullMQ side of the benchmarks can run: bench/bullmq/node_modules installed from
# bench/bullmq/package-lock.json. Idempotent and quick when nothing changed (a stamp records the
# lock file's hash). Needs Node.js >= 20 with npm.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=bench/bullmq
command -v node >/dev/null 2>&1 || {
    echo "bench: node is needed for the BullMQ side (Debian: apt-get install nodejs npm)" >&2
    exit 1
}
lock="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if ! [[ -f "$dir/node_modules/.stamp" && "$(cat "$dir/node_modules/.stamp")" == "$lock" ]]; then
    command -v npm >/dev/null 2>&1 || { echo "bench: npm is missing (install Node.js >= 20 with npm)" >&2; exit 1; }
    (cd "$dir" && npm ci --silent --no-audit --no-fund)
    echo "$lock" >"$dir/node_modules/.stamp"
    echo "bench: $dir/node_modules ready" >&2
fi
