#!/usr/bin/env bash
# `just bench queue`: paywatch-queue and BullMQ side by side on the same Redis ($REDIS_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-queue}"
case "$what" in
queue) ;;
*) echo "unknown benchmark: $what (known: queue)" >&2; exit 2 ;;
esac
if ! command -v node >/dev/null 2>&1; then
    echo "bench: node is needed for the BullMQ side (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi
if [[ ! -d bench/bullmq/node_modules ]]; then
    (cd bench/bullmq && npm ci --no-audit --no-fund --loglevel=error)
fi
cargo build --release -p paywatch-bench
mkdir -p target/bench
target/release/paywatch-bench compare --redis "$REDIS_URL" --out target/bench/queue.md ${BENCH_ARGS:-}
echo "table written to target/bench/queue.md"
