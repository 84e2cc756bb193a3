#!/usr/bin/env bash
# `just bench [what]`: paywatch's benchmarks, side by side with BullMQ where it has a peer.
#   all (the default)  every benchmark; writes BENCHMARKS.md at the repo root and docs/bench/*
#                      (the polling economy's section and plot included)
#   queue              paywatch-queue vs BullMQ on $REDIS_URL (table in target/bench/queue.md)
#   e2e | webhook | idle | scale | cluster | economy
#                      one benchmark alone (report in target/bench/<what>.md, plots beside it)
#   network            e2e through a latency proxy at 0, 0.5 and 1 ms RTT to Redis, round trips
#                      per order counted (table in target/bench/network.md, plot network.png)
# Extra arguments for paywatch-bench go in BENCH_ARGS (e.g. BENCH_ARGS="--runs 1 --e2e-orders 5000";
# for economy alone, BENCH_ARGS=--smoke is the seconds-long run).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
case "$what" in
all | queue | e2e | webhook | idle | scale | cluster | network) ;;
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
*) echo "unknown benchmark: $what (known: all, queue, e2e, webhook, idle, scale, cluster, network, economy)" >&2; exit 2 ;;
esac
scripts/ensure-bullmq.sh
# The real release executables: the fleet benchmarks start paywatch-worker and paywatch-producer.
bin="$(scripts/cargo-bins.sh --release -p paywatch-bench -p paywatch-worker -p paywatch-producer)"
# Wherever cargo builds (CARGO_TARGET_DIR moves it), single-benchmark output goes next to the build.
target_dir="$(cargo metadata --format-version 1 --no-deps |
    grep -o '"target_directory":"[^"]*"' | sed 's/^"target_directory":"\(.*\)"$/\1/')"
mkdir -p "$target_dir/bench"
case "$what" in
queue)
    "$bin/paywatch-bench" compare --redis "$REDIS_URL" --out "$target_dir/bench/queue.md" ${BENCH_ARGS:-}
    echo "table written to $target_dir/bench/queue.md"
    ;;
network)
    # shellcheck disable=SC2086
    "$bin/paywatch-bench" --bin-dir "$bin" network --out "$target_dir/bench/network.md" \
        --plot "$target_dir/bench/network.png" --plot-link network.png ${BENCH_ARGS:-}
    echo "table written to $target_dir/bench/network.md (plot: network.png beside it)"
    ;;
all)
    # shellcheck disable=SC2086
    "$bin/paywatch-bench" --redis "$REDIS_URL" --bin-dir "$bin" all \
        --out BENCHMARKS.md --plots docs/bench --command "just bench" ${BENCH_ARGS:-}
    # The network sweep, in the same command; BENCHMARKS.md links its tables and plot.
    "$bin/paywatch-bench" --bin-dir "$bin" network --out docs/bench/network.md \
        --plot docs/bench/network.png --plot-link network.png
    # The polling economy, in the same command; BENCHMARKS.md links its section and plot.
    "$bin/paywatch-bench" economy --redis "$REDIS_URL" --out docs/bench/economy.md \
        --plot docs/bench/economy-frontier.png
    ;;
*)
    # shellcheck disable=SC2086
    "$bin/paywatch-bench" --redis "$REDIS_URL" --bin-dir "$bin" all --only "$what" \
        --out "$target_dir/bench/$what.md" --plots "$target_dir/bench/$what" \
        --command "just bench $what" ${BENCH_ARGS:-}
    echo "report written to $target_dir/bench/$what.md"
    ;;
esac
