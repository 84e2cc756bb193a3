#!/usr/bin/env bash
# Make sure Debian's `chromium` is at /usr/bin/chromium, for the board's real-browser test
# (tests/it/board.rs drives it with playwright-core, tests/board/): installs the package when
# it is missing. playwright-core downloads no browser of its own; it launches this one.
# Exit status: see scripts/apt-ensure.sh (0 there, 2 cannot be installed here, 1 install failed).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/apt-ensure.sh
source scripts/apt-ensure.sh

have() { [[ -x /usr/bin/chromium ]]; }
apt_ensure chromium
