//! `paywatch-demo stack` (`just up`): the local stack in the foreground until Ctrl-C — sandbox
//! providers, the producer (API, board, metrics), check workers, a notifier and Prometheus — with
//! every URL printed, and a few orders to look at (one of them dead-lettered, to retry from the
//! board). Ctrl-C or SIGTERM stops everything it started, in order, and deletes its keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::fleet::{Binaries, Fleet, build_binaries, free_ports, fresh_token};
use super::wait_ready;

/// Where the stack writes the processes' logs and Prometheus' files (relative to where it runs).
const LOGS: &str = ".paywatch/up";

/// How often the stack checks that its processes still run.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// What `paywatch-demo stack` runs.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// Run without Prometheus (it is started by default, from PATH; `scripts/ensure-prometheus.sh`
    /// installs Debian's).
    #[arg(long)]
    pub no_prometheus: bool,
    /// Submit no example orders.
    #[arg(long)]
    pub no_seed: bool,
    /// Check workers to run.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub checkers: u16,
    /// Use the sandbox, producer and worker binaries in this directory instead of having cargo
    /// build them.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// The API token (a fresh one each run when unset; at least 24 characters).
    #[arg(long, env = "PAYWATCH_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
}

/// Runs the stack until Ctrl-C or SIGTERM; an error when a process dies on its own.
pub async fn stack(args: StackArgs) -> anyhow::Result<()> {
    let logs = PathBuf::from(LOGS);
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {LOGS}"))?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let mut fleet = Fleet::default();
    let result = tokio::select! {
        result = run(&mut fleet, &logs, &args) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = sigterm.recv() => Ok(()),
    };
    if let Err(e) = &result {
        eprintln!("stack: {e:#}");
    }
    println!("\nstack: stopping everything it started…");
    fleet.stop().await;
    println!("stack: stopped; its keys are deleted; logs are in {LOGS}/");
    result
}

/// The stack's addresses.
struct Ports {
    sandbox: u16,
    api: u16,
    producer_metrics: u16,
    notifier_metrics: u16,
    prometheus: u16,
    smtp: u16,
}

async fn run(fleet: &mut Fleet, logs: &Path, args: &StackArgs) -> anyhow::Result<()> {
    let redis = fleet.redis(logs).await?;
    let bins = match &args.bin_dir {
        Some(dir) => Binaries::in_dir(dir),
        None => build_binaries().await?,
    };
    let [
        sandbox,
        api,
        producer_metrics,
        notifier_metrics,
        prometheus,
        smtp,
    ] = free_ports()?;
    let ports = Ports {
        sandbox,
        api,
        producer_metrics,
        notifier_metrics,
        prometheus,
        smtp,
    };
    let checker_ports: Vec<u16> = (0..args.checkers)
        .map(|_| free_ports::<1>().map(|[p]| p))
        .collect::<Result<_, _>>()?;
    let prefix = format!("paywatch-up-{}", std::process::id());
    fleet.cleanup = Some((redis.clone(), prefix.clone()));
    let sandbox_url = format!("http://127.0.0.1:{}", ports.sandbox);
    let api_url = format!("http://127.0.0.1:{}", ports.api);
    let token = args
        .api_token
        .clone()
        .unwrap_or_else(|| fresh_token("local"));
    let env = [
        ("REDIS_URL", redis.as_str()),
        ("PAYWATCH_PREFIX", prefix.as_str()),
    ];

    fleet.spawn(
        logs,
        "sandbox",
        &bins.get("paywatch-sandbox")?,
        &[
            "--listen",
            &format!("127.0.0.1:{}", ports.sandbox),
            "--webhook-target",
            &api_url,
        ],
        &env,
    )?;
    let mut producer_env = env.to_vec();
    producer_env.push(("PAYWATCH_API_TOKENS", token.as_str()));
    fleet.spawn(
        logs,
        "producer",
        &bins.get("paywatch-producer")?,
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", ports.api),
            "--metrics-listen",
            &format!("127.0.0.1:{}", ports.producer_metrics),
            "--handcash-app-secret",
            "sandbox-handcash-secret",
        ],
        &producer_env,
    )?;
    let worker = bins.get("paywatch-worker")?;
    for (i, port) in checker_ports.iter().enumerate() {
        let name = format!("local-checker-{i}");
        fleet.spawn_checker(logs, &worker, &name, &sandbox_url, *port, &env)?;
    }
    let notifier_metrics = format!("127.0.0.1:{}", ports.notifier_metrics);
    fleet.spawn_notifier(
        logs,
        &worker,
        ("local-notifier", &sandbox_url),
        ports.smtp,
        &env,
        &[
            "--email-from",
            "paywatch <payments@shop.example>",
            "--ops-interval",
            "30s",
            "--metrics-listen",
            &notifier_metrics,
        ],
    )?;
    // Email goes to an SMTP server in this process, kept for as long as the stack runs.
    let smtp_addr: SocketAddr = ([127, 0, 0, 1], ports.smtp).into();
    let _smtp = paywatch_sandbox::smtp::SmtpSink::start(Default::default(), smtp_addr)
        .await
        .with_context(|| format!("SMTP server on {smtp_addr}"))?;

    let mut metrics = vec![(
        "producer".to_owned(),
        format!("127.0.0.1:{}", ports.producer_metrics),
    )];
    metrics.extend(
        checker_ports
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("checker-{i}"), format!("127.0.0.1:{p}"))),
    );
    metrics.push((
        "notifier".to_owned(),
        format!("127.0.0.1:{}", ports.notifier_metrics),
    ));
    let prometheus_url = if args.no_prometheus {
        None
    } else {
        Some(start_prometheus(fleet, logs, &metrics, ports.prometheus)?)
    };

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    wait_ready(&http, &format!("{sandbox_url}/_admin/health")).await?;
    wait_ready(&http, &format!("{api_url}/readyz")).await?;
    for (_, addr) in &metrics {
        wait_ready(&http, &format!("http://{addr}/readyz")).await?;
    }
    if let Some(url) = &prometheus_url {
        wait_ready(&http, &format!("{url}/-/ready")).await?;
    }
    let seeded = if args.no_seed {
        Vec::new()
    } else {
        seed(&http, &sandbox_url, &api_url, &token).await?
    };

    print_urls(&Urls {
        api: &api_url,
        token: &token,
        sandbox: &sandbox_url,
        metrics: &metrics,
        prometheus: prometheus_url.as_deref(),
        redis: &redis,
        prefix: &prefix,
        producer_bin: &bins.get("paywatch-producer")?,
        seeded: &seeded,
    });

    // In the foreground until a signal (see `stack`), or until a process dies on its own.
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if let Some(name) = fleet.exited() {
            bail!("{name} exited on its own; see {LOGS}/{name}.log");
        }
    }
}

/// Starts Prometheus scraping every process of the stack, with the deploy rules.
fn start_prometheus(
    fleet: &mut Fleet,
    logs: &Path,
    metrics: &[(String, String)],
    port: u16,
) -> anyhow::Result<String> {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/rules.yml");
    let rules = rules
        .canonicalize()
        .with_context(|| format!("finding {}", rules.display()))?;
    let quoted = |names: &[&(String, String)]| {
        names
            .iter()
            .map(|(_, addr)| format!("\"{addr}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (producer, workers): (Vec<_>, Vec<_>) =
        metrics.iter().partition(|(name, _)| name == "producer");
    // deploy/prometheus/prometheus.yml's jobs and rules, with the local ports as static targets.
    let config = format!(
        "# Written by `paywatch-demo stack` for this run; deploy/prometheus/ has the real one.\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
         rule_files:\n  - \"{rules}\"\n\
         scrape_configs:\n\
         \x20 - job_name: paywatch-producer\n    static_configs:\n      - targets: [{producer}]\n\
         \x20 - job_name: paywatch-worker\n    static_configs:\n      - targets: [{workers}]\n",
        rules = rules.display(),
        producer = quoted(&producer),
        workers = quoted(&workers),
    );
    let dir = logs.join("prometheus");
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config)?;
    if std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!(
            "prometheus is not installed: run scripts/ensure-prometheus.sh (Debian's package, as \
             root), or pass --no-prometheus"
        );
    }
    fleet.spawn(
        logs,
        "prometheus",
        Path::new("prometheus"),
        &[
            &format!("--config.file={}", config_path.display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        &[],
    )?;
    Ok(format!("http://127.0.0.1:{port}"))
}

/// One example order: its id and what to expect of it.
struct Seeded {
    id: &'static str,
    note: &'static str,
}

/// A few orders to look at: paid soon, paid later, and one whose check the provider refuses
/// once (401), so it waits in the dead letters for the operator to retry it.
async fn seed(
    http: &reqwest::Client,
    sandbox: &str,
    api: &str,
    token: &str,
) -> anyhow::Result<Vec<Seeded>> {
    let orders = [
        (
            "up-paid",
            json!({"provider": "cashless", "timeline": [
                {"after_ms": 0, "status": "NOT_PAID"}, {"after_ms": 5000, "status": "FULLY_PAID"}]}),
            "paid after ~5 s; notifications by Telegram (sandbox) and email",
        ),
        (
            "up-slow",
            json!({"provider": "foxreload", "timeline": [
                {"after_ms": 0, "status": "active"}, {"after_ms": 40000, "status": "completed"}]}),
            "completed after ~40 s",
        ),
        (
            "up-refused",
            json!({"provider": "cashless", "timeline": [
                {"after_ms": 0, "status": "NOT_PAID"}, {"after_ms": 1000, "status": "FULLY_PAID"}],
                "faults": [{"kind": "status", "code": 401, "times": 1}]}),
            "dead letter (provider said 401 once): retry it on the board, then it is paid",
        ),
    ];
    let mut seeded = Vec::new();
    for (id, payment, note) in orders {
        let created: Value = http
            .post(format!("{sandbox}/_admin/payments"))
            .json(&payment)
            .send()
            .await?
            .error_for_status()
            .context("scripting a sandbox payment")?
            .json()
            .await?;
        let provider = payment["provider"].clone();
        let response = http
            .post(format!("{api}/v1/orders"))
            .bearer_auth(token)
            .json(&json!({
                "order_id": id, "provider": provider, "payment_id": created["id"],
                "notify": {"telegram_chat_id": 1001, "email": "buyer@example.com"},
                "metadata": {"example": true},
            }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!(
                "order {id} refused: {}",
                response.text().await.unwrap_or_default()
            );
        }
        seeded.push(Seeded { id, note });
    }
    Ok(seeded)
}

/// Everything worth printing.
struct Urls<'a> {
    api: &'a str,
    token: &'a str,
    sandbox: &'a str,
    metrics: &'a [(String, String)],
    prometheus: Option<&'a str>,
    redis: &'a str,
    prefix: &'a str,
    producer_bin: &'a Path,
    seeded: &'a [Seeded],
}

fn print_urls(u: &Urls<'_>) {
    let api = u.api;
    let token = u.token;
    println!("\npaywatch is up. Everything runs on this machine; logs are in {LOGS}/.\n");
    println!("  API              {api}   (token: {token})");
    println!("  board            {api}/board   (paste the token above)");
    println!("  OpenAPI          {api}/openapi.json");
    for (name, addr) in u.metrics {
        println!("  metrics          http://{addr}/metrics   ({name})");
    }
    match u.prometheus {
        Some(p) => println!("  Prometheus       {p}   (alerts: {p}/alerts)"),
        None => println!("  Prometheus       not started (--no-prometheus)"),
    }
    println!(
        "  sandbox admin    {}/_admin/stats   (also /_admin/payments, /_admin/telegram/messages)",
        u.sandbox
    );
    println!(
        "  Redis            {}   (keys under {}:)",
        u.redis, u.prefix
    );
    if !u.seeded.is_empty() {
        println!("\nExample orders:");
        for s in u.seeded {
            println!("  {:<11} {}", s.id, s.note);
        }
    }
    println!("\nTry, while it runs:");
    println!("  curl -s -H 'authorization: Bearer {token}' {api}/v1/orders/up-paid");
    println!("  curl -s -H 'authorization: Bearer {token}' {api}/v1/admin/queues");
    println!(
        "  REDIS_URL={} PAYWATCH_PREFIX={} {} admin stats",
        u.redis,
        u.prefix,
        u.producer_bin.display()
    );
    println!("  # a new order: script a payment at the sandbox, then hand its id to paywatch");
    println!(
        "  curl -s -XPOST {}/_admin/payments -H 'content-type: application/json' -d '{{\"provider\":\"cashless\",\"timeline\":[{{\"after_ms\":0,\"status\":\"NOT_PAID\"}},{{\"after_ms\":10000,\"status\":\"FULLY_PAID\"}}]}}'",
        u.sandbox
    );
    println!(
        "  curl -s -XPOST {api}/v1/orders -H 'authorization: Bearer {token}' -H 'content-type: application/json' -d '{{\"order_id\":\"my-1\",\"provider\":\"cashless\",\"payment_id\":\"<the id above>\"}}'"
    );
    println!("\nPress Ctrl-C to stop everything this started.");
}
