# paywatch tasks. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments

export REDIS_URL := env_var_or_default("REDIS_URL", "redis://127.0.0.1:6379")

# List the recipes.
default:
    @just --list

# Make sure a Redis answers at REDIS_URL: use it, or start (and if need be install) redis-server.
redis:
    @scripts/ensure-redis.sh "$REDIS_URL"

# Build everything.
build:
    cargo build --workspace --all-targets

# (`cargo test --workspace` alone works too: the test harness starts a redis-server of its own
# when none answers at REDIS_URL.)
# Run the whole test suite against a real Redis.
test: redis
    scripts/ensure-test-tools.sh
    scripts/test.sh

# docs/chaos.md: its own Redis with AOF, the sandbox, the API, 3 check and 2 notifier workers;
# 10,000 orders while workers are `kill -9`'d and Redis is restarted gracefully and killed; one
# summary line, non-zero exit on anything lost, wrong, stranded or sent twice outside its
# channel's window. Options pass through: `just chaos --orders 2000 --seed 7`;
# `just chaos --scenario failover` (Sentinel) and `--scenario cluster-failover` kill a primary.
# The chaos suite: 10,000 orders under kill -9 and Redis restarts, everything accounted for.
chaos *args:
    "$(scripts/cargo-bins.sh -p paywatch-tests -p paywatch-producer --bin paywatch-chaos --bin pw-worker --bin paywatch-producer)/paywatch-chaos" "$@"

# Unused dependencies need `cargo install cargo-machete --locked`.
# Formatting, lints (warnings are errors), unused dependencies and deploy/ through its validators.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo machete
    scripts/check-deploy.sh

# Validate deploy/: hadolint, compose/Kubernetes/KEDA schemas, promtool (also run by `just test`).
deploy-check:
    scripts/check-deploy.sh

# The container image with podman: a local Debian base when none is given (BASE=debian:bookworm-slim
# where a registry answers), release binaries in target/image, then paywatch:<version>; prints its size.
# The container image (podman): base, release binaries, paywatch:<version> and its size.
image *args:
    scripts/image.sh "$@"

# Benchmarks side by side with the reference peer (BullMQ): `just bench` runs them all and writes
# BENCHMARKS.md and docs/bench/*.png; `just bench queue|e2e|webhook|idle|scale|cluster` runs one.
bench what="all": redis
    scripts/bench.sh "{{what}}"

# The end-to-end demo: sandbox providers, producer, two workers, ~40 orders, a summary.
demo: redis
    scripts/demo.sh

# After `just demo`: sandbox, producer (API, /board), workers, Prometheus until Ctrl-C; prints every URL.
up *args: redis
    scripts/up.sh "$@"
