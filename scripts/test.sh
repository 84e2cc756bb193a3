#!/usr/bin/env bash
# `just test`: the whole suite. The product's binaries are built once and handed to the tests
# (PAYWATCH_TEST_BINARIES), then cargo-nextest runs every test in its own process, several at a
# time (.config/nextest.toml says how many, and which heavy ones never run more than two at once).
# Without cargo-nextest it falls back to `cargo test`, one test binary after another.
set -euo pipefail
cd "$(dirname "$0")/.."
PAYWATCH_TEST_BINARIES="$(scripts/cargo-bins.sh -p paywatch-sandbox -p paywatch-producer -p paywatch-worker --bins)"
export PAYWATCH_TEST_BINARIES
if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --workspace "$@"
fi
echo "test: cargo-nextest is not installed (cargo install cargo-nextest --locked); running cargo test" >&2
exec cargo test --workspace "$@"
