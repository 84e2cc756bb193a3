# One Debian package on the local base, for deploy/compose.host.yaml where no registry answers:
# Redis (PACKAGE=redis-server) and Prometheus (PACKAGE=prometheus). scripts/compose-host.sh
# builds them; a machine that can pull uses compose.yaml's images instead.
ARG BASE=localhost/paywatch-base:bookworm
FROM ${BASE}
ARG PACKAGE
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends "${PACKAGE}" \
    && rm -rf /var/lib/apt/lists/*
