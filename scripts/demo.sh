#!/usr/bin/env bash
# `just demo`: sandbox providers, the producer API, two checking workers and a notifier on the
# local Redis; ~40 orders across the four providers; live progress and a summary. Notifications go
# to the sandbox's fake Telegram, to a signature-verifying webhook endpoint and to a local SMTP
# server, both run inside paywatch-demo. Stops everything it started. Runs without just: it uses
# the Redis at REDIS_URL, or has scripts/ensure-redis.sh start one.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-redis.sh "${REDIS_URL:=redis://127.0.0.1:6379}"
bin="$(scripts/cargo-bins.sh --quiet -p paywatch-sandbox -p paywatch-producer -p paywatch-worker --bins)"
logs=.paywatch/demo
mkdir -p "$logs"
read -r sandbox_port api_port metrics_a metrics_b receiver_port smtp_port < <($bin/paywatch-demo ports 6 | paste -sd ' ')
prefix="paywatch-demo-$$"
sandbox="http://127.0.0.1:$sandbox_port"
api="http://127.0.0.1:$api_port"
# A demo-only signing key (the Standard Webhooks spec's example key).
secret="whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

# Demo-speed polling: 0.5 s first delay ×1.5 up to 2 s; HandCash gives up after 12 s (unresolved).
fast='{"first_delay":"500ms","multiplier":1.5,"max_delay":"2s","fast_window":"30s","grace_interval":"2s","deadline":"45s","not_found_retries":3}'
handcash='{"first_delay":"500ms","multiplier":1.5,"max_delay":"2s","fast_window":"30s","grace_interval":"2s","deadline":"12s"}'
policies="{\"cashless\":$fast,\"handcash\":$handcash,\"miraclecash\":$fast,\"foxreload\":$fast}"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -u "$REDIS_URL" --scan --pattern "$prefix:*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
    fi
    echo "demo: stopped everything it started (logs in $logs/)"
}
trap cleanup EXIT

export REDIS_URL PAYWATCH_PREFIX="$prefix" RUST_LOG="${RUST_LOG:-info}"
notifier_queues="notify-email,notify-telegram,notify-webhook,notify-ops"

$bin/paywatch-sandbox --listen "127.0.0.1:$sandbox_port" --webhook-target "$api" >"$logs/sandbox.log" 2>&1 &
pids+=($!)
$bin/paywatch-producer serve --listen "127.0.0.1:$api_port" --handcash-app-secret sandbox-handcash-secret >"$logs/producer.log" 2>&1 &
pids+=($!)
for i in a b; do
    port_var="metrics_$i"
    $bin/paywatch-worker --name "demo-checker-$i" --sandbox-url "$sandbox" --policies "$policies" \
        --queues check-payment --metrics-listen "127.0.0.1:${!port_var}" >"$logs/checker-$i.log" 2>&1 &
    pids+=($!)
done
PAYWATCH_WEBHOOK_SECRET="$secret" $bin/paywatch-worker --name demo-notifier --sandbox-url "$sandbox" \
    --queues "$notifier_queues" --smtp-url "smtp://127.0.0.1:$smtp_port" \
    --email-from "paywatch demo <payments@shop.example>" --webhook-allow-hosts 127.0.0.1 \
    --telegram-chat-interval 10ms --ops-telegram-chat-id 42 --ops-interval 5s >"$logs/notifier.log" 2>&1 &
pids+=($!)
echo "demo: sandbox $sandbox, producer $api, checkers with metrics on :$metrics_a and :$metrics_b, keys under $prefix"
PAYWATCH_WEBHOOK_SECRET="$secret" $bin/paywatch-demo run --sandbox "$sandbox" --api "$api" \
    --metrics "http://127.0.0.1:$metrics_a/metrics" --receiver "127.0.0.1:$receiver_port" \
    --email buyer@example.com --smtp "127.0.0.1:$smtp_port"
