#!/usr/bin/env bash
# `just up`: the local stack in the foreground until Ctrl-C — sandbox providers, the producer (API,
# operator board, metrics), two check workers, a notifier and Prometheus — every URL printed.
# Prometheus comes from Debian (scripts/ensure-prometheus.sh installs it when missing and this
# runs as root); where it cannot be had, the stack runs without it and says so. All the work is
# `paywatch-demo stack`, which runs the same without this script:
#   cargo run -p paywatch-sandbox --bin paywatch-demo -- stack [--no-prometheus] [--no-seed]
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
status=0
scripts/ensure-prometheus.sh || status=$?
if [[ $status == 2 ]]; then
    echo "up: running without Prometheus (see above)" >&2
    args+=(--no-prometheus)
elif [[ $status != 0 ]]; then
    exit "$status"
fi
exec cargo run --quiet -p paywatch-sandbox --bin paywatch-demo -- stack "${args[@]}" "$@"
