//! The dashboards and alerts in deploy/ checked against the real tools: `promtool` validates the
//! scrape config and the rules and runs the alert unit tests (deploy/prometheus/tests/), and a
//! real Prometheus scrapes a producer and two worker processes through an end-to-end run, then
//! answers every query of the Grafana dashboard, and every metric an alert reads, with data.
//!
//! Prometheus comes from Debian (`scripts/ensure-test-tools.sh`, which `just test` runs first). Only
//! when it is missing do these tests skip, loudly (under `CI=true` they fail instead).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paywatch_core::PaymentStatus;
use paywatch_sandbox::{Fault, NewPayment, Provider};
use paywatch_tests::stack::{Stack, WebhookReceiver};
use paywatch_tests::tools::{self, Tool};
use paywatch_tests::{RedisServer, free_port, unique_prefix, wait_for};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Whether `prometheus` and `promtool` are there (`just test`'s setup installs them); `false`
/// after a loud banner when they are missing outside CI.
fn prometheus_available() -> bool {
    tools::require(Tool::Prometheus, "the dashboards, alerts and live scrapes")
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_rules() {
    if !prometheus_available() {
        return;
    }
    promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
    promtool(&["check", "rules", "deploy/prometheus/rules.yml"]);
}

#[test]
fn every_alert_fires_on_its_condition() {
    if !prometheus_available() {
        return;
    }
    promtool(&["test", "rules", "deploy/prometheus/tests/alerts.yaml"]);
}

/// A Prometheus server on a free port with its own storage, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(producer: &str, workers: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = repo().join("deploy/prometheus/rules.yml");
        let workers = workers
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(", ");
        // The deploy config's jobs and rules, with static targets and a short interval.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n\
             \x20 - job_name: paywatch-producer\n    static_configs:\n      - targets: [\"{producer}\"]\n\
             \x20 - job_name: paywatch-worker\n    static_configs:\n      - targets: [{workers}]\n",
            rules = rules.display()
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        promtool(&["check", "config", config_path.to_str().expect("utf-8 path")]);
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // The workers' histograms carry trace ids (docs/observability.md).
            .arg("--enable-feature=exemplar-storage")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let url = format!("http://127.0.0.1:{port}");
        let server = Self {
            child,
            url,
            _dir: dir,
        };
        let ready = format!("{}/-/ready", server.url);
        wait_for(
            "Prometheus to be ready",
            Duration::from_secs(30),
            || async {
                let r = reqwest::get(&ready).await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
        server
    }

    /// The result vector of an instant query; panics on a query error (bad PromQL).
    async fn query(&self, expr: &str) -> Vec<Value> {
        let body: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .expect("query Prometheus")
            .json()
            .await
            .expect("Prometheus JSON");
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("GET Prometheus")
            .json()
            .await
            .expect("Prometheus JSON")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A worker process killed when dropped.
struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a worker process logging JSON lines to `log`, exporting its traces to `otlp`.
fn spawn_worker(mut args: Vec<String>, metrics_port: u16, log: &Path, otlp: &str) -> WorkerProcess {
    args.remove(0);
    args.extend([
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
    ]);
    let log = std::fs::File::create(log).expect("create worker log");
    WorkerProcess(
        Command::new(env!("CARGO_BIN_EXE_pw-worker"))
            .args(&args)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pw-worker"),
    )
}

/// Every `"expr"` string in a Grafana dashboard.
fn dashboard_exprs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::String(expr) if key == "expr" => out.push(expr.clone()),
                    _ => dashboard_exprs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| dashboard_exprs(i, out)),
        _ => {}
    }
}

/// The vector selectors of a PromQL expression that name paywatch's metrics or `up`, with
/// their label matchers: what an alert reads, each of which must have data in a healthy run
/// (the alert itself fires only on its condition, which `promtool test rules` proves).
fn selectors(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && ident(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        let name = &expr[start..i];
        if !(name.starts_with("paywatch_") || (name == "up" && bytes.get(i) == Some(&b'{'))) {
            continue;
        }
        let mut selector = name.to_string();
        if bytes.get(i) == Some(&b'{')
            && let Some(end) = expr[i..].find('}')
        {
            selector.push_str(&expr[i..=i + end]);
            i += end + 1;
        }
        out.push(selector);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_answers_every_dashboard_and_alert_query() {
    if !prometheus_available() {
        return;
    }
    let stack = Stack::start("observability").await;
    // The producer's listener, as `paywatch-producer serve --metrics-listen` starts it; the
    // stack's in-process API records into it.
    let producer = paywatch_producer::telemetry::serve(
        "127.0.0.1:0".parse().expect("addr"),
        &stack.redis,
        &stack.prefix,
        paywatch_core::store::DEFAULT_SHARDS,
    )
    .await
    .expect("producer metrics listener");
    for (path, want) in [("/healthz", 200), ("/readyz", 200)] {
        assert_eq!(
            status_of(&format!("http://{producer}{path}")).await,
            want,
            "{path}"
        );
    }
    let (check_port, notify_port) = (free_port(), free_port());
    let mut check_args = stack.worker_args(0.01);
    check_args.extend(["--queues".into(), "check-payment".into()]);
    let logs = tempfile::tempdir().expect("tempdir");
    let check_log = logs.path().join("checks.log");
    let (otlp, spans) = paywatch_tests::otlp::receiver().await;
    let _checker = spawn_worker(check_args, check_port, &check_log, &otlp);
    let _notifier = spawn_worker(
        stack.notifier_args(),
        notify_port,
        &logs.path().join("notify.log"),
        &otlp,
    );
    let prometheus = Prometheus::start(
        &producer.to_string(),
        &[
            format!("127.0.0.1:{check_port}"),
            format!("127.0.0.1:{notify_port}"),
        ],
    )
    .await;

    // Paid orders (one meets a 429, one a 503 on the way), notified by Telegram and webhook,
    // plus one whose check is rejected and dead-lettered.
    let receiver = WebhookReceiver::start().await;
    let notify = json!({"telegram_chat_id": 7, "webhook_url": receiver.url});
    let mut paid = Vec::new();
    for (i, fault) in [
        None,
        None,
        Some(Fault::rate_limited(1).times(1)),
        Some(Fault::status(503).times(1)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut payment = NewPayment::new(Provider::Cashless)
            .step(0, "NOT_PAID")
            .step(300, "FULLY_PAID");
        if let Some(fault) = fault {
            payment = payment.fault(fault);
        }
        let bill = stack.payment(payment);
        let id = format!("obs-{i}");
        let (status, body) = stack
            .submit(&json!({"order_id": id, "provider": "cashless", "payment_id": bill, "notify": notify}))
            .await;
        assert_eq!(status, 202, "{body}");
        paid.push(id);
    }
    let denied = stack.payment(NewPayment::new(Provider::Cashless).fault(Fault::status(401)));
    stack
        .submit(&json!({"order_id": "obs-denied", "provider": "cashless", "payment_id": denied}))
        .await;
    for id in &paid {
        stack
            .wait_status(id, PaymentStatus::Paid, Duration::from_secs(30))
            .await;
    }
    wait_for(
        "the rejected check in the dead letters",
        Duration::from_secs(20),
        || async { Some(stack.dead_checks().await).filter(|d| !d.is_empty()) },
    )
    .await;
    wait_for(
        "every notification delivered",
        Duration::from_secs(30),
        || async { (receiver.received().len() >= paid.len()).then_some(()) },
    )
    .await;

    // Every target is scraped, and the run's last events have reached Prometheus.
    wait_for(
        "Prometheus to scrape all three processes and see the run",
        Duration::from_secs(30),
        || async {
            let up = prometheus.query("sum(up{job=~\"paywatch-.*\"})").await;
            let up = up.first()?["value"][1].as_str()?.parse::<f64>().ok()?;
            let dead = prometheus
                .query("sum(paywatch_queue_jobs_dead_lettered_total) > 0")
                .await;
            let notified = prometheus
                .query("sum(paywatch_notifications_total{outcome=\"delivered\"})")
                .await;
            let notified = notified.first()?["value"][1]
                .as_str()?
                .parse::<f64>()
                .ok()?;
            (up == 3.0 && !dead.is_empty() && notified >= 2.0 * paid.len() as f64).then_some(())
        },
    )
    .await;

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/dashboards/paywatch.json"))
            .expect("read dashboard"),
    )
    .expect("dashboard JSON");
    let mut queries = Vec::new();
    dashboard_exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 20, "{} dashboard queries", queries.len());

    // The rules as Prometheus loaded them: all evaluate without error.
    let rules = prometheus.get("/api/v1/rules").await;
    let mut alerts = Vec::new();
    for group in rules["data"]["groups"].as_array().expect("rule groups") {
        for rule in group["rules"].as_array().expect("rules") {
            alerts.push((
                rule["name"].as_str().unwrap_or_default().to_string(),
                rule["query"].as_str().unwrap_or_default().to_string(),
                rule["health"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    assert_eq!(alerts.len(), 7, "{rules}");
    for (name, query, _) in &alerts {
        for selector in selectors(query) {
            queries.push(selector);
        }
        // The whole expression is valid PromQL with these metrics (it returns nothing unless
        // the alert's condition holds, as in a healthy run).
        prometheus.query(query).await;
        assert!(
            !selectors(query).is_empty(),
            "{name} reads no paywatch metric"
        );
    }
    // The query KEDA scales the check workers on.
    let keda = std::fs::read_to_string(repo().join("deploy/k8s/keda-scaledobject.yaml"))
        .expect("read the ScaledObject");
    let keda = keda
        .lines()
        .find_map(|l| l.trim().strip_prefix("query: "))
        .expect("the ScaledObject's query");
    queries.push(keda.to_string());
    queries.sort();
    queries.dedup();

    // Rates need two samples after a series first appears: wait a few scrapes, not forever.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut empty: Vec<String> = queries.clone();
    while !empty.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for q in empty {
            if prometheus.query(&q).await.is_empty() {
                still.push(q);
            }
        }
        empty = still;
        if !empty.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(
        empty.is_empty(),
        "queries with no data after the end-to-end run:\n  {}",
        empty.join("\n  ")
    );
    // Naming conventions, on what Prometheus actually ingested: counters end in `_total`,
    // histograms are in seconds (or count something named), labels are bounded kinds and no
    // label value is an order id, a payment id or a URL.
    let metadata = prometheus.get("/api/v1/metadata").await;
    let mut names = 0;
    for (name, entries) in metadata["data"].as_object().expect("metadata") {
        if !name.starts_with("paywatch_") {
            continue;
        }
        names += 1;
        let kind = entries[0]["type"].as_str().unwrap_or_default();
        match kind {
            // Scraped as OpenMetrics, a counter's family is named without `_total` and its
            // series with it.
            "counter" => {
                let series = match name.strip_suffix("_total") {
                    Some(_) => name.clone(),
                    None => format!("{name}_total"),
                };
                assert!(
                    !prometheus
                        .query(&format!("count({series})"))
                        .await
                        .is_empty()
                        || !name.ends_with("_total"),
                    "counter {name}"
                );
            }
            "histogram" => assert!(
                name.ends_with("_seconds") || name == "paywatch_order_provider_calls",
                "histogram {name} has no unit"
            ),
            "gauge" => assert!(!name.ends_with("_total"), "gauge {name}"),
            other => panic!("{name}: unexpected type {other}"),
        }
    }
    assert!(names >= 25, "only {names} paywatch metrics ingested");
    let allowed = [
        "__name__", "job", "instance", "le", "queue", "state", "provider", "status", "outcome",
        "channel", "reason", "op",
    ];
    for series in prometheus.query("{__name__=~\"paywatch_.*\"}").await {
        for (label, value) in series["metric"].as_object().expect("labels") {
            assert!(
                allowed.contains(&label.as_str()),
                "unbounded label {label} in {series}"
            );
            let value = value.as_str().unwrap_or_default();
            assert!(
                !value.starts_with("obs-") && !value.contains("://") && !value.contains('@'),
                "{label}={value} in {series}"
            );
        }
    }
    let unhealthy: Vec<_> = prometheus.get("/api/v1/rules").await["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["health"] != "ok")
        .collect();
    assert!(
        unhealthy.is_empty(),
        "rules failing to evaluate: {unhealthy:?}"
    );
    // LOG_FORMAT=json: one JSON object per line, and the check's span names the order, the
    // provider and the attempt.
    let log = std::fs::read_to_string(&check_log).expect("read the worker's log");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let settled = lines
        .iter()
        .find(|l| l["fields"]["message"] == "payment settled" && l["span"]["order"] == "obs-0")
        .unwrap_or_else(|| panic!("no settle of obs-0 in the JSON log:\n{log}"));
    assert_eq!(settled["span"]["name"], "check", "{settled}");
    assert_eq!(settled["span"]["provider"], "cashless", "{settled}");
    assert!(settled["span"]["attempt"].as_u64().is_some(), "{settled}");
    assert!(!log.contains("sandbox-cashless"), "no credentials in logs");

    // Exemplars: the slow buckets of lateness, detection lag and provider requests name the
    // trace of an observation, and that trace reached the collector.
    for histogram in [
        "paywatch_queue_lateness_seconds_bucket",
        "paywatch_order_detection_lag_seconds_bucket",
        "paywatch_provider_request_duration_seconds_bucket",
    ] {
        let found = wait_for(
            &format!("exemplars of {histogram}"),
            Duration::from_secs(30),
            || async {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_secs();
                let body: Value = reqwest::Client::new()
                    .get(format!("{}/api/v1/query_exemplars", prometheus.url))
                    .query(&[
                        ("query", histogram.to_string()),
                        ("start", (now - 600).to_string()),
                        ("end", (now + 60).to_string()),
                    ])
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let traces: Vec<String> = body["data"]
                    .as_array()?
                    .iter()
                    .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
                    .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_string))
                    .collect();
                (!traces.is_empty()).then_some(traces)
            },
        )
        .await;
        for trace in &found {
            assert_eq!(trace.len(), 32, "{histogram}: {trace}");
        }
        wait_for(
            &format!("a trace of {histogram}'s exemplars at the collector"),
            Duration::from_secs(10),
            || {
                let known = paywatch_tests::otlp::snapshot(&spans)
                    .iter()
                    .any(|s| found.contains(&s.trace_id));
                async move { known.then_some(()) }
            },
        )
        .await;
    }
    // The plain text format stays exemplar-free and as it was for scrapers that ask for it.
    let plain = reqwest::get(format!("http://127.0.0.1:{check_port}/metrics"))
        .await
        .expect("GET /metrics");
    assert!(
        plain
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain")),
        "{:?}",
        plain.headers()
    );
    let plain = plain.text().await.expect("metrics text");
    assert!(!plain.contains("trace_id") && !plain.contains("# EOF"));
    stack.finish().await;
}

#[tokio::test]
async fn depth_tells_due_now_from_later_and_how_long_until_the_next() {
    use paywatch_queue::{NewJob, Schedule};
    let stack = Stack::start("obs-depth").await;
    let queue = stack.queue("depth").await;
    let empty = queue.depth().await.expect("depth");
    assert_eq!(
        (empty.due, empty.scheduled, empty.next_due_in_ms),
        (0, 0, None)
    );
    queue
        .enqueue_many(vec![
            NewJob::new(json!(1)).with_schedule(Schedule::After(Duration::from_secs(3600))),
            NewJob::new(json!(2)).with_schedule(Schedule::After(Duration::from_secs(60))),
        ])
        .await
        .expect("enqueue later");
    let later = queue.depth().await.expect("depth");
    assert_eq!((later.due, later.scheduled, later.leased), (0, 2, 0));
    let next = later.next_due_in_ms.expect("a pending job");
    assert!((55_000..=60_000).contains(&next), "{next} ms");
    queue.push(json!(3)).await.expect("enqueue now");
    let now = queue.depth().await.expect("depth");
    assert_eq!((now.due, now.scheduled), (1, 2));
    assert!(now.next_due_in_ms.expect("due job") <= 0, "{now:?}");
    stack.finish().await;
}

/// The HTTP status of `url`, or 0 when nothing answers.
async fn status_of(url: &str) -> u16 {
    match reqwest::get(url).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn the_worker_listener_follows_redis_for_readiness_and_counts_the_reconnect() {
    let mut redis = RedisServer::start().await;
    let port = free_port();
    let _worker = WorkerProcess(
        Command::new(env!("CARGO_BIN_EXE_pw-worker"))
            .args(["--redis-url", &redis.url()])
            .args(["--prefix", &unique_prefix("obs-ready")])
            .args(["--sandbox-url", "http://127.0.0.1:9/"])
            .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pw-worker"),
    );
    // The producer serves the same listener (`paywatch_core::telemetry::serve_ops`); the
    // process's one global recorder belongs to the end-to-end test in this binary, which
    // checks the producer's /healthz and /readyz.
    let base = format!("http://127.0.0.1:{port}");
    let status = |path: &'static str| {
        let url = format!("{base}{path}");
        async move { status_of(&url).await }
    };
    let metric = |line: &'static str| {
        let url = format!("{base}/metrics");
        async move {
            let text = reqwest::get(url).await.ok()?.text().await.ok()?;
            text.lines().any(|l| l == line).then_some(())
        }
    };
    wait_for(
        "the worker to be ready",
        Duration::from_secs(20),
        || async { (status("/readyz").await == 200).then_some(()) },
    )
    .await;
    assert_eq!(status("/healthz").await, 200);
    wait_for(
        "a reconnect counter at zero",
        Duration::from_secs(10),
        || metric("paywatch_queue_redis_reconnects_total{queue=\"check-payment.0\"} 0"),
    )
    .await;

    redis.kill();
    wait_for(
        "readiness to report Redis gone",
        Duration::from_secs(20),
        || async { (status("/readyz").await == 503).then_some(()) },
    )
    .await;
    assert_eq!(status("/healthz").await, 200, "still alive");
    wait_for("redis_up to drop to 0", Duration::from_secs(20), || {
        metric("paywatch_queue_redis_up{queue=\"check-payment.0\"} 0")
    })
    .await;

    redis.restart().await;
    wait_for(
        "readiness to come back",
        Duration::from_secs(30),
        || async { (status("/readyz").await == 200).then_some(()) },
    )
    .await;
    wait_for(
        "the reconnect to be counted",
        Duration::from_secs(30),
        || metric("paywatch_queue_redis_reconnects_total{queue=\"check-payment.0\"} 1"),
    )
    .await;
    wait_for("redis_up back at 1", Duration::from_secs(10), || {
        metric("paywatch_queue_redis_up{queue=\"check-payment.0\"} 1")
    })
    .await;
}

#[test]
fn selectors_are_found_with_their_matchers() {
    assert_eq!(
        selectors(
            "max by (queue) (paywatch_queue_jobs{state=\"due\"}) > 0 unless on (queue) \
             sum(rate(paywatch_queue_jobs_fetched_total[5m])) > 0 or up{job=~\"paywatch-.*\"}"
        ),
        [
            "paywatch_queue_jobs{state=\"due\"}",
            "paywatch_queue_jobs_fetched_total",
            "up{job=~\"paywatch-.*\"}"
        ]
    );
}
