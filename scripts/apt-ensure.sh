# Sourced by scripts/ensure-*.sh: `apt_ensure <package>` installs Debian's <package> unless the
# caller's `have` function already succeeds. Exits the script: 0 when `have` holds (at once or
# after installing); 2 when it does not and nothing can be installed here (no apt-get, or not
# root) — the tests that need it skip, loudly; 1 when an installation was tried and failed.
# Safe from several tests at once: one installs under a lock in .paywatch/, the others wait.
apt_ensure() {
    local package="$1"
    have && exit 0
    if ! command -v apt-get >/dev/null 2>&1 || [[ "$(id -u)" != 0 ]]; then
        echo "$package: missing, and it cannot be installed here (needs root and apt-get; Debian: apt-get install $package)" >&2
        exit 2
    fi
    mkdir -p .paywatch
    exec 9>".paywatch/ensure-$package.lock"
    flock 9
    have && exit 0
    echo "$package: installing Debian's $package package" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "$package" >/dev/null 2>&1; then
        apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null
        apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "$package" >/dev/null
    fi
    after_install
    have || exit 1
    exit 0
}

# What to do once the package is in (a caller may redefine it before calling apt_ensure).
after_install() { :; }
