//! Idle cost: Redis commands per second that one worker process with nothing to do sends, from
//! the `INFO commandstats` delta of a private `redis-server` nothing else talks to.
//!
//! Measured for a check-payment worker (the default `paywatch-worker`), a notifier serving the
//! three notification queues, and a BullMQ `Worker` at its defaults.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use redis::AsyncCommands;
use serde::Serialize;

use crate::fleet::Fleet;
use crate::servers::RedisProcess;

/// What the idle benchmark does.
#[derive(Debug, Clone, clap::Args)]
pub struct IdleOpts {
    /// Seconds measured.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Seconds the worker runs before the measurement starts.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
}

/// One idle worker's Redis traffic.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    /// What ran.
    pub worker: String,
    /// Seconds measured.
    pub seconds: f64,
    /// Round trips per second: commands the worker sent (a script counts once, as in the
    /// queue's own idle test).
    pub per_sec: f64,
    /// Every command per second, those scripts ran inside Redis included.
    pub all_per_sec: f64,
    /// Calls per command over the measurement (script internals included).
    pub calls: BTreeMap<String, u64>,
}

/// Whether a command is one a client sends itself (the rest run inside scripts here).
fn round_trip(command: &str) -> bool {
    matches!(
        command,
        "evalsha"
            | "eval"
            | "fcall"
            | "fcall_ro"
            | "blpop"
            | "bzpopmin"
            | "brpoplpush"
            | "blmove"
            | "ping"
            | "hello"
            | "client|setinfo"
            | "select"
    )
}

/// Calls per command since the last `CONFIG RESETSTAT`, without the measurement's own.
async fn command_calls(
    conn: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let mut calls = BTreeMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        if name == "info" || name.starts_with("config") {
            continue;
        }
        let n = rest
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        calls.insert(name.to_string(), n);
    }
    Ok(calls)
}

/// Resets the counters, waits `seconds`, reads them.
async fn measure(url: &str, worker: &str, o: &IdleOpts) -> anyhow::Result<IdleResult> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    tokio::time::sleep(Duration::from_secs(o.warmup)).await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await?;
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    let calls = command_calls(&mut conn).await?;
    let total: u64 = calls.values().sum();
    let sent: u64 = calls
        .iter()
        .filter(|(c, _)| round_trip(c))
        .map(|(_, n)| n)
        .sum();
    Ok(IdleResult {
        worker: worker.to_string(),
        seconds: o.seconds as f64,
        per_sec: sent as f64 / o.seconds as f64,
        all_per_sec: total as f64 / o.seconds as f64,
        calls,
    })
}

/// A paywatch worker process started with `args` (after the Redis and prefix ones).
async fn paywatch(
    fleet: &Fleet,
    label: &str,
    extra: &[&str],
    o: &IdleOpts,
) -> anyhow::Result<IdleResult> {
    let redis = RedisProcess::start(&[])?;
    let url = redis.url();
    let mut args: Vec<String> = ["--redis-url", &url, "--prefix", "pwidle"]
        .map(String::from)
        .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let _worker = fleet.spawn("paywatch-worker", &args)?;
    measure(&url, label, o).await
}

/// Every idle case: paywatch's check-payment worker, its notifier, BullMQ's worker.
pub async fn run(
    fleet: &Fleet,
    bullmq_dir: &Path,
    o: &IdleOpts,
) -> anyhow::Result<Vec<IdleResult>> {
    let mut out = Vec::new();
    out.push(
        paywatch(
            fleet,
            "paywatch-worker (check-payment)",
            &["--sandbox-url", "http://127.0.0.1:9"],
            o,
        )
        .await?,
    );
    out.push(
        paywatch(
            fleet,
            "paywatch-worker (notify-email, notify-telegram, notify-webhook)",
            &[
                "--sandbox-url",
                "http://127.0.0.1:9",
                "--queues",
                "notify-email,notify-telegram,notify-webhook",
                "--smtp-url",
                "smtp://127.0.0.1:9",
                "--email-from",
                "shop@example.com",
                "--webhook-secret",
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            ],
            o,
        )
        .await?,
    );
    out.push(bullmq(bullmq_dir, o).await?);
    Ok(out)
}

async fn bullmq(bullmq_dir: &Path, o: &IdleOpts) -> anyhow::Result<IdleResult> {
    let redis = RedisProcess::start(&[])?;
    let url = redis.url();
    let seconds = o.warmup + o.seconds + 10;
    let mut child = Command::new("node")
        .current_dir(bullmq_dir)
        .args([
            "bench.mjs",
            "idle-worker",
            "--seconds",
            &seconds.to_string(),
        ])
        .args(["--redis", &url, "--prefix", "bqidle"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting node bench.mjs idle-worker")?;
    let mut conn = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let ready = crate::e2e::wait_count(
        "BullMQ idle worker ready",
        1,
        Duration::from_secs(30),
        || {
            let mut conn = conn.clone();
            async move {
                Ok(conn
                    .get::<_, Option<usize>>("bqidle:idle:ready")
                    .await?
                    .unwrap_or(0))
            }
        },
    )
    .await;
    let result = match ready {
        Ok(()) => measure(&url, "BullMQ 6 Worker (defaults)", o).await,
        Err(e) => Err(e),
    };
    let _ = child.kill();
    let _ = child.wait();
    let _: Result<(), _> = redis::cmd("PING").query_async(&mut conn).await;
    result
}
