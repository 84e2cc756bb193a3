#!/usr/bin/env bash
# Make sure the board's browser test (tests/it/board.rs) can run: Debian's chromium
# (scripts/ensure-chromium.sh) and playwright-core in tests/board/node_modules, from
# tests/board/package-lock.json. playwright-core downloads no browser; it drives /usr/bin/chromium.
# Idempotent and quick when nothing changed (node_modules records the lock's hash).
# Exit status: 0 ready; 2 chromium is missing and cannot be installed here (the test skips,
# loudly); 1 anything else failed. Needs Node.js >= 20.15 with npm.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
scripts/ensure-chromium.sh || status=$?
[[ $status == 0 ]] || exit "$status"

board=tests/board
mkdir -p .paywatch
exec 9>.paywatch/ensure-board-tools.lock
flock 9
lock="$(sha256sum "$board/package-lock.json" | cut -d' ' -f1)"
if ! [[ -f "$board/node_modules/.stamp" && "$(cat "$board/node_modules/.stamp")" == "$lock" ]]; then
    command -v npm >/dev/null 2>&1 || { echo "board tools: npm is missing (install Node.js >= 20.15)" >&2; exit 1; }
    (cd "$board" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund)
    echo "$lock" >"$board/node_modules/.stamp"
    echo "board tools: $board/node_modules ready" >&2
fi
