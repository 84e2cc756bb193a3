#!/usr/bin/env bash
# `just demo`: sandbox providers, the producer API, two checking workers and a notifier on Redis;
# ~40 orders across the four providers; live progress and a summary; email, Telegram and signed
# webhooks all delivered (to the sandbox's Telegram and to a webhook endpoint and an SMTP server
# run inside paywatch-demo). Stops everything it started (`just up` keeps a stack running). All
# the work is `paywatch-demo demo`, which runs the same without this script:
#   cargo run -p paywatch-sandbox --bin paywatch-demo -- demo
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet -p paywatch-sandbox --bin paywatch-demo -- demo "$@"
