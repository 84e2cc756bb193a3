#!/usr/bin/env bash
# Validates everything in deploy/ with real validators, offline:
#   - hadolint on the Dockerfile,
#   - the compose-spec JSON schema on compose.yaml (check-jsonschema's vendored copy),
#   - the Kubernetes OpenAPI schemas, strict, on deploy/k8s/ (kubernetes-validate), and KEDA's
#     CRD schema on the ScaledObject (npm's @kubernetes-models/keda, deploy/validate/),
#   - promtool on the Prometheus config and rules, and the alert unit tests,
#   - paywatch's own rules: the drain fits in the termination grace period, KEDA scales on the
#     due-now depth with at least one replica, the dashboard's datasource uid is provisioned.
# The Python tools live in .paywatch/deploy-venv (from deploy/requirements.txt), the Node ones
# in .paywatch/deploy-node (from deploy/validate/package-lock.json), each rebuilt when its pins
# change; Prometheus comes from scripts/ensure-prometheus.sh. Node.js and python3-venv come from
# Debian when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
# One run at a time (the installs below are not safe to run twice at once).
mkdir -p .paywatch
exec 9>.paywatch/check-deploy.lock
flock 9

venv=.paywatch/deploy-venv
scripts/ensure-venv.sh "$venv" deploy/requirements.txt
scripts/ensure-prometheus.sh

node_dir=.paywatch/deploy-node
node_stamp="$node_dir/.lock.sha256"
node_want="$(cat deploy/validate/package-lock.json deploy/validate/keda.mjs | sha256sum | cut -d' ' -f1)"
if ! [[ -f "$node_stamp" && "$(cat "$node_stamp")" == "$node_want" ]]; then
    if ! command -v npm >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq -o DPkg::Lock::Timeout=300
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 nodejs npm >/dev/null
        else
            echo "check-deploy: Node.js and npm are needed (Debian: apt-get install nodejs npm)" >&2
            exit 1
        fi
    fi
    echo "check-deploy: installing the KEDA schema validator into $node_dir"
    rm -rf "$node_dir"
    mkdir -p "$node_dir"
    cp deploy/validate/package.json deploy/validate/package-lock.json deploy/validate/keda.mjs "$node_dir/"
    (cd "$node_dir" && npm ci --silent --no-audit --no-fund)
    echo "$node_want" >"$node_stamp"
fi

echo "check-deploy: hadolint deploy/Dockerfile"
"$venv/bin/hadolint" deploy/Dockerfile

echo "check-deploy: compose-spec schema on deploy/compose.yaml"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml

echo "check-deploy: Kubernetes schemas (strict) on deploy/k8s/"
mapfile -t manifests < <(grep -L '^kind: ScaledObject' deploy/k8s/*.yaml)
"$venv/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"

echo "check-deploy: KEDA's CRD schema on the ScaledObject"
node "$node_dir/keda.mjs" deploy/k8s/*.yaml >/dev/null

echo "check-deploy: promtool"
promtool check config deploy/prometheus/prometheus.yml >/dev/null
promtool check rules deploy/prometheus/rules.yml >/dev/null
promtool test rules deploy/prometheus/tests/alerts.yaml >/dev/null

echo "check-deploy: paywatch's own rules"
"$venv/bin/python" scripts/check_deploy_rules.py
echo "check-deploy: all good"
