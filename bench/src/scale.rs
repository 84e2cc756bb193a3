//! Scale: a million pending orders on one Redis, and a spike of checks all due in one second.
//!
//! On a private `redis-server` with `slowlog-log-slower-than 10000` (10 ms):
//! 1. N orders (the README's example order) go in through `FCALL paywatch_submit`, pipelined;
//!    the submit rate and Redis bytes per pending order (`used_memory` delta) are recorded.
//! 2. The first S orders' checks are moved into one second a few seconds ahead, spread evenly
//!    over it, the others an hour ahead (a submitted order's first check is due at once, so the
//!    due times are rewritten in the queue's `due` set; nothing else is touched). Their bills pay
//!    on the first check.
//! 3. W worker processes start; every spike order must reach its final record. Lateness is
//!    `final_at` (the provider's answer in hand) minus the due time.
//! 4. `SLOWLOG GET` lists every command over 10 ms during all of it.

use std::time::{Duration, Instant};

use anyhow::Context;
use paywatch_core::store::OrderStore;
use serde::Serialize;

use crate::affinity;
use crate::e2e::{
    connect, example_order, final_count, final_records, fixed_policy, script_bills, start_sandbox,
    submit_pipelined, wait_count, worker_args,
};
use crate::fleet::Fleet;
use crate::servers::RedisProcess;

/// What the scale benchmark does.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleOpts {
    /// Pending orders.
    #[arg(long, default_value_t = 1_000_000)]
    pub orders: usize,
    /// Checks due in the same second.
    #[arg(long, default_value_t = 100_000)]
    pub spike: usize,
    /// Worker processes serving the spike.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Jobs in flight per worker process.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Orders per pipeline.
    #[arg(long, default_value_t = 1000)]
    pub pipeline: usize,
    /// Pipelines in flight.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
}

/// One entry of `SLOWLOG GET`.
#[derive(Debug, Clone, Serialize)]
pub struct SlowEntry {
    /// How long it ran, µs.
    pub micros: u64,
    /// The command and its first arguments.
    pub command: String,
    /// The mean time of every call of the same command over the run, µs (`INFO commandstats`):
    /// what a call of it usually costs, against which a long entry reads as a slow call or as
    /// a Redis process that was not running.
    pub command_mean_micros: Option<f64>,
}

/// What the scale run found.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleResult {
    /// Orders submitted.
    pub orders: usize,
    /// Orders per second through the submit function.
    pub submit_per_sec: f64,
    /// Redis bytes per pending order.
    pub bytes_per_order: f64,
    /// Redis `used_memory` with every order pending, MB.
    pub used_memory_mb: f64,
    /// Spike checks.
    pub spike: usize,
    /// Spike checks that reached their final record.
    pub spike_done: usize,
    /// First due → last final, seconds.
    pub spike_seconds: f64,
    /// Lateness of each spike check, ms (sorted).
    pub lateness_ms: Vec<i64>,
    /// Commands over 10 ms.
    pub slowlog: Vec<SlowEntry>,
    /// Times the kernel took the CPU from Redis while it could run (its involuntary context
    /// switches over submit and spike): each is a pause in whatever command it was running.
    pub redis_preempted: u64,
    /// The core Redis had to itself (the workers, the sandbox and the driver ran on the
    /// others), or `None` on a one-core machine.
    pub redis_own_core: Option<String>,
    /// Whether Redis ran at the highest CPU priority (nice -20; only root may set it).
    pub redis_prioritised: bool,
}

/// Runs the scale benchmark.
pub async fn run(fleet: &Fleet, o: &ScaleOpts) -> anyhow::Result<ScaleResult> {
    anyhow::ensure!(o.spike <= o.orders, "--spike must not exceed --orders");
    let redis = RedisProcess::start(&[
        "--slowlog-log-slower-than",
        "10000",
        "--slowlog-max-len",
        "1024",
    ])?;
    // Redis on a core of its own, when the machine has two or more (see `affinity`).
    let split = affinity::Split::here();
    let (_pinned, prioritised) = match &split {
        Some(split) => {
            let (pinned, prioritised) = pin_split(split, redis.pid())?;
            (Some(pinned), prioritised)
        }
        None => (None, false),
    };
    let url = redis.url();
    let prefix = "pwscale";
    let conn = connect(&url).await?;
    let store = OrderStore::new(conn.clone(), prefix, 1);
    store.prepare().await?;
    let mut plain = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_secs(60))),
        )
        .await?;
    let used = |mut c: redis::aio::MultiplexedConnection| async move {
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .context("no used_memory")
    };
    // The shard's own keys exist before measuring, so their fixed cost is not charged to orders.
    submit_pipelined(
        &store,
        &conn,
        &[("warm".into(), example_order("warm", "warm"))],
        1,
        1,
    )
    .await?;
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut plain)
        .await?;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut plain)
        .await?;
    let preempted_before = involuntary_switches(redis.pid());
    let before = used(plain.clone()).await?;

    let id = |i: usize| format!("sc-{i}");
    let started = Instant::now();
    let step = o.pipeline * o.parallel * 4;
    let mut i = 0;
    while i < o.orders {
        let end = (i + step).min(o.orders);
        let bodies: Vec<(String, String)> = (i..end)
            .map(|n| (id(n), example_order(&id(n), &id(n))))
            .collect();
        submit_pipelined(&store, &conn, &bodies, o.pipeline, o.parallel).await?;
        i = end;
    }
    let submit_secs = started.elapsed().as_secs_f64();
    let after = used(plain.clone()).await?;
    eprintln!(
        "scale: {} orders in {submit_secs:.1} s, {:.0} B each",
        o.orders,
        (after - before) as f64 / o.orders as f64
    );

    // The spike: bills that pay on their first check, due times moved.
    let sandbox = start_sandbox().await?;
    let spike_ids: Vec<String> = (0..o.spike).map(id).collect();
    script_bills(&sandbox, &spike_ids, 0)?;
    let due_key = paywatch_queue::Keys::new(prefix, &paywatch_core::store::check_queue(0)).due;
    // The orders outside the spike go an hour out first: they are most of the writes, and the
    // spike's second is only chosen after them, so a slow machine cannot run out of lead time.
    let hour_out = redis_ms(&mut plain).await? + 3_600_000;
    move_due(
        &mut plain,
        &due_key,
        (o.spike..o.orders).map(|k| (hour_out, id(k))),
        o.pipeline,
    )
    .await?;
    let spike_at = (redis_ms(&mut plain).await? / 1000 + 4) * 1000;
    let due_of = |n: usize| -> i64 { spike_at + (n as i64 * 1000) / o.spike.max(1) as i64 };
    move_due(
        &mut plain,
        &due_key,
        (0..o.spike).map(|k| (due_of(k), id(k))),
        o.pipeline,
    )
    .await?;
    anyhow::ensure!(
        redis_ms(&mut plain).await? < spike_at - 1000,
        "setting up the spike took too long: it would start before the workers"
    );

    let args = worker_args(
        &url,
        prefix,
        &sandbox.base_url(),
        o.concurrency,
        1,
        &fixed_policy(600_000),
        None,
    );
    let workers: Vec<_> = (0..o.workers)
        .map(|_| fleet.spawn("paywatch-worker", &args))
        .collect::<anyhow::Result<_>>()?;
    if let Some(split) = &split {
        for worker in &workers {
            affinity::pin(worker.pid(), &split.rest)?;
        }
    }
    // The warm-up order was due at once and is checked too (its bill is unknown: not final).
    let timeout = Duration::from_secs(600);
    let waited = wait_count("spike checks", o.spike, timeout, || {
        final_count(&store, &conn)
    })
    .await;
    drop(workers);
    waited?;
    let records = final_records(&store, &conn).await?;
    let mut lateness = Vec::with_capacity(o.spike);
    let mut last = 0;
    for (order, record) in &records {
        let Some(n) = order
            .strip_prefix("sc-")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let Some(final_at) = record.state.as_ref().and_then(|s| s.final_at) else {
            continue;
        };
        let at = final_at.timestamp_millis();
        last = last.max(at);
        lateness.push(at - due_of(n));
    }
    lateness.sort_unstable();
    let slow: Vec<Vec<redis::Value>> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1024)
        .query_async(&mut plain)
        .await?;
    let preempted = involuntary_switches(redis.pid()).saturating_sub(preempted_before);
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut plain)
        .await?;
    let slowlog = slow
        .iter()
        .filter_map(|entry| {
            let micros: u64 = redis::from_redis_value_ref(entry.get(2)?).ok()?;
            let args: Vec<String> = redis::from_redis_value_ref(entry.get(3)?).ok()?;
            Some(SlowEntry {
                micros,
                command_mean_micros: args.first().and_then(|c| mean_micros(&stats, c)),
                command: args.iter().take(3).cloned().collect::<Vec<_>>().join(" "),
            })
        })
        .collect();
    Ok(ScaleResult {
        orders: o.orders,
        submit_per_sec: o.orders as f64 / submit_secs,
        bytes_per_order: (after - before) as f64 / o.orders as f64,
        used_memory_mb: after as f64 / 1e6,
        spike: o.spike,
        spike_done: lateness.len(),
        spike_seconds: (last - spike_at).max(0) as f64 / 1000.0,
        lateness_ms: lateness,
        slowlog,
        redis_preempted: preempted,
        redis_own_core: split.map(|s| s.redis),
        redis_prioritised: prioritised,
    })
}

/// Pins Redis to its core and this process (the driver and the sandbox) to the others.
/// Also raises Redis's priority; says whether that worked.
fn pin_split(split: &affinity::Split, redis: u32) -> anyhow::Result<(affinity::SelfPinned, bool)> {
    affinity::pin(redis, &split.redis)?;
    let prioritised = affinity::prioritise(redis);
    if !prioritised {
        eprintln!(
            "scale: could not raise Redis's priority (needs root); SLOWLOG may count preemptions"
        );
    }
    Ok((affinity::SelfPinned::new(split)?, prioritised))
}

/// The `nonvoluntary_ctxt_switches` of process `pid` so far (0 when unreadable).
fn involuntary_switches(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `usec_per_call` of `command` in an `INFO commandstats` answer.
fn mean_micros(stats: &str, command: &str) -> Option<f64> {
    let prefix = format!("cmdstat_{}:", command.to_ascii_lowercase());
    let line = stats
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))?;
    line.split(',')
        .find_map(|field| field.strip_prefix("usec_per_call="))
        .and_then(|v| v.trim().parse().ok())
}

/// Redis's clock, Unix ms: due times are compared with it, not with this process's clock.
async fn redis_ms(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<i64> {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(secs * 1000 + micros / 1000)
}

/// Moves existing orders' next checks (`ZADD XX`), `chunk` orders per call.
async fn move_due(
    conn: &mut redis::aio::MultiplexedConnection,
    due_key: &str,
    due: impl Iterator<Item = (i64, String)>,
    chunk: usize,
) -> anyhow::Result<()> {
    let due: Vec<(i64, String)> = due.collect();
    for part in due.chunks(chunk.max(1)) {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(due_key).arg("XX");
        for (at, order) in part {
            zadd.arg(*at).arg(order);
        }
        let _: i64 = zadd.query_async(conn).await?;
    }
    Ok(())
}
