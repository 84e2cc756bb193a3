#!/usr/bin/env bash
# Make sure schemathesis (pinned in tests/api/requirements.txt) is installed in
# .paywatch/schemathesis-venv. Idempotent and quick when nothing changed. Needs python3 >= 3.9
# with venv; everything else comes from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.paywatch/schemathesis-venv
requirements=tests/api/requirements.txt
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ -x "$venv/bin/st" && -f "$venv/.stamp" && "$(cat "$venv/.stamp")" == "$want" ]]; then
    exit 0
fi
python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || { echo "schemathesis: $python is missing" >&2; exit 1; }
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        echo "schemathesis: the Python venv module is missing (Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$requirements"
echo "$want" >"$venv/.stamp"
echo "schemathesis: $venv ready"
