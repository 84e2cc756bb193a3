//! `paywatch-demo demo`: the whole demo from one cargo command, no `just`, no shell script.
//!
//! It uses the Redis at `REDIS_URL` when one answers, or starts `redis-server` on a free port
//! (installing nothing); has cargo build the sandbox, producer and worker binaries and say where
//! it put them (so `CARGO_TARGET_DIR` is honoured); starts the sandbox, the producer API, two
//! checking workers and a notifier serving all three channels; runs the scenario with the shop's
//! webhook endpoint and the SMTP server in this process; and stops everything it started, also
//! on Ctrl-C. `paywatch-demo stack` (`just up`) is the same fleet kept running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::fleet::{DEMO_SECRET, Fleet, build_binaries, free_ports, fresh_token};
use super::{Notify, Receiver, run};

/// Where the demo writes the processes' logs (relative to where it runs).
const LOGS: &str = ".paywatch/demo";

/// Runs the demo end to end; `timeout` bounds the wait for the orders to settle.
pub async fn demo_run(timeout: Duration) -> anyhow::Result<()> {
    let logs = PathBuf::from(LOGS);
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {LOGS}"))?;
    let mut fleet = Fleet::default();
    let result = tokio::select! {
        result = demo(&mut fleet, &logs, timeout) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    fleet.stop().await;
    println!("demo: stopped everything it started (logs in {LOGS}/)");
    result
}

async fn demo(fleet: &mut Fleet, logs: &Path, timeout: Duration) -> anyhow::Result<()> {
    let redis = fleet.redis(logs).await?;
    let bins = build_binaries().await?;
    let [
        sandbox_port,
        api_port,
        metrics_a,
        metrics_b,
        receiver_port,
        smtp_port,
    ] = free_ports()?;
    let prefix = format!("paywatch-demo-{}", std::process::id());
    fleet.cleanup = Some((redis.clone(), prefix.clone()));
    let sandbox = format!("http://127.0.0.1:{sandbox_port}");
    let api = format!("http://127.0.0.1:{api_port}");
    // The provider files every process reads (docs/providers.md): the sandbox imitates Paylink
    // from its file, the workers poll it, the producer verifies its webhooks.
    let providers = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/providers");
    let env = [
        ("REDIS_URL", redis.as_str()),
        ("PAYWATCH_PREFIX", prefix.as_str()),
        ("PAYWATCH_PROVIDERS_DIR", providers),
    ];
    // The demo's own API token, new each run: the API never runs without one.
    let api_token = fresh_token("demo");
    let mut producer_env = env.to_vec();
    producer_env.push(("PAYWATCH_API_TOKENS", api_token.as_str()));
    // The secret the sandbox signs Paylink's webhooks with (sandbox-<provider>-<credential>).
    producer_env.push(("PAYLINK_WEBHOOK_SECRET", "sandbox-paylink-webhook_secret"));

    fleet.spawn(
        logs,
        "sandbox",
        &bins.get("paywatch-sandbox")?,
        &[
            "--listen",
            &format!("127.0.0.1:{sandbox_port}"),
            "--webhook-target",
            &api,
        ],
        &env,
    )?;
    fleet.spawn(
        logs,
        "producer",
        &bins.get("paywatch-producer")?,
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{api_port}"),
            "--handcash-app-secret",
            "sandbox-handcash-secret",
        ],
        &producer_env,
    )?;
    let worker = bins.get("paywatch-worker")?;
    for (name, port) in [("a", metrics_a), ("b", metrics_b)] {
        let name = format!("demo-checker-{name}");
        fleet.spawn_checker(logs, &worker, &name, &sandbox, port, &env)?;
    }
    fleet.spawn_notifier(
        logs,
        &worker,
        ("demo-notifier", &sandbox),
        smtp_port,
        &env,
        &[
            "--email-from",
            "paywatch demo <payments@shop.example>",
            "--telegram-chat-interval",
            "10ms",
            "--ops-interval",
            "5s",
        ],
    )?;
    println!(
        "demo: sandbox {sandbox}, producer {api}, checkers with metrics on :{metrics_a} and :{metrics_b}, keys under {prefix}"
    );

    let smtp_addr: SocketAddr = ([127, 0, 0, 1], smtp_port).into();
    let notify = Notify {
        receiver: Some(Receiver::start(([127, 0, 0, 1], receiver_port).into(), DEMO_SECRET).await?),
        email: Some("buyer@example.com".to_owned()),
        smtp: Some(
            paywatch_sandbox::smtp::SmtpSink::start(Default::default(), smtp_addr)
                .await
                .with_context(|| format!("SMTP server on {smtp_addr}"))?,
        ),
    };
    let metrics = format!("http://127.0.0.1:{metrics_a}/metrics");
    run(
        &sandbox,
        &api,
        &api_token,
        Some(&metrics),
        timeout,
        notify,
        false,
    )
    .await
}
