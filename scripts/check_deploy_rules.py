"""What no schema knows about paywatch's deploy files; run by scripts/check-deploy.sh.

With `--runs SECRETS_JSON` it also prints, as JSON, every paywatch process that compose.yaml and
k8s/ start (arguments and environment), for tests/it/deploy.rs to start each one for real."""

import json
import re
import sys
from pathlib import Path

import yaml

root = Path(__file__).resolve().parent.parent
problems = []


def seconds(value):
    match = re.fullmatch(r"(\d+)(ms|s|m)", str(value))
    if not match:
        problems.append(f"cannot read the duration {value!r}")
        return 0
    n, unit = int(match[1]), match[2]
    return {"ms": n / 1000, "s": n, "m": 60 * n}[unit]


docs = {}
for path in sorted((root / "deploy/k8s").glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            docs[(doc["kind"], doc["metadata"]["name"])] = (path.name, doc)

config = docs[("ConfigMap", "paywatch")][1]["data"]
grace = seconds(config["PAYWATCH_GRACE_PERIOD"])
deployments = {name: doc for (kind, name), (_, doc) in docs.items() if kind == "Deployment"}
pdbs = [doc for (kind, _), (_, doc) in docs.items() if kind == "PodDisruptionBudget"]
for name, doc in deployments.items():
    pod = doc["spec"]["template"]["spec"]
    if pod.get("terminationGracePeriodSeconds", 30) <= grace:
        problems.append(f"{name}: terminationGracePeriodSeconds must exceed PAYWATCH_GRACE_PERIOD ({grace}s)")
    for c in pod["containers"]:
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in c:
                problems.append(f"{name}: no {probe}")
    labels = doc["spec"]["selector"]["matchLabels"]
    if not any(p["spec"]["selector"]["matchLabels"] == labels for p in pdbs):
        problems.append(f"{name}: no PodDisruptionBudget")

scaled = [doc for (kind, _), (_, doc) in docs.items() if kind == "ScaledObject"]
if not scaled:
    problems.append("no KEDA ScaledObject")
for doc in scaled:
    spec = doc["spec"]
    target = spec["scaleTargetRef"]["name"]
    if target not in deployments:
        problems.append(f"ScaledObject targets {target}, which is not a Deployment here")
    if spec.get("minReplicaCount", 0) < 1:
        problems.append("ScaledObject: minReplicaCount must be at least 1")
    for trigger in spec["triggers"]:
        query = trigger["metadata"].get("query", "")
        if trigger["type"] != "prometheus" or 'state="due"' not in query:
            problems.append(f"ScaledObject: scale on the due-now depth, not {query!r}")

dashboard = json.loads((root / "deploy/grafana/dashboards/paywatch.json").read_text())
datasource = yaml.safe_load((root / "deploy/grafana/provisioning/datasources/prometheus.yaml").read_text())
uids = {d["uid"] for d in datasource["datasources"]}
used = set(re.findall(r'"uid": "([^"]+)"', json.dumps(dashboard, indent=1)))
if not used <= uids | {dashboard["uid"]}:
    problems.append(f"dashboard uses datasource uids {used - uids} that are not provisioned")

compose = yaml.safe_load((root / "deploy/compose.yaml").read_text())
redis = " ".join(compose["services"]["redis"]["command"])
for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
    if flag not in redis:
        problems.append(f"compose: redis without {flag}")



def dockerfile_facts():
    """What deploy/Dockerfile promises a manifest: the user, exposed ports, metrics port, the
    binaries and the health check, read from the file itself."""
    text = re.sub(r"\\\n", " ", (root / "deploy/Dockerfile").read_text())
    stages, stage = {}, None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            stage = words[-1] if len(words) >= 4 and words[-2].upper() == "AS" else words[1]
            stages[stage] = []
        elif stage:
            stages[stage].append(line)
    runtime = "\n".join(stages.get("runtime", []))
    prebuilt = "\n".join(stages.get("prebuilt", []))
    user = re.search(r"^USER (\d+):(\d+)$", runtime, re.M)
    metrics = re.search(r"PAYWATCH_METRICS_LISTEN=[^:\s]+:(\d+)", runtime)
    copy = re.search(r"^COPY (.+) /usr/local/bin/$", prebuilt, re.M)
    health = re.search(r"^HEALTHCHECK .*CMD (\[.*\])$", runtime, re.M)
    expose = re.search(r"^EXPOSE (.+)$", runtime, re.M)
    if not (user and metrics and copy and health and expose):
        problems.append("Dockerfile: the runtime stage lost USER, PAYWATCH_METRICS_LISTEN, "
                        "EXPOSE or HEALTHCHECK, or the prebuilt stage its COPY of the binaries")
        return None
    return {
        "uid": int(user[1]),
        "gid": int(user[2]),
        "metrics_port": int(metrics[1]),
        "ports": {int(p) for p in expose[1].split()},
        "binaries": set(copy[1].split()),
        "health": json.loads(health[1]),
    }


def version():
    text = (root / "Cargo.toml").read_text()
    return re.search(r'^\[workspace\.package\][^\[]*?^version = "([^"]+)"', text, re.M | re.S)[1]


def flag_port(args, flag):
    """The port of `--flag host:port` in `args`, or None."""
    if flag in args[:-1]:
        return int(args[args.index(flag) + 1].rsplit(":", 1)[1])
    return None


# The manifests run the image scripts/image.sh builds (paywatch:<version>), as its user, on its
# ports, with probes on the port the binaries' --metrics-listen serves: a drift fails here.
image = dockerfile_facts()
if image:
    tag = f"paywatch:{version()}"
    if image["health"][:1] != ["paywatch-probe"] or "paywatch-probe" not in image["binaries"]:
        problems.append(f"Dockerfile: HEALTHCHECK must run paywatch-probe, not {image['health']}")
    if image["metrics_port"] not in image["ports"]:
        problems.append(f"Dockerfile: the metrics port {image['metrics_port']} is not EXPOSEd")
    for name, doc in deployments.items():
        pod = doc["spec"]["template"]["spec"]
        context = pod.get("securityContext", {})
        if (context.get("runAsUser"), context.get("runAsGroup")) != (image["uid"], image["gid"]):
            problems.append(f"{name}: runAsUser/runAsGroup must be the image's {image['uid']}:{image['gid']}")
        for c in pod["containers"]:
            where = f"{name}/{c['name']}"
            if c.get("image") != tag:
                problems.append(f"{where}: image {c.get('image')!r}, but the build makes {tag!r}")
            args = c.get("args", [])
            if not args or args[0] not in image["binaries"]:
                problems.append(f"{where}: args[0] {args[:1]} is not a binary of the image {sorted(image['binaries'])}")
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for port in ports.values():
                if port not in image["ports"]:
                    problems.append(f"{where}: containerPort {port} is not EXPOSEd by the image")
            if ports.get("metrics") != image["metrics_port"] or flag_port(args, "--metrics-listen") != ports.get("metrics"):
                problems.append(f"{where}: the metrics port must be {image['metrics_port']}, in "
                                "--metrics-listen and containerPort alike")
            if "http" in ports and flag_port(args, "--listen") != ports["http"]:
                problems.append(f"{where}: --listen and the http containerPort disagree")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = c.get(probe, {}).get("httpGet", {})
                if get.get("path") != path or ports.get(get.get("port"), get.get("port")) != image["metrics_port"]:
                    problems.append(f"{where}: {probe} must GET {path} on the metrics port")
    for name, service in compose["services"].items():
        command = service.get("command")
        if isinstance(command, list) and command[0].startswith("paywatch-"):
            if command[0] not in image["binaries"]:
                problems.append(f"compose {name}: {command[0]} is not a binary of the image")
            if service.get("image") not in (tag, "paywatch:latest"):
                problems.append(f"compose {name}: image {service.get('image')!r}, not the one built")


def interpolate(value, env):
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}, from `env`."""

    def one(match):
        name, op, arg = match[1], match[2], match[3]
        if env.get(name):
            return env[name]
        if op == ":-":
            return arg or ""
        if op == ":?":
            problems.append(f"compose: {name} is required ({arg}) and the run check did not set it")
        return ""

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", one, str(value))


def runs(secrets):
    """Every paywatch process deploy/ starts: its arguments and environment, as the container
    would see them, with `secrets` standing in for what an operator fills in."""
    out = []
    services = compose["services"]
    for name, service in services.items():
        command = service.get("command")
        if not isinstance(command, list) or not command[0].startswith("paywatch-"):
            continue
        env = {k: interpolate(v, secrets) for k, v in (service.get("environment") or {}).items()}
        out.append({"source": f"compose {name}", "args": command, "env": env})
    for name, doc in deployments.items():
        for c in doc["spec"]["template"]["spec"]["containers"]:
            env = dict(config)
            env.update(docs[("Secret", "paywatch")][1]["stringData"])
            env.update(secrets)
            env.update({e["name"]: e["value"] for e in c.get("env") or []})
            out.append({"source": f"k8s {name}", "args": c["args"], "env": env})
    return out


if len(sys.argv) == 3 and sys.argv[1] == "--runs":
    print(json.dumps(runs(json.loads(sys.argv[2]))))
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
