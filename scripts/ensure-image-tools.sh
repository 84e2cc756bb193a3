#!/usr/bin/env bash
# Make sure the container tools of `just image` and tests/it/image.rs are installed: Debian's
# podman (builds and runs the image), runc (the runtime used here: crun refuses cgroup v1
# hybrid layouts), buildah and skopeo (the image outside podman), debootstrap (the base image
# made without a registry); podman-compose comes from PyPI when scripts/compose-host.sh runs.
# Exit status: see scripts/apt-ensure.sh (0 there, 2 cannot be installed here, 1 install failed).
set -euo pipefail
cd "$(dirname "$0")/.."

for package in podman:podman runc:runc buildah:buildah skopeo:skopeo debootstrap:debootstrap; do
    (
        # shellcheck source=scripts/apt-ensure.sh
        source scripts/apt-ensure.sh
        command="${package#*:}"
        have() { command -v "$command" >/dev/null 2>&1; }
        apt_ensure "${package%%:*}"
    ) || exit $?
done
