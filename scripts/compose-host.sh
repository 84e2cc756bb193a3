#!/usr/bin/env bash
# compose-host.sh up|down|ps: deploy/compose.yaml with podman-compose on a host with no container
# network and no registry, through the override deploy/compose.host.yaml (what it moves is said
# there). `up` builds what is missing first: the paywatch image (scripts/image.sh) and Redis and
# Prometheus from Debian's packages on the same local base (deploy/local/). `down` removes the
# containers and their volumes. PAYWATCH_API_TOKENS and PAYWATCH_WEBHOOK_SECRET must be set, as
# for compose.yaml itself.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${CONTAINERS_CONF:-}" ]]; then
    # The settings scripts/image.sh writes for this kind of machine (it writes them first).
    [[ -f .paywatch/containers.conf ]] || scripts/image.sh
    export CONTAINERS_CONF="$PWD/.paywatch/containers.conf"
fi
# PyPI's podman-compose (pinned in deploy/local/requirements.txt): Debian's 1.0.3 appends an
# override's command to the base file's instead of replacing it, and adds its own network to
# host-network containers, which podman refuses.
scripts/ensure-venv.sh .paywatch/compose-venv deploy/local/requirements.txt >&2
compose=(.paywatch/compose-venv/bin/podman-compose -f deploy/compose.yaml -f deploy/compose.host.yaml)
# Grafana is left out (no Debian package to build it from).
services=(redis sandbox producer worker-checks worker-notify prometheus)

case "${1:-}" in
    up)
        podman image exists paywatch:latest || scripts/image.sh
        for package in redis-server:redis prometheus:prometheus; do
            image="localhost/paywatch-${package#*:}:bookworm"
            podman image exists "$image" ||
                podman build --quiet --network host -f deploy/local/debian-package.Dockerfile \
                    --build-arg PACKAGE="${package%%:*}" -t "$image" deploy/local >/dev/null
        done
        "${compose[@]}" up -d "${services[@]}"
        ;;
    # compose reads the whole file, so the required variables need a value even to stop it.
    down)
        PAYWATCH_API_TOKENS="${PAYWATCH_API_TOKENS:-unused-when-stopping-000000}" \
            PAYWATCH_WEBHOOK_SECRET="${PAYWATCH_WEBHOOK_SECRET:-unused}" "${compose[@]}" down -v
        ;;
    ps) "${compose[@]}" ps ;;
    *) echo "usage: scripts/compose-host.sh up|down|ps" >&2; exit 2 ;;
esac
