//! `paywatch-demo`: the driver behind `just demo`.
//!
//! It scripts ~40 payments in a running paywatch-sandbox (every terminal status of every
//! provider, partial payments, rate limits, provider webhooks, a payment nobody settles and one
//! the provider never heard of), submits an order for each through the producer's HTTP API, shows
//! live progress, and ends with a summary table. `paywatch-demo demo` (the `demo` module, what
//! `just demo` runs) starts and stops the processes around it; `run` drives a fleet started some
//! other way. `paywatch-demo stack` (`just up`, the `stack` module) keeps the same kind of fleet
//! running in the foreground until Ctrl-C, with Prometheus, and prints every URL.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

mod demo;
mod fleet;
mod stack;

/// paywatch-demo's command line.
// An explicit about: without one clap shows the package's description, which is the sandbox's.
#[derive(Debug, Parser)]
#[command(
    about = "paywatch-demo: runs paywatch locally (the sandbox, a producer and workers) to show \
             it working: the scripted demo, the stack kept running, or the SMTP sink alone.",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Print N free loopback ports, one per line.
    Ports {
        #[arg(default_value_t = 1)]
        n: usize,
    },
    /// The whole demo (`just demo`): Redis if none answers, the sandbox, the producer, two
    /// checkers and a notifier (built by cargo), the scenario, a summary; then everything is
    /// stopped.
    Demo {
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 50)]
        timeout_s: u64,
    },
    /// The local stack in the foreground until Ctrl-C (`just up`): sandbox, producer, check
    /// workers, a notifier and Prometheus, every URL printed.
    Stack(stack::StackArgs),
    /// The sandbox's SMTP server alone, to try notify-email locally: accepts every message on
    /// --listen and prints each as a JSON line, until Ctrl-C.
    Smtp {
        /// Where it listens; point the notifier's SMTP_URL at smtp://ADDR.
        #[arg(long, default_value = "127.0.0.1:2525")]
        listen: std::net::SocketAddr,
    },
    /// Run the scenario against a running sandbox and producer.
    Run {
        /// The sandbox's base URL.
        #[arg(long)]
        sandbox: String,
        /// The producer API's base URL.
        #[arg(long)]
        api: String,
        /// A token the producer API accepts.
        #[arg(long, env = "PAYWATCH_API_TOKEN", hide_env_values = true)]
        api_token: String,
        /// A worker's Prometheus endpoint, shown at the end.
        #[arg(long)]
        metrics: Option<String>,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 50)]
        timeout_s: u64,
        /// Where to receive the shop's signed webhooks (verified with this secret).
        #[arg(long)]
        receiver: Option<std::net::SocketAddr>,
        /// The webhook signing secret the workers use.
        #[arg(long, env = "PAYWATCH_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
        /// Email address to notify (with --smtp).
        #[arg(long, requires = "smtp")]
        email: Option<String>,
        /// Where to run the local SMTP server the notifier delivers email to.
        #[arg(long, requires = "email")]
        smtp: Option<std::net::SocketAddr>,
    },
}

/// One scripted order: provider, timeline, faults, and what the demo expects it to show.
struct Scenario {
    provider: &'static str,
    timeline: Vec<(u64, &'static str, Value)>,
    faults: Vec<Value>,
    note: &'static str,
    webhook: bool,
}

fn s(provider: &'static str, steps: &[(u64, &'static str)], note: &'static str) -> Scenario {
    Scenario {
        provider,
        timeline: steps
            .iter()
            .map(|(at, st)| (*at, *st, Value::Null))
            .collect(),
        faults: Vec::new(),
        note,
        webhook: false,
    }
}

fn scenarios() -> Vec<Scenario> {
    let mut all = Vec::new();
    for i in 0..5u64 {
        all.push(s(
            "cashless",
            &[(0, "NOT_PAID"), (2_000 + 1_500 * i, "FULLY_PAID")],
            "paid",
        ));
    }
    for i in 0..3u64 {
        all.push(s(
            "cashless",
            &[
                (0, "NOT_PAID"),
                (2_500 + 500 * i, "PARTIALLY_PAID"),
                (6_000 + 1_000 * i, "FULLY_PAID"),
            ],
            "partial payment, then paid",
        ));
    }
    for i in 0..2u64 {
        let mut sc = s(
            "cashless",
            &[(0, "NOT_PAID"), (3_000 + 1_000 * i, "FULLY_PAID")],
            "429 Retry-After 2s",
        );
        sc.faults
            .push(json!({"kind": "status", "code": 429, "retry_after_s": 2, "times": 2}));
        all.push(sc);
    }
    for i in 0..3u64 {
        let mut sc = s(
            "handcash",
            &[(0, "pending"), (4_000 + 2_000 * i, "paid")],
            "paid, webhook fast path",
        );
        sc.webhook = true;
        all.push(sc);
    }
    all.push(s(
        "handcash",
        &[(0, "pending"), (5_000, "paid")],
        "paid (polling only)",
    ));
    for i in 0..2u64 {
        all.push(s(
            "handcash",
            &[(0, "pending"), (3_000 + 2_000 * i, "expired")],
            "expired",
        ));
    }
    for _ in 0..2 {
        all.push(s(
            "handcash",
            &[(0, "pending")],
            "never settles: unresolved at the deadline",
        ));
    }
    for (status, n, note) in [
        ("successful", 4u64, "paid"),
        ("unsuccessful", 3, "failed"),
        ("expired", 2, "expired"),
        ("cancelled", 3, "cancelled"),
    ] {
        for i in 0..n {
            all.push(s(
                "miraclecash",
                &[(0, "pending"), (1_500 + 1_700 * i, status)],
                note,
            ));
        }
    }
    if let Some(sc) = all.iter_mut().rev().find(|sc| sc.provider == "miraclecash") {
        sc.faults
            .push(json!({"kind": "status", "code": 500, "times": 2}));
        sc.note = "cancelled, after two 500s";
    }
    for i in 0..4u64 {
        all.push(s(
            "foxreload",
            &[
                (0, "active"),
                (1_000 + 500 * i, "paid"),
                (2_500 + 800 * i, "processing"),
                (4_000 + 1_000 * i, "completed"),
            ],
            "completed, codes delivered",
        ));
    }
    for (reason, status, note) in [
        (
            "payment_expiration",
            "cancelled",
            "expired (payment_expiration)",
        ),
        ("out_of_stock", "cancelled", "cancelled"),
    ] {
        for i in 0..2u64 {
            let mut sc = s("foxreload", &[(0, "active")], note);
            sc.timeline
                .push((3_000 + 1_500 * i, status, json!({"cancelReason": reason})));
            all.push(sc);
        }
    }
    for i in 0..2u64 {
        all.push(s(
            "foxreload",
            &[(0, "active"), (2_000 + 2_000 * i, "failed")],
            "failed",
        ));
    }
    let mut limited = s(
        "foxreload",
        &[(0, "active"), (5_000, "completed")],
        "completed after a 429",
    );
    limited
        .faults
        .push(json!({"kind": "status", "code": 429, "retry_after_s": 3, "times": 1}));
    all.push(limited);
    all
}

struct Order {
    id: String,
    provider: &'static str,
    note: &'static str,
    view: Value,
}

fn is_final(status: &str) -> bool {
    matches!(
        status,
        "paid" | "failed" | "expired" | "cancelled" | "unresolved"
    )
}

pub(crate) async fn wait_ready(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "{url} did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where notifications go and how to count them.
struct Notify {
    receiver: Option<Receiver>,
    email: Option<String>,
    smtp: Option<paywatch_sandbox::smtp::SmtpSink>,
}

/// Deliveries a receiver saw: all, signature-verified, distinct webhook ids.
type Seen = (usize, usize, std::collections::HashSet<String>);

/// The shop's webhook endpoint: verifies every delivery with the `standardwebhooks` crate (an
/// implementation independent of paywatch's) and counts distinct webhook ids.
#[derive(Clone)]
struct Receiver {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
}

impl Receiver {
    async fn start(addr: std::net::SocketAddr, secret: &str) -> anyhow::Result<Self> {
        let verifier = std::sync::Arc::new(
            standardwebhooks::Webhook::new(secret)
                .map_err(|e| anyhow::anyhow!("webhook secret: {e}"))?,
        );
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/shop/webhooks",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (verifier, log) = (verifier.clone(), log.clone());
                    async move {
                        let ok = verifier.verify(&body, &headers).is_ok();
                        let id = headers
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let mut seen = log.lock().unwrap_or_else(|e| e.into_inner());
                        seen.0 += 1;
                        seen.1 += usize::from(ok);
                        seen.2.insert(id);
                        if ok {
                            axum::http::StatusCode::NO_CONTENT
                        } else {
                            axum::http::StatusCode::UNAUTHORIZED
                        }
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("http://{addr}/shop/webhooks"),
            seen,
        })
    }

    fn counts(&self) -> (usize, usize, usize) {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        (seen.0, seen.1, seen.2.len())
    }
}

async fn run(
    sandbox: &str,
    api: &str,
    api_token: &str,
    metrics: Option<&str>,
    timeout: Duration,
    notify: Notify,
    fleet_stays: bool,
) -> anyhow::Result<()> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {api_token}"))
        .context("PAYWATCH_API_TOKEN: not a valid header value")?;
    bearer.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .default_headers(headers)
        .build()?;
    wait_ready(&http, &format!("{sandbox}/_admin/health")).await?;
    wait_ready(&http, &format!("{api}/readyz")).await?;
    let run_id = std::process::id();
    let mut orders = Vec::new();
    for (i, sc) in scenarios().into_iter().enumerate() {
        let timeline: Vec<Value> = sc
            .timeline
            .iter()
            .map(|(at, st, fields)| {
                let mut step = json!({"after_ms": at, "status": st});
                if !fields.is_null() {
                    step["fields"] = fields.clone();
                }
                step
            })
            .collect();
        let created: Value = http
            .post(format!("{sandbox}/_admin/payments"))
            .json(&json!({"provider": sc.provider, "timeline": timeline, "faults": sc.faults, "webhook": sc.webhook}))
            .send()
            .await?
            .error_for_status()
            .context("creating a sandbox payment")?
            .json()
            .await?;
        let payment_id = created["id"].as_str().unwrap_or_default().to_string();
        orders.push((
            format!("demo-{run_id}-{i:02}"),
            sc.provider,
            payment_id,
            sc.note,
        ));
    }
    // Paylink exists only as a file (deploy/providers/paylink.toml): when the sandbox serves it,
    // one of its payments is paid with a voucher, its signed webhook waking the check.
    let paylink = http
        .post(format!("{sandbox}/_admin/declared/payments"))
        .json(&json!({"provider": "paylink", "timeline": [
            {"after_ms": 0, "status": "awaiting_payment", "fields": {"charge": {"amount": 1500}}},
            {"after_ms": 2500, "status": "succeeded", "fields": {"charge": {"amount": 1500,
                "amount_received": 1500, "receipt_no": "R-1042", "vouchers": ["PL-VOUCHER-1"]}}}]}))
        .send()
        .await;
    if let Ok(created) = paylink
        && created.status().as_u16() == 201
        && let Ok(created) = created.json::<Value>().await
        && let Some(id) = created["id"].as_str()
    {
        orders.push((
            format!("demo-{run_id}-{i:02}", i = orders.len()),
            "paylink",
            id.to_owned(),
            "paylink, a provider declared in a file: paid, webhook-woken",
        ));
    }
    orders.push((
        format!("demo-{run_id}-{:02}", orders.len()),
        "miraclecash",
        "00000000-0000-0000-0000-00000000dead".into(),
        "unknown payment: dead-lettered",
    ));

    let started = Instant::now();
    let mut tracked = Vec::new();
    for (id, provider, payment_id, note) in orders {
        let body = json!({
            "order_id": id, "provider": provider, "payment_id": payment_id,
            "notify": {
                "telegram_chat_id": 1001,
                "webhook_url": notify.receiver.as_ref().map(|r| r.url.clone()),
                "email": notify.email,
            },
            "metadata": {"demo": true},
        });
        let r = http
            .post(format!("{api}/v1/orders"))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            r.status().as_u16() == 202,
            "order {id} refused: {}",
            r.text().await.unwrap_or_default()
        );
        tracked.push(Order {
            id,
            provider,
            note,
            view: Value::Null,
        });
    }

    let tty = std::io::stdout().is_terminal();
    let mut last_line = Instant::now() - Duration::from_secs(10);
    loop {
        for order in tracked.iter_mut() {
            if order.view["status"].as_str().is_some_and(is_final) {
                continue;
            }
            if let Ok(r) = http
                .get(format!("{api}/v1/orders/{}", order.id))
                .send()
                .await
                && let Ok(v) = r.json::<Value>().await
            {
                order.view = v;
            }
        }
        let dead = tracked
            .iter()
            .filter(|o| {
                o.view["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("not found"))
                    && o.view["next_check_at"].is_null()
                    && !o.view["status"].as_str().is_some_and(is_final)
            })
            .count();
        let settled = tracked
            .iter()
            .filter(|o| o.view["status"].as_str().is_some_and(is_final))
            .count()
            + dead;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for o in &tracked {
            *counts
                .entry(o.view["status"].as_str().unwrap_or("submitted").to_string())
                .or_default() += 1;
        }
        let bar_len = 30;
        let filled = settled * bar_len / tracked.len();
        let line = format!(
            "[{}{}] {settled}/{} settled after {:>4.1}s   {}",
            "#".repeat(filled),
            ".".repeat(bar_len - filled),
            tracked.len(),
            started.elapsed().as_secs_f64(),
            counts
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("  ")
        );
        if tty {
            print!("\r\x1b[2K{line}");
            std::io::stdout().flush()?;
        } else if last_line.elapsed() >= Duration::from_secs(3) {
            println!("{line}");
            last_line = Instant::now();
        }
        if settled == tracked.len() || started.elapsed() > timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if tty {
        println!();
    }

    println!(
        "\n{:<18} {:<12} {:<11} {:>6} {:>10}  scenario",
        "order", "provider", "status", "checks", "detected"
    );
    println!("{}", "-".repeat(100));
    for o in &tracked {
        let status = o.view["status"].as_str().unwrap_or("?");
        let detected = match (
            o.view["created_at"].as_str(),
            o.view["terminal_at"].as_str(),
        ) {
            (Some(c), Some(t)) => match (
                chrono::DateTime::parse_from_rfc3339(c),
                chrono::DateTime::parse_from_rfc3339(t),
            ) {
                (Ok(c), Ok(t)) => format!("{:.1}s", (t - c).num_milliseconds() as f64 / 1000.0),
                _ => "-".into(),
            },
            _ => "-".into(),
        };
        let status = if !is_final(status)
            && o.view["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("not found"))
        {
            "dead-letter"
        } else {
            status
        };
        println!(
            "{:<18} {:<12} {:<11} {:>6} {:>10}  {}",
            o.id,
            o.provider,
            status,
            o.view["checks"].as_u64().unwrap_or(0),
            detected,
            o.note
        );
    }
    // Let the notifiers drain what the last settled orders enqueued.
    let expected = tracked
        .iter()
        .filter(|o| {
            matches!(
                o.view["status"].as_str(),
                Some("paid" | "failed" | "expired" | "cancelled")
            )
        })
        .count();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut telegram = 0;
    let mut ops = 0;
    while Instant::now() < deadline {
        let messages: Value = http
            .get(format!("{sandbox}/_admin/telegram/messages"))
            .send()
            .await?
            .json()
            .await
            .unwrap_or(Value::Null);
        let to = |chat: i64| {
            messages.as_array().map_or(0, |m| {
                m.iter().filter(|m| m["chat_id"] == json!(chat)).count()
            })
        };
        telegram = to(1001);
        ops = to(42);
        let hooks = notify.receiver.as_ref().map_or(expected, |r| r.counts().2);
        let mails = notify
            .smtp
            .as_ref()
            .map_or(expected, |smtp| smtp.messages().len());
        if telegram >= expected && hooks >= expected && mails >= expected && ops >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "\n{} orders in {:.1}s; {expected} got a final answer from their provider and were announced:",
        tracked.len(),
        started.elapsed().as_secs_f64()
    );
    println!("  Telegram (the sandbox's Bot API): {telegram} messages");
    println!(
        "  Ops digests (unresolved orders, dead letters) to the ops Telegram chat: {ops} message(s)"
    );
    if let Some(r) = &notify.receiver {
        let (got, verified, ids) = r.counts();
        println!(
            "  Signed webhooks: {got} received, {verified} signature-verified, {ids} distinct webhook ids"
        );
    }
    if let Some(smtp) = &notify.smtp {
        let mails = smtp.messages().len();
        println!("  Email (local SMTP server): {mails} messages");
    }
    if fleet_stays {
        println!("\nWhere to look next (the fleet is still running):");
        println!(
            "  curl -s -H \"authorization: Bearer $PAYWATCH_API_TOKEN\" {api}/v1/orders/{}   # one order's status and history",
            tracked[0].id
        );
        println!("  curl -s {sandbox}/_admin/stats   # what the fake providers were asked");
        if let Some(m) = metrics {
            println!("  curl -s {m} | grep paywatch_   # the worker's Prometheus metrics");
        }
    } else {
        println!("\nThe demo stops everything it started. To keep a stack running and look around");
        println!("(API, operator board, metrics, Prometheus, example orders): `just up`.");
    }
    println!("  README.md, docs/ for the API, the queue design and the guarantees.");
    Ok(())
}

/// `paywatch-demo smtp`: the SMTP sink in the foreground, each accepted message printed.
async fn smtp(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let sink = paywatch_sandbox::smtp::SmtpSink::start(Default::default(), listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {listen}"))?;
    eprintln!(
        "SMTP server on {}: run the notifier with SMTP_URL={} (Ctrl-C stops it)",
        sink.addr(),
        sink.url()
    );
    let mut shown = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    // One listener for the whole run, so a Ctrl-C between two ticks is not missed.
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tick.tick() => {}
        }
        let messages = sink.messages();
        for mail in messages.iter().skip(shown) {
            println!("{}", serde_json::to_string(mail)?);
        }
        std::io::stdout().flush()?;
        shown = messages.len();
    }
}

fn main() -> anyhow::Result<()> {
    match paywatch_core::cli::parse::<Cli>().command {
        Command::Ports { n } => {
            // Hold every listener until all are chosen so the ports differ.
            let listeners: Vec<TcpListener> = (0..n)
                .map(|_| TcpListener::bind("127.0.0.1:0"))
                .collect::<Result<_, _>>()?;
            for l in &listeners {
                println!("{}", l.local_addr()?.port());
            }
            Ok(())
        }
        Command::Demo { timeout_s } => {
            tokio::runtime::Runtime::new()?.block_on(demo::demo_run(Duration::from_secs(timeout_s)))
        }
        Command::Stack(args) => tokio::runtime::Runtime::new()?.block_on(stack::stack(args)),
        Command::Smtp { listen } => tokio::runtime::Runtime::new()?.block_on(smtp(listen)),
        Command::Run {
            sandbox,
            api,
            api_token,
            metrics,
            timeout_s,
            receiver,
            webhook_secret,
            email,
            smtp,
        } => tokio::runtime::Runtime::new()?.block_on(async move {
            let receiver = match (receiver, webhook_secret) {
                (Some(addr), Some(secret)) => Some(Receiver::start(addr, &secret).await?),
                _ => None,
            };
            let smtp = match smtp {
                Some(addr) => Some(
                    paywatch_sandbox::smtp::SmtpSink::start(Default::default(), addr)
                        .await
                        .with_context(|| format!("SMTP server on {addr}"))?,
                ),
                None => None,
            };
            let notify = Notify {
                receiver,
                email,
                smtp,
            };
            let timeout = Duration::from_secs(timeout_s);
            run(
                &sandbox,
                &api,
                &api_token,
                metrics.as_deref(),
                timeout,
                notify,
                true,
            )
            .await
        }),
    }
}
