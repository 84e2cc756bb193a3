#!/usr/bin/env bash
# ensure-venv.sh VENV REQUIREMENTS: make sure the virtualenv VENV holds exactly the packages pinned
# in REQUIREMENTS. Idempotent and quick when nothing changed: the venv records the hash of the
# requirements it was built from and is rebuilt only when they differ. Needs python3 (>= 3.9) with
# the venv module; on Debian as root it installs python3-venv when missing. Packages come from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$1"
requirements="$2"
mkdir -p "$(dirname "$venv")"
# One build at a time per venv: tests and lint may ask for the same one at once.
exec 9>"$venv.lock"
flock 9
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$venv/.stamp" && "$(cat "$venv/.stamp")" == "$want" ]]; then
    exit 0
fi
python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || { echo "$venv: $python is missing" >&2; exit 1; }
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq -o DPkg::Lock::Timeout=300
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 python3-venv >/dev/null
    else
        echo "$venv: the Python venv module is missing (Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$requirements"
echo "$want" >"$venv/.stamp"
echo "$venv: ready"
