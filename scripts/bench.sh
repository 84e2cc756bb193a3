#!/usr/bin/env bash
# `just bench queue`: paywatch-queue and BullMQ side by side on the same Redis ($REDIS_URL).
# `just bench economy`: provider calls against detection lag (docs/polling.md); BENCH_ARGS=--smoke
# for the seconds-long CI run.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-queue}"
case "$what" in
queue) ;;
economy)
    bin="$(scripts/cargo-bins.sh --release -p paywatch-bench)"
    target_dir="$(cargo metadata --format-version 1 --no-deps |
        grep -o '"target_directory":"[^"]*"' | sed 's/^"target_directory":"\(.*\)"$/\1/')"
    mkdir -p "$target_dir/bench"
    # shellcheck disable=SC2086
    "$bin/paywatch-bench" economy --redis "$REDIS_URL" --out "$target_dir/bench/economy.md" \
        --plot "$target_dir/bench/economy-frontier.png" ${BENCH_ARGS:-}
    echo "section written to $target_dir/bench/economy.md (plot: economy-frontier.png beside it)"
    exit 0
    ;;
*) echo "unknown benchmark: $what (known: queue, economy)" >&2; exit 2 ;;
esac
if ! command -v node >/dev/null 2>&1; then
    echo "bench: node is needed for the BullMQ side (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi
if [[ ! -d bench/bullmq/node_modules ]]; then
    (cd bench/bullmq && npm ci --no-audit --no-fund --loglevel=error)
fi
bin="$(scripts/cargo-bins.sh --release -p paywatch-bench)"
# Wherever cargo builds (CARGO_TARGET_DIR moves it), the table goes next to the build.
target_dir="$(cargo metadata --format-version 1 --no-deps |
    grep -o '"target_directory":"[^"]*"' | sed 's/^"target_directory":"\(.*\)"$/\1/')"
mkdir -p "$target_dir/bench"
"$bin/paywatch-bench" compare --redis "$REDIS_URL" --out "$target_dir/bench/queue.md" ${BENCH_ARGS:-}
echo "table written to $target_dir/bench/queue.md"
