#!/usr/bin/env bash
# Make sure the Python tools the integration tests run are installed: a virtualenv at
# .paywatch/venv with the packages pinned in tests/support/requirements.txt (aiosmtpd, the SMTP
# server tests/tests/notify_email.rs delivers to). Idempotent and quick when nothing changed: the
# venv records the hash of the requirements it was built from and is rebuilt only when they differ.
# Needs python3 (>= 3.8) with the venv module; on Debian/Ubuntu as root it installs python3-venv
# when that is missing. Everything else comes from PyPI through pip.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.paywatch/venv
requirements=tests/support/requirements.txt
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
    "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    echo "test tools: $venv is up to date"
    exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "test tools: $python is missing; install Python 3.8 or later (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 8))'; then
    echo "test tools: $python is older than 3.8" >&2
    exit 1
fi
# Debian splits venv (and ensurepip) into python3-venv.
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        echo "test tools: installing Debian's python3-venv"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        echo "test tools: the Python venv module is missing (Debian: sudo apt-get install python3-venv)" >&2
        exit 1
    fi
fi

echo "test tools: building $venv from $requirements"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$requirements"
"$venv/bin/python" -c 'import aiosmtpd'
echo "$want" >"$stamp"
echo "test tools: $venv ready"
