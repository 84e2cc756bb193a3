//! `paywatch-demo up`: the whole demo from one cargo command, no `just`, no shell script.
//!
//! It uses the Redis at `REDIS_URL` when one answers, or starts `redis-server` on a free port
//! (installing nothing); has cargo build the sandbox, producer and worker binaries and say where
//! it put them (so `CARGO_TARGET_DIR` is honoured); starts the sandbox, the producer API, two
//! checking workers and a notifier serving all three channels; runs the scenario with the shop's
//! webhook endpoint and the SMTP server in this process; and stops everything it started, also
//! on Ctrl-C.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::{Child, Command};

use super::{Notify, Receiver, run};

/// A demo-only signing key (the Standard Webhooks spec's example key).
const DEMO_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Demo-speed polling: 0.5 s first delay ×1.5 up to 2 s; HandCash gives up after 12 s.
const POLICIES: &str = concat!(
    r#"{"cashless":{"first_delay":"500ms","multiplier":1.5,"max_delay":"2s","fast_window":"30s","grace_interval":"2s","deadline":"45s","not_found_retries":3},"#,
    r#""handcash":{"first_delay":"500ms","multiplier":1.5,"max_delay":"2s","fast_window":"30s","grace_interval":"2s","deadline":"12s"},"#,
    r#""miraclecash":{"first_delay":"500ms","multiplier":1.5,"max_delay":"2s","fast_window":"30s","grace_interval":"2s","deadline":"45s","not_found_retries":3},"#,
    r#""foxreload":{"first_delay":"500ms","multiplier":1.5,"max_delay":"2s","fast_window":"30s","grace_interval":"2s","deadline":"45s","not_found_retries":3}}"#
);

/// Where the demo writes the processes' logs (relative to where it runs).
const LOGS: &str = ".paywatch/demo";

/// Runs the demo end to end; `timeout` bounds the wait for the orders to settle.
pub async fn up(timeout: Duration) -> anyhow::Result<()> {
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
    let env = [
        ("REDIS_URL", redis.as_str()),
        ("PAYWATCH_PREFIX", prefix.as_str()),
    ];
    // The demo's own API token, new each run: the API never runs without one.
    let api_token = format!(
        "demo-{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut producer_env = env.to_vec();
    producer_env.push(("PAYWATCH_API_TOKENS", api_token.as_str()));

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
        fleet.spawn(
            logs,
            &format!("checker-{name}"),
            &worker,
            &[
                "--name",
                &format!("demo-checker-{name}"),
                "--sandbox-url",
                &sandbox,
                "--policies",
                POLICIES,
                "--queues",
                "check-payment",
                "--metrics-listen",
                &format!("127.0.0.1:{port}"),
            ],
            &env,
        )?;
    }
    let mut notifier_env = env.to_vec();
    notifier_env.push(("PAYWATCH_WEBHOOK_SECRET", DEMO_SECRET));
    fleet.spawn(
        logs,
        "notifier",
        &worker,
        &[
            "--name",
            "demo-notifier",
            "--sandbox-url",
            &sandbox,
            "--queues",
            "notify-email,notify-telegram,notify-webhook,notify-ops",
            "--smtp-url",
            &format!("smtp://127.0.0.1:{smtp_port}"),
            "--email-from",
            "paywatch demo <payments@shop.example>",
            "--webhook-allow-hosts",
            "127.0.0.1",
            "--telegram-chat-interval",
            "10ms",
            "--ops-telegram-chat-id",
            "42",
            "--ops-interval",
            "5s",
        ],
        &notifier_env,
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
    run(&sandbox, &api, &api_token, Some(&metrics), timeout, notify).await
}

/// Everything the demo started, stopped in reverse order.
#[derive(Default)]
struct Fleet {
    children: Vec<(String, Child)>,
    /// The Redis and key prefix to clean up.
    cleanup: Option<(String, String)>,
}

impl Fleet {
    /// The Redis to use: `REDIS_URL` (default local port) when it answers, else a private one.
    async fn redis(&mut self, logs: &Path) -> anyhow::Result<String> {
        let wanted =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let url = reqwest::Url::parse(&wanted).context("REDIS_URL is not a URL")?;
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = url.port().unwrap_or(6379);
        if answers(&host, port) {
            return Ok(wanted);
        }
        let [own] = free_ports::<1>()?;
        let dir = logs.join("redis");
        std::fs::create_dir_all(&dir)?;
        println!(
            "demo: no Redis answers at {host}:{port}; starting redis-server on 127.0.0.1:{own}"
        );
        let child = Command::new("redis-server")
            .args(["--port", &own.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context(
                "no Redis answers at REDIS_URL and redis-server could not start: install it \
                 (Debian: apt-get install redis-server) or set REDIS_URL",
            )?;
        self.children.push(("redis-server".to_owned(), child));
        let started = Instant::now();
        while !answers("127.0.0.1", own) {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("redis-server on port {own} did not answer within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(format!("redis://127.0.0.1:{own}"))
    }

    /// Starts `bin` with `args`, its output in `logs/<name>.log`.
    fn spawn(
        &mut self,
        logs: &Path,
        name: &str,
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    /// Deletes the demo's keys, then stops the processes (Redis last).
    async fn stop(&mut self) {
        if let Some((url, prefix)) = self.cleanup.take() {
            let _ = delete_keys(&url, &prefix).await;
        }
        while let Some((_, mut child)) = self.children.pop() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

async fn delete_keys(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await?;
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
    }
    Ok(())
}

/// Whether something answers a Redis PING at host:port (a password-protected server counts).
fn answers(host: &str, port: u16) -> bool {
    let Some(addr) = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 16];
    let n = stream.read(&mut reply).unwrap_or(0);
    reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH")
}

/// N distinct free loopback ports (all listeners are held until every port is chosen).
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// Executables cargo built, by target name.
struct Binaries(HashMap<String, PathBuf>);

impl Binaries {
    fn get(&self, name: &str) -> anyhow::Result<PathBuf> {
        self.0
            .get(name)
            .cloned()
            .with_context(|| format!("cargo built no {name}"))
    }
}

/// Has cargo build the demo's binaries and reads their paths from its JSON messages.
async fn build_binaries() -> anyhow::Result<Binaries> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    println!("demo: building the sandbox, producer and worker (cargo build)");
    let output = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", "paywatch-sandbox", "-p", "paywatch-producer"])
        .args(["-p", "paywatch-worker", "--bins"])
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("running cargo build")?;
    if !output.status.success() {
        bail!("cargo build failed ({})", output.status);
    }
    let mut bins = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let (Some(name), Some(exe)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            bins.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    Ok(Binaries(bins))
}
