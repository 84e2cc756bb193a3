#!/usr/bin/env bash
# Build binaries with cargo and print the directory cargo put them in, asking cargo rather than
# assuming target/debug or target/release (CARGO_TARGET_DIR, --target, profiles all move it).
# Usage: bin="$(scripts/cargo-bins.sh [cargo build args...])"; "$bin/paywatch-worker" ...
# Diagnostics go to stderr as usual; stdout carries only the directory.
set -euo pipefail
cd "$(dirname "$0")/.."

# JSON lines on stdout, one per artifact; an executable's path is its "executable" field.
# Plain grep/sed so that no jq or Python is needed.
exes="$(cargo build --message-format=json-render-diagnostics "$@" |
    { grep -o '"executable":"[^"]*"' || true; } | sed 's/^"executable":"\(.*\)"$/\1/')"
exe="${exes%%$'\n'*}"
if [[ -z "$exe" ]]; then
    echo "cargo-bins: cargo built no executable for: cargo build $*" >&2
    exit 1
fi
dirname "$exe"
