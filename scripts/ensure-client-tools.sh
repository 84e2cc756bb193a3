#!/usr/bin/env bash
# Make sure the examples of docs/enqueue-from-any-language.md can run (tests/it/clients.rs runs
# them as written; `just test` runs this script first, a test never installs anything):
#   - redis-cli, Ruby with redis-rb, PHP with phpredis, Go with redigo: Debian's packages
#     (redis-tools, ruby + ruby-redis, php-cli + php-redis, golang-go +
#     golang-github-gomodule-redigo-dev), installed when missing and this is root with apt-get;
#   - redis-py in .paywatch/clients-venv (pinned in tests/clients/requirements.txt, from PyPI);
#   - ioredis in tests/clients/node_modules (from tests/clients/package-lock.json, from npm).
# Idempotent and quick when nothing changed. Exit status (as scripts/ensure-test-tools.sh reads
# it): 0 ready; 2 the Debian packages are missing and cannot be installed here (not root, no
# apt-get; said loudly, the rest is still set up): their tests skip locally and fail under
# CI=true; 1 an installation was tried and failed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, each with the check that says it is there.
missing=()
cannot=0
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
ruby -e 'require "redis"' >/dev/null 2>&1 || missing+=(ruby ruby-redis)
php -r 'exit(class_exists("Redis") ? 0 : 1);' >/dev/null 2>&1 || missing+=(php-cli php-redis)
{ command -v go >/dev/null 2>&1 && [[ -d /usr/share/gocode/src/github.com/gomodule/redigo ]]; } ||
    missing+=(golang-go golang-github-gomodule-redigo-dev)
if ((${#missing[@]})); then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        mkdir -p .paywatch
        # One installer at a time (the cluster test runs this script too).
        exec 9>.paywatch/ensure-client-tools.lock
        flock 9
        echo "client tools: installing Debian's ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt_install() {
            apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >/dev/null
        }
        if ! apt_install 2>/dev/null; then
            apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null
            apt_install
        fi
    else
        echo "!!! client tools: missing ${missing[*]} and cannot install them here (needs root and" \
            "apt-get; Debian: apt-get install ${missing[*]}). Their examples will be skipped" \
            "(and fail under CI=true)." >&2
        cannot=1
    fi
fi

clients=tests/clients
scripts/ensure-venv.sh .paywatch/clients-venv "$clients/requirements.txt"

lock="$(sha256sum "$clients/package-lock.json" | cut -d' ' -f1)"
if ! [[ -f "$clients/node_modules/.stamp" && "$(cat "$clients/node_modules/.stamp")" == "$lock" ]]; then
    command -v npm >/dev/null 2>&1 || { echo "client tools: npm is missing (install Node.js >= 20.15)" >&2; exit 1; }
    (cd "$clients" && npm ci --silent --no-audit --no-fund)
    echo "$lock" >"$clients/node_modules/.stamp"
    echo "client tools: $clients/node_modules ready"
fi
if ((cannot)); then
    exit 2
fi
