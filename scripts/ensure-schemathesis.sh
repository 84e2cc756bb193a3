#!/usr/bin/env bash
# Make sure schemathesis (pinned in tests/api/requirements.txt) is installed in
# .paywatch/schemathesis-venv, for tests/it/schemathesis.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/ensure-venv.sh .paywatch/schemathesis-venv tests/api/requirements.txt
