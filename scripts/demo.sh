#!/usr/bin/env bash
# `just demo`: sandbox providers, the producer API and two workers on the local Redis, ~40 orders
# across the four providers, live progress and a summary. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p paywatch-sandbox -p paywatch-producer -p paywatch-worker --bins
bin=target/debug
logs=.paywatch/demo
mkdir -p "$logs"
read -r sandbox_port api_port metrics_a metrics_b < <($bin/paywatch-demo ports 4 | paste -sd ' ')
prefix="paywatch-demo-$$"
sandbox="http://127.0.0.1:$sandbox_port"
api="http://127.0.0.1:$api_port"

# Demo-speed polling: 0.5 s first delay ×1.5 up to 2 s; HandCash gives up after 12 s (unresolved).
fast='{"first_delay":"500ms","multiplier":1.5,"max_delay":"2s","fast_window":"30s","grace_interval":"2s","deadline":"45s","not_found_retries":3}'
handcash='{"first_delay":"500ms","multiplier":1.5,"max_delay":"2s","fast_window":"30s","grace_interval":"2s","deadline":"12s"}'
policies="{\"cashless\":$fast,\"handcash\":$handcash,\"miraclecash\":$fast,\"foxreload\":$fast}"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    redis-cli -u "$REDIS_URL" --scan --pattern "$prefix:*" 2>/dev/null | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
    echo "demo: stopped everything it started (logs in $logs/)"
}
trap cleanup EXIT

export REDIS_URL PAYWATCH_PREFIX="$prefix" RUST_LOG="${RUST_LOG:-info}"
$bin/paywatch-sandbox --listen "127.0.0.1:$sandbox_port" --webhook-target "$api" >"$logs/sandbox.log" 2>&1 &
pids+=($!)
$bin/paywatch-producer serve --listen "127.0.0.1:$api_port" --handcash-app-secret sandbox-handcash-secret >"$logs/producer.log" 2>&1 &
pids+=($!)
for i in a b; do
    port_var="metrics_$i"
    $bin/paywatch-worker --name "demo-worker-$i" --sandbox-url "$sandbox" --policies "$policies" \
        --queues "${PAYWATCH_DEMO_QUEUES:-check-payment}" \
        --metrics-listen "127.0.0.1:${!port_var}" >"$logs/worker-$i.log" 2>&1 &
    pids+=($!)
done
echo "demo: sandbox $sandbox, producer $api, workers with metrics on :$metrics_a and :$metrics_b, keys under $prefix"
$bin/paywatch-demo run --sandbox "$sandbox" --api "$api" --metrics "http://127.0.0.1:$metrics_a/metrics"
