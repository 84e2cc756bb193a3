//! The container image (deploy/Dockerfile), built by `scripts/image.sh` from the very binaries
//! this run tests (`PAYWATCH_TEST_BINARIES`: the debug build, so no release build is added to
//! the suite) and run with podman: its contents, user, entry point, libraries and health check,
//! a bad variable refused by name, then every role from the image (the sandbox, the producer, a
//! check worker, a notifier) against the test Redis, one order submitted, checked against the
//! sandbox and notified on Telegram, and a worker's `SIGTERM` drain within its grace period.
//!
//! Containers use the host network and loopback ports (the machines this runs on have no
//! container network). Needs podman, runc and debootstrap: scripts/ensure-test-tools.sh
//! installs them on Debian; elsewhere the test skips with a banner (fails under `CI=true`).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use paywatch_tests::stack::API_TOKEN;
use paywatch_tests::{cleanup, free_ports, product_binaries, redis_url, repo_root, unique_prefix};
use paywatch_tests::{tools, wait_for};
use serde_json::{Value, json};

/// The tag the test builds (not the operator's `paywatch:<version>`).
const IMAGE: &str = "localhost/paywatch-test:it";
/// The grace period the check worker is given; `podman stop` waits longer before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// `podman …` with the settings scripts/image.sh wrote for this machine.
fn podman(args: &[&str]) -> Output {
    let mut cmd = Command::new("podman");
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        cmd.env(
            "CONTAINERS_CONF",
            repo_root().join(".paywatch/containers.conf"),
        );
    }
    cmd.args(args).output().expect("run podman")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A container removed (killed if need be) when the test ends, passing or not.
struct Container {
    name: String,
    started: Instant,
}

impl Container {
    /// `podman run -d` of the image as `name`, with `env` and the command `args`, on the host
    /// network with a read-only root filesystem.
    fn run(name: &str, env: &[(&str, String)], args: &[&str]) -> Self {
        let name = format!("{name}-{}", std::process::id());
        let mut run: Vec<String> = ["run", "-d", "--name", &name, "--network", "host"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        run.push("--read-only".into());
        for (key, value) in env {
            run.push("--env".into());
            run.push(format!("{key}={value}"));
        }
        run.push(IMAGE.into());
        run.extend(args.iter().map(|s| s.to_string()));
        let started = Instant::now();
        let out = podman(&run.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "podman run {name}: {}", text(&out));
        Self { name, started }
    }

    /// Waits until the image's HEALTHCHECK (`paywatch-probe`) passes; returns the time from
    /// `podman run` to then.
    async fn healthy(&self) -> Duration {
        wait_for(
            &format!("{} to pass its health check", self.name),
            Duration::from_secs(60),
            || async {
                let out = podman(&["healthcheck", "run", &self.name]);
                if out.status.success() {
                    return Some(self.started.elapsed());
                }
                // An exited container never becomes healthy: say why at once.
                let state = podman(&["inspect", "--format", "{{.State.Status}}", &self.name]);
                let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
                assert!(
                    state == "running",
                    "{} is {state}:\n{}",
                    self.name,
                    text(&podman(&["logs", &self.name]))
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                None
            },
        )
        .await
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
    }
}

/// The value at `pointer` in the image's `podman image inspect` JSON.
fn inspected<'a>(image: &'a Value, pointer: &str) -> &'a Value {
    let value = image.pointer(pointer).unwrap_or(&Value::Null);
    assert!(!value.is_null(), "image inspect has no {pointer}: {image}");
    value
}

#[tokio::test]
async fn the_image_runs_every_role_and_settles_an_order() {
    if Command::new("podman").arg("--version").output().is_err() {
        tools::missing(
            "podman (with runc and debootstrap)",
            "the container image: its build, contents and every role run from it",
        );
        return;
    }

    // ---- build, from this run's binaries ----
    let build = Instant::now();
    let out = Command::new(repo_root().join("scripts/image.sh"))
        .env_remove("CONTAINERS_CONF")
        .arg("--binaries")
        .arg(product_binaries())
        .args(["--tag", IMAGE, "--no-measure"])
        .output()
        .expect("run scripts/image.sh");
    assert!(out.status.success(), "scripts/image.sh: {}", text(&out));
    eprintln!("image: built {IMAGE} in {:?}", build.elapsed());

    // ---- what is in it ----
    let out = podman(&["image", "inspect", IMAGE]);
    assert!(out.status.success(), "inspect: {}", text(&out));
    let inspect: Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    let image = &inspect[0];
    assert_eq!(inspected(image, "/Config/User"), "65532:65532");
    assert_eq!(
        inspected(image, "/Config/Entrypoint"),
        &json!(["/usr/bin/tini", "--"])
    );
    assert_eq!(inspected(image, "/Config/Cmd"), &json!(["paywatch-worker"]));
    assert_eq!(
        inspected(image, "/Healthcheck/Test"),
        &json!(["CMD", "paywatch-probe"])
    );
    for port in ["8080/tcp", "9464/tcp"] {
        assert!(
            inspected(image, "/Config/ExposedPorts").get(port).is_some(),
            "{port} not exposed"
        );
    }
    let revision = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo_root())
        .output()
        .expect("git rev-parse");
    assert!(
        revision.status.success() && !revision.stdout.is_empty(),
        "git rev-parse HEAD in {}: {}",
        repo_root().display(),
        text(&revision)
    );
    let labels = inspected(image, "/Config/Labels");
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        String::from_utf8_lossy(&revision.stdout).trim()
    );
    for label in ["version", "source", "title"] {
        let key = format!("org.opencontainers.image.{label}");
        assert!(labels[&key].is_string(), "no {key} label: {labels}");
    }
    // Every binary starts under the image's own loader and libraries, read-only, as 65532.
    for bin in [
        "paywatch-producer",
        "paywatch-worker",
        "paywatch-sandbox",
        "paywatch-probe",
    ] {
        let out = podman(&["run", "--rm", "--read-only", IMAGE, bin, "--version"]);
        assert!(out.status.success(), "{bin} --version: {}", text(&out));
    }

    // ---- a bad variable: exit non-zero, naming it ----
    let out = podman(&[
        "run",
        "--rm",
        "--network",
        "host",
        "--env",
        "PAYWATCH_CONCURRENCY=lots",
        IMAGE,
    ]);
    assert!(!out.status.success(), "a bad variable was accepted");
    assert!(
        text(&out).contains("PAYWATCH_CONCURRENCY"),
        "the error does not name the variable: {}",
        text(&out)
    );

    // ---- every role from the image ----
    let redis = redis_url();
    let prefix = unique_prefix("image");
    let [
        sandbox_port,
        api_port,
        producer_metrics,
        checks_metrics,
        notify_metrics,
    ] = free_ports();
    let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
    let api = format!("http://127.0.0.1:{api_port}");
    let common = |metrics: u16| {
        vec![
            ("REDIS_URL", redis.clone()),
            ("PAYWATCH_PREFIX", prefix.clone()),
            ("PAYWATCH_METRICS_LISTEN", format!("127.0.0.1:{metrics}")),
            (
                "PAYWATCH_PRODUCER_METRICS_LISTEN",
                format!("127.0.0.1:{metrics}"),
            ),
            (
                "PAYWATCH_PROBE_URL",
                format!("http://127.0.0.1:{metrics}/readyz"),
            ),
        ]
    };
    let sandbox = Container::run(
        "pw-it-sandbox",
        &[("PAYWATCH_PROBE_URL", format!("{sandbox_url}/_admin/health"))],
        &[
            "paywatch-sandbox",
            "--listen",
            &format!("127.0.0.1:{sandbox_port}"),
            "--webhook-target",
            &api,
        ],
    );
    let mut producer_env = common(producer_metrics);
    producer_env.push(("PAYWATCH_API_TOKENS", API_TOKEN.to_string()));
    let producer = Container::run(
        "pw-it-producer",
        &producer_env,
        &[
            "paywatch-producer",
            "serve",
            "--listen",
            &format!("127.0.0.1:{api_port}"),
        ],
    );
    let grace = format!("{}s", GRACE.as_secs());
    let checks = Container::run(
        "pw-it-checks",
        &common(checks_metrics),
        &[
            "paywatch-worker",
            "--queues",
            "check-payment",
            "--sandbox-url",
            &sandbox_url,
            "--grace-period",
            &grace,
        ],
    );
    let notify = Container::run(
        "pw-it-notify",
        &common(notify_metrics),
        &[
            "paywatch-worker",
            "--queues",
            "notify-telegram",
            "--sandbox-url",
            &sandbox_url,
            "--telegram-chat-interval",
            "5ms",
        ],
    );
    for container in [&sandbox, &producer, &checks, &notify] {
        let ready = container.healthy().await;
        eprintln!("image: {} ready {ready:?} after podman run", container.name);
    }

    // ---- one order: checked against the sandbox, notified ----
    let http = reqwest::Client::new();
    let payment = format!("bill-{}", &prefix[prefix.len() - 8..]);
    let created = http
        .post(format!("{sandbox_url}/_admin/payments"))
        .json(&json!({"provider": "cashless", "id": payment, "timeline": [
            {"after_ms": 0, "status": "NOT_PAID"}, {"after_ms": 500, "status": "FULLY_PAID"}]}))
        .send()
        .await
        .expect("POST /_admin/payments");
    assert!(
        created.status().is_success(),
        "sandbox payment: {created:?}"
    );
    let order_id = format!("img-{payment}");
    let chat = 4242;
    let submitted = http
        .post(format!("{api}/v1/orders"))
        .bearer_auth(API_TOKEN)
        .json(
            &json!({"order_id": order_id, "provider": "cashless", "payment_id": payment,
            "notify": {"telegram_chat_id": chat}}),
        )
        .send()
        .await
        .expect("POST /v1/orders");
    assert_eq!(submitted.status().as_u16(), 202, "submit: {submitted:?}");
    wait_for(
        &format!("order {order_id} to be paid"),
        Duration::from_secs(30),
        || async {
            let view: Value = http
                .get(format!("{api}/v1/orders/{order_id}"))
                .bearer_auth(API_TOKEN)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (view["status"] == "paid").then_some(())
        },
    )
    .await;
    wait_for(
        "the Telegram message in the sandbox",
        Duration::from_secs(30),
        || async {
            let messages: Value = http
                .get(format!("{sandbox_url}/_admin/telegram/messages"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            messages.as_array()?.iter().find(|m| {
                m["chat_id"] == chat && m["text"].as_str().is_some_and(|t| t.contains(&order_id))
            })?;
            Some(())
        },
    )
    .await;

    // ---- SIGTERM (through tini): the worker drains and exits 0 within its grace period ----
    let stop = Instant::now();
    let out = podman(&["stop", "--time", "30", &checks.name]);
    assert!(out.status.success(), "podman stop: {}", text(&out));
    let stopped = stop.elapsed();
    let code = podman(&["inspect", "--format", "{{.State.ExitCode}}", &checks.name]);
    assert_eq!(
        String::from_utf8_lossy(&code.stdout).trim(),
        "0",
        "the worker did not exit cleanly on SIGTERM:\n{}",
        text(&podman(&["logs", &checks.name]))
    );
    assert!(
        stopped < GRACE + Duration::from_secs(5),
        "SIGTERM took {stopped:?}, grace period {GRACE:?}"
    );
    eprintln!("image: the check worker stopped {stopped:?} after SIGTERM");

    drop((sandbox, producer, checks, notify));
    cleanup(&redis, &prefix).await;
}
