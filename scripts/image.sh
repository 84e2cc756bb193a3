#!/usr/bin/env bash
# image.sh: build the paywatch container image with podman (`just image`).
#
#   1. the base: BASE when set (e.g. debian:bookworm-slim where a registry answers), otherwise
#      localhost/paywatch-base:bookworm, made here once from Debian's packages with
#      `debootstrap --variant=minbase bookworm` (plus tini and CA certificates), slimmed (no docs,
#      man pages, locales, apt lists or caches) and imported: no registry is needed;
#   2. the release binaries, in their own target directory (PAYWATCH_IMAGE_TARGET_DIR, default
#      target/image), or the ones in --binaries DIR (the test suite passes its debug build);
#   3. the image: deploy/Dockerfile's `prebuilt` stage with a context holding only the binaries,
#      labelled with the version, `git rev-parse HEAD` and the origin remote, tagged
#      paywatch:<version> and paywatch:latest (or --tag NAME).
#
# Then it prints the image's size, uncompressed and as `podman save | gzip` (--no-measure skips
# that). Options: --binaries DIR, --tag NAME, --no-measure, --no-strip (keep the binaries' debug
# sections; they are stripped by default). Needs podman (and debootstrap and root
# for the base): scripts/ensure-image-tools.sh installs them on Debian.
#
# Machine settings: podman reads CONTAINERS_CONF; when unset, .paywatch/containers.conf is
# written and used: runc as the runtime when installed (crun refuses cgroup v1 hybrid layouts),
# no default ulimits or pids limit (a container may not raise rlimits everywhere), cgroupfs (no
# systemd needed). They change nothing a normal machine needs. Builds use the host network (for
# apt-get when BASE lacks tini), so no network plugin is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

binaries=""
tag=""
measure=1
strip=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binaries) binaries="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        --no-measure) measure=0; shift ;;
        --no-strip) strip=0; shift ;;
        *) echo "image: unknown argument $1 (--binaries DIR, --tag NAME, --no-measure, --no-strip)" >&2; exit 2 ;;
    esac
done

command -v podman >/dev/null || {
    echo "image: podman is missing (Debian: scripts/ensure-image-tools.sh, or apt-get install podman)" >&2
    exit 2
}
mkdir -p .paywatch
if [[ -z "${CONTAINERS_CONF:-}" ]]; then
    export CONTAINERS_CONF="$PWD/.paywatch/containers.conf"
    {
        echo '[containers]'
        echo 'default_ulimits = []'
        echo 'pids_limit = 0'
        echo '[engine]'
        echo 'cgroup_manager = "cgroupfs"'
        if command -v runc >/dev/null; then echo 'runtime = "runc"'; fi
    } >"$CONTAINERS_CONF.new"
    mv "$CONTAINERS_CONF.new" "$CONTAINERS_CONF"
fi

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
source_url="$(git remote get-url origin 2>/dev/null || echo unknown)"
image="${tag:-paywatch:$version}"

# ---- 1. the base ----
base="${BASE:-localhost/paywatch-base:bookworm}"
if [[ -z "${BASE:-}" ]] && ! podman image exists "$base"; then
    command -v debootstrap >/dev/null && [[ "$(id -u)" == 0 ]] || {
        echo "image: making $base needs root and debootstrap (or set BASE=debian:bookworm-slim)" >&2
        exit 2
    }
    # One base build at a time (the test suite may ask while `just image` runs).
    exec 8>.paywatch/image-base.lock
    flock 8
    if ! podman image exists "$base"; then
        rootfs="$(mktemp -d "$PWD/.paywatch/image-base.XXXXXX")"
        trap 'rm -rf "$rootfs" "$rootfs.tar"' EXIT
        echo "image: debootstrap --variant=minbase bookworm (a few minutes, once)" >&2
        nice debootstrap --variant=minbase --include=tini,ca-certificates bookworm "$rootfs" \
            "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >.paywatch/image-debootstrap.log 2>&1 || {
            echo "image: debootstrap failed; see .paywatch/image-debootstrap.log" >&2
            exit 1
        }
        # Slim: what a running binary never reads. dpkg keeps them out of later installs too,
        # as debian:bookworm-slim does.
        rm -rf "$rootfs"/usr/share/{doc,man,info,locale,lintian}/* \
            "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
            "$rootfs"/var/log/* "$rootfs"/usr/lib/x86_64-linux-gnu/gconv
        cat >"$rootfs/etc/dpkg/dpkg.cfg.d/paywatch-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
        # Through a file, so that a failed tar cannot leave an empty base behind.
        tar --numeric-owner -C "$rootfs" -cf "$rootfs.tar" .
        podman import --message "debootstrap --variant=minbase bookworm, slimmed" \
            "$rootfs.tar" "$base" >/dev/null
        rm -rf "$rootfs.tar" "$rootfs"
        echo "image: base $base imported" >&2
    fi
    flock -u 8
fi

# ---- 2. the binaries ----
if [[ -z "$binaries" ]]; then
    export CARGO_TARGET_DIR="${PAYWATCH_IMAGE_TARGET_DIR:-$PWD/target/image}"
    echo "image: cargo build --release (target dir $CARGO_TARGET_DIR)" >&2
    binaries="$(nice scripts/cargo-bins.sh --release --locked \
        -p paywatch-producer -p paywatch-worker -p paywatch-sandbox --bins)"
fi
context="$(mktemp -d "$PWD/.paywatch/image-context.XXXXXX")"
trap 'rm -rf "$context"' EXIT
for bin in paywatch-producer paywatch-worker paywatch-sandbox paywatch-probe; do
    [[ -x "$binaries/$bin" ]] || { echo "image: $binaries/$bin is missing" >&2; exit 1; }
    # Without debug sections (the release profile keeps line tables for local backtraces):
    # they are most of each binary's size, and the symbols stay for panics' backtraces.
    if [[ $strip == 1 ]]; then
        objcopy --strip-debug "$binaries/$bin" "$context/$bin"
    else
        # A hard link when on this file system: nothing is copied twice.
        ln "$binaries/$bin" "$context/$bin" 2>/dev/null || cp "$binaries/$bin" "$context/$bin"
    fi
done

# ---- 3. the image ----
# --format docker keeps HEALTHCHECK (the OCI image format has no field for it). --no-cache:
# buildah 1.28 reuses a cached LABEL layer whatever the revision argument, so the label would
# name an old commit; the steps after the base take seconds.
podman build --quiet --no-cache --format docker --network host -f deploy/Dockerfile --target prebuilt \
    --build-arg BASE="$base" --build-arg VERSION="$version" \
    --build-arg REVISION="$revision" --build-arg SOURCE="$source_url" \
    -t "$image" "$context" >/dev/null
if [[ -z "$tag" ]]; then
    podman tag "$image" paywatch:latest
fi
echo "image: built $image (revision $revision, base $base)" >&2

if [[ $measure == 1 ]]; then
    size="$(podman image inspect --format '{{.Size}}' "$image")"
    compressed="$(podman save --format docker-archive "$image" 2>/dev/null | gzip -6 | wc -c)"
    echo "image: $image is $((size / 1000000)) MB, $((compressed / 1000000)) MB compressed (podman save | gzip -6)"
fi
