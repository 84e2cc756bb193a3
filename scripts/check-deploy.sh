#!/usr/bin/env bash
# Validates everything in deploy/ with real validators, offline:
#   - hadolint on the Dockerfile,
#   - the compose-spec JSON schema on compose.yaml (check-jsonschema's vendored copy),
#   - the Kubernetes OpenAPI schemas, strict, on deploy/k8s/ (kubernetes-validate; KEDA's
#     ScaledObject has no schema in any registry package, so it gets the checks below only),
#   - promtool on the Prometheus config and rules, and the alert unit tests,
#   - paywatch's own rules: the drain fits in the termination grace period, KEDA scales on the
#     due-now depth with at least one replica, the dashboard's datasource uid is provisioned.
# The Python tools live in .paywatch/deploy-venv (from deploy/requirements.txt, rebuilt when it
# changes); Prometheus comes from scripts/ensure-prometheus.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.paywatch/deploy-venv
requirements=deploy/requirements.txt
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if ! [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    python="${PYTHON:-python3}"
    if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
        if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        else
            echo "check-deploy: python3 with the venv module is needed" >&2
            exit 1
        fi
    fi
    echo "check-deploy: building $venv from $requirements"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --requirement "$requirements"
    echo "$want" >"$stamp"
fi
scripts/ensure-prometheus.sh

echo "check-deploy: hadolint deploy/Dockerfile"
"$venv/bin/hadolint" deploy/Dockerfile

echo "check-deploy: compose-spec schema on deploy/compose.yaml"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml

echo "check-deploy: Kubernetes schemas (strict) on deploy/k8s/"
mapfile -t manifests < <(grep -L '^kind: ScaledObject' deploy/k8s/*.yaml)
"$venv/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"

echo "check-deploy: promtool"
promtool check config deploy/prometheus/prometheus.yml >/dev/null
promtool check rules deploy/prometheus/rules.yml >/dev/null
promtool test rules deploy/prometheus/tests/alerts.yaml >/dev/null

echo "check-deploy: paywatch's own rules"
"$venv/bin/python" scripts/check_deploy_rules.py
echo "check-deploy: all good"
