#!/usr/bin/env bash
# Make sure Debian's `chromium` is at /usr/bin/chromium, for the board's real-browser test
# (tests/tests/board.rs drives it with playwright-core, tests/board/): installs the package when
# it is missing. playwright-core downloads no browser of its own; it launches this one.
# Exit status: 0 when it is there; 2 when it is missing and cannot be installed here (no apt-get,
# or not root): the test skips, loudly; 1 when an installation was tried and failed.
# Safe to run from several tests at once (one installs, the others wait).
set -euo pipefail
cd "$(dirname "$0")/.."

have() { [[ -x /usr/bin/chromium ]]; }
have && exit 0
if ! command -v apt-get >/dev/null 2>&1 || [[ "$(id -u)" != 0 ]]; then
    echo "chromium: missing, and it cannot be installed here (needs root and apt-get; Debian: apt-get install chromium)" >&2
    exit 2
fi
mkdir -p .paywatch
exec 9>.paywatch/ensure-chromium.lock
flock 9
have && exit 0
echo "chromium: installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
apt_install() {
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends chromium >/dev/null
}
if ! apt_install 2>/dev/null; then
    apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null
    apt_install
fi
have
