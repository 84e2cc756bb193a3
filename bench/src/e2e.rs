//! End to end: check-payment throughput of paywatch's fleet against a BullMQ worker doing the
//! same job, on the same Redis, against the same sandbox.
//!
//! Each of N orders (the README's example order: three notify targets) watches a Cashless bill
//! in the sandbox that answers `NOT_PAID` to its first K status requests and `FULLY_PAID` to the
//! next one (a counted timeline step, so every order costs exactly K+1 provider calls on either
//! side, however loaded the poller). Between two checks an order waits the same fixed delay on
//! both sides, with no jitter.
//!
//! - paywatch: W `paywatch-worker` processes serving `check-payment` with concurrency C each; the
//!   orders go in through the submit function (`FCALL paywatch_submit`, pipelined 1000 at a time).
//! - BullMQ: W Node processes, each a `Worker` with concurrency C whose processor GETs the same
//!   sandbox URL over a keep-alive agent, re-delays the job with `moveToDelayed` while pending,
//!   and on the final answer writes a final record and adds the three notification jobs; the
//!   orders go in with `addBulk`, 1000 at a time.
//!
//! The clock runs from just before the first enqueue to the last final answer in hand (paywatch's
//! `final_at`, the BullMQ side's `final_at`: both taken right after the provider's answer, by the
//! same machine's clock).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use paywatch_core::store::{OrderStore, StoredOrder};
use paywatch_queue::{RedisConn, RedisEndpoint};
use paywatch_sandbox::{NewPayment, Provider, Sandbox, SandboxConfig, SandboxHandle, TimelineStep};
use redis::AsyncCommands;
use serde::Serialize;
use serde_json::{Value, json};

use crate::fleet::{Fleet, Proc, cpu_seconds_of, machine_cpu_seconds, peak_rss_kb_of};
use crate::proxy::LatencyProxy;

/// What one end-to-end run does.
#[derive(Debug, Clone, clap::Args)]
pub struct E2eOpts {
    /// Orders.
    #[arg(long, default_value_t = 20_000)]
    pub orders: usize,
    /// Pending answers each order gets before its paid one.
    #[arg(long, default_value_t = 3)]
    pub pending: u64,
    /// Delay between two checks of one order, ms (the same on both sides, no jitter).
    #[arg(long, default_value_t = 100)]
    pub delay_ms: u64,
    /// Worker processes on each side.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Jobs in flight per worker process.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Runtime threads per paywatch worker process (`--threads`): one, as each Node process
    /// runs its JavaScript on one thread, and the default runs as many processes as cores.
    #[arg(long, default_value_t = 1)]
    pub worker_threads: usize,
    /// paywatch shards (`PAYWATCH_SHARDS`).
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
    /// Round-trip time to Redis, ms (fractions allowed): every process of both sides and the
    /// submitter reach Redis through the bench's latency proxy, which also counts round trips.
    /// Without it they connect directly (single Redis only).
    #[arg(long)]
    pub rtt_ms: Option<f64>,
}

/// One side's result.
#[derive(Debug, Clone, Serialize)]
pub struct SideResult {
    /// Orders that reached their final record.
    pub orders: usize,
    /// First enqueue to last final, seconds.
    pub seconds: f64,
    /// Orders per second over that span.
    pub orders_per_sec: f64,
    /// Status requests the sandbox served.
    pub provider_calls: u64,
    /// The largest peak RSS of one worker process, kB.
    pub worker_peak_rss_kb: u64,
    /// CPU seconds all worker processes used.
    pub worker_cpu_s: f64,
    /// CPU seconds the Redis server process(es) used from the first enqueue to the last final:
    /// the shared resource both sides compete for, so the figure that says which costs less.
    pub redis_cpu_s: f64,
    /// How busy the whole machine was over the same span: busy time of all cores over their
    /// total (1.0: every core busy all the time), from `/proc/stat`.
    pub machine_busy: f64,
    /// Through the latency proxy only (`--rtt-ms`): the round trips it counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetResult>,
}

/// What the latency proxy saw of one side's run.
#[derive(Debug, Clone, Serialize)]
pub struct NetResult {
    /// The round-trip time the proxy adds, ms.
    pub rtt_ms: f64,
    /// The median PING round trip through the proxy before the run, ms: what clients really see.
    pub ping_ms: f64,
    /// Round trips per order of the submitter (paywatch: `FCALL paywatch_submit` pipelines;
    /// BullMQ: `addBulk`), from its first command to its last reply.
    pub submit_round_trips_per_order: f64,
    /// Round trips per order of the worker processes, from the first enqueue to the last final
    /// (checks, re-delays, finals, notification jobs, and the idle polls in between).
    pub worker_round_trips_per_order: f64,
    /// Connections the worker processes opened to Redis.
    pub worker_connections: u64,
    /// The workers' round trips per order by the call each started with (the proxy's names:
    /// `EVALSHA settle`, `FCALL paywatch_finalize_notify`, `BLPOP`, …).
    pub worker_calls_per_order: BTreeMap<String, f64>,
}

impl NetResult {
    /// Both phases together, per order.
    pub fn round_trips_per_order(&self) -> f64 {
        self.submit_round_trips_per_order + self.worker_round_trips_per_order
    }
}

/// The latency proxies of one side's run: one for the submitter, one for the workers, so each
/// phase's round trips are counted apart; both add the same RTT.
struct Network {
    rtt_ms: f64,
    submit: LatencyProxy,
    workers: LatencyProxy,
}

impl Network {
    /// Proxies in front of the single Redis at `redis`, when `rtt_ms` asks for them.
    fn open(redis: &str, rtt_ms: Option<f64>) -> anyhow::Result<Option<Self>> {
        let Some(rtt_ms) = rtt_ms else {
            return Ok(None);
        };
        anyhow::ensure!(
            rtt_ms.is_finite() && rtt_ms >= 0.0,
            "--rtt-ms must be a duration in ms, not {rtt_ms}"
        );
        let rtt = Duration::from_secs_f64(rtt_ms / 1000.0);
        Ok(Some(Self {
            rtt_ms,
            submit: LatencyProxy::in_front_of(redis, rtt)?,
            workers: LatencyProxy::in_front_of(redis, rtt)?,
        }))
    }

    /// The URLs the submitter and the workers connect to: the proxies', or `redis` itself.
    fn urls(net: &Option<Self>, redis: &str) -> anyhow::Result<(String, String)> {
        Ok(match net {
            Some(n) => (n.submit.url_for(redis)?, n.workers.url_for(redis)?),
            None => (redis.to_string(), redis.to_string()),
        })
    }
}

/// Round trips counted by a side's proxies at one moment: (submitter, workers, the workers' by
/// call).
fn counted(net: &Option<Network>) -> (u64, u64, BTreeMap<String, u64>) {
    net.as_ref().map_or((0, 0, BTreeMap::new()), |n| {
        (
            n.submit.round_trips(),
            n.workers.round_trips(),
            n.workers.calls(),
        )
    })
}

/// The median PING through a side's worker proxy, before anything else uses it.
async fn ping_of(net: &Option<Network>, redis: &str) -> anyhow::Result<f64> {
    match net {
        Some(n) => crate::proxy::ping_rtt_ms(&n.workers.url_for(redis)?, 21).await,
        None => Ok(0.0),
    }
}

/// The proxies' counts over a run, per order.
fn net_result(
    net: &Option<Network>,
    ping_ms: f64,
    start: (u64, u64, BTreeMap<String, u64>),
    end: (u64, u64, BTreeMap<String, u64>),
    orders: usize,
) -> Option<NetResult> {
    let n = net.as_ref()?;
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / orders.max(1) as f64;
    let worker_calls_per_order = end
        .2
        .iter()
        .map(|(call, &b)| {
            (
                call.clone(),
                per(start.2.get(call).copied().unwrap_or(0), b),
            )
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    Some(NetResult {
        rtt_ms: n.rtt_ms,
        ping_ms,
        submit_round_trips_per_order: per(start.0, end.0),
        worker_round_trips_per_order: per(start.1, end.1),
        worker_connections: n.workers.connections(),
        worker_calls_per_order,
    })
}

impl SideResult {
    /// Redis CPU per order, µs.
    pub fn redis_us_per_order(&self) -> f64 {
        self.redis_cpu_s * 1e6 / self.orders.max(1) as f64
    }

    /// One line for the progress log: the rate and Redis's cost per order.
    fn summary(&self) -> String {
        format!(
            "{:.0} orders/s, Redis CPU {:.0} µs per order",
            self.orders_per_sec,
            self.redis_us_per_order()
        )
    }
}

/// CPU counters at the start of a run, to charge the run with what was used since.
struct CpuMeter {
    workers: Vec<u32>,
    redis: Vec<u32>,
    workers_at_start: f64,
    redis_at_start: f64,
    /// The machine's (busy, total) CPU seconds at the start.
    machine_at_start: (f64, f64),
}

/// What a run used, read off a [`CpuMeter`].
struct CpuUsed {
    workers_s: f64,
    redis_s: f64,
    machine_busy: f64,
}

impl CpuMeter {
    /// Starts counting for the worker processes `workers` and the Redis servers `redis`.
    fn start(workers: Vec<u32>, redis: Vec<u32>) -> Self {
        Self {
            workers_at_start: cpu_of(&workers),
            redis_at_start: cpu_of(&redis),
            machine_at_start: machine_cpu_seconds(),
            workers,
            redis,
        }
    }

    /// What was used since the start.
    fn used(&self) -> CpuUsed {
        let (busy, total) = machine_cpu_seconds();
        let (busy0, total0) = self.machine_at_start;
        CpuUsed {
            workers_s: cpu_of(&self.workers) - self.workers_at_start,
            redis_s: cpu_of(&self.redis) - self.redis_at_start,
            machine_busy: (busy - busy0) / (total - total0).max(1e-9),
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The README's example order (three notify targets), as order `id` watching payment `payment`.
pub(crate) fn example_order(id: &str, payment: &str) -> String {
    json!({
        "order_id": id, "provider": "cashless", "payment_id": payment,
        "notify": {"email": "buyer@example.com", "telegram_chat_id": 123456789,
                   "webhook_url": "https://shop.example/hooks/paywatch"}
    })
    .to_string()
}

/// Starts a sandbox on a free loopback port (no webhooks, real time).
pub(crate) async fn start_sandbox() -> anyhow::Result<SandboxHandle> {
    let addr = "127.0.0.1:0".parse()?;
    Ok(Sandbox::start(SandboxConfig::default(), addr).await?)
}

/// Forgets every payment and creates `ids`, each answering `pending` × `NOT_PAID`, then paid.
pub(crate) fn script_bills(
    sandbox: &SandboxHandle,
    ids: &[String],
    pending: u64,
) -> anyhow::Result<()> {
    let state = sandbox.state();
    state.reset();
    for id in ids {
        let mut bill = NewPayment::new(Provider::Cashless)
            .id(id.clone())
            .step(0, "NOT_PAID")
            .webhook(false);
        bill.timeline
            .push(TimelineStep::after_checks(pending, "FULLY_PAID"));
        state.create_payment(bill)?;
    }
    Ok(())
}

/// A connection to the Redis (or Cluster) at `url`, as paywatch's processes make it.
pub(crate) async fn connect(url: &str) -> anyhow::Result<RedisConn> {
    let endpoint = RedisEndpoint::open(url)?;
    // Generous: pipelines of a thousand submits queue up behind each other on purpose.
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(60)));
    Ok(endpoint.managed(config)?)
}

/// Submits `orders` (JSON bodies with their ids) through `paywatch_submit`, pipelined per shard
/// `chunk` at a time, `parallel` pipelines in flight. Fails unless every one was created.
pub(crate) async fn submit_pipelined(
    store: &OrderStore,
    conn: &RedisConn,
    orders: &[(String, String)],
    chunk: usize,
    parallel: usize,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let mut by_shard: Vec<Vec<&(String, String)>> = vec![Vec::new(); store.shards() as usize];
    for order in orders {
        let shard = paywatch_core::store::shard_of(&order.0, store.shards());
        by_shard[shard as usize].push(order);
    }
    let mut per_shard: Vec<Vec<(redis::Pipeline, usize)>> = Vec::new();
    for (shard, list) in by_shard.iter().enumerate() {
        let base = store.keys(shard as u32).base;
        let mut batches = Vec::new();
        for part in list.chunks(chunk.max(1)) {
            let mut pipe = redis::pipe();
            for (_, body) in part {
                pipe.cmd("FCALL")
                    .arg("paywatch_submit")
                    .arg(1)
                    .arg(&base)
                    .arg(body);
            }
            batches.push((pipe, part.len()));
        }
        per_shard.push(batches);
    }
    // Round-robin over the shards, so the pipelines in flight reach every shard (on a Cluster,
    // every master) instead of one shard's after another's.
    let mut batches = Vec::new();
    let mut iters: Vec<_> = per_shard.into_iter().map(Vec::into_iter).collect();
    loop {
        let before = batches.len();
        batches.extend(iters.iter_mut().filter_map(Iterator::next));
        if batches.len() == before {
            break;
        }
    }
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(batches)
        .map(|(pipe, n)| {
            let mut conn = conn.clone();
            async move {
                let replies: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
                let created = replies
                    .iter()
                    .filter(|r| r.first().map(String::as_str) == Some("created"))
                    .count();
                anyhow::ensure!(created == n, "only {created} of {n} orders were created");
                Ok(())
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Final records across all shards.
pub(crate) async fn final_count(store: &OrderStore, conn: &RedisConn) -> anyhow::Result<usize> {
    let mut conn = conn.clone();
    let mut total = 0;
    for shard in 0..store.shards() {
        let n: usize = conn.hlen(store.keys(shard).orders).await?;
        total += n;
    }
    Ok(total)
}

/// Every final record, with its order id.
pub(crate) async fn final_records(
    store: &OrderStore,
    conn: &RedisConn,
) -> anyhow::Result<Vec<(String, StoredOrder)>> {
    let mut conn = conn.clone();
    let mut all = Vec::new();
    for shard in 0..store.shards() {
        let key = store.keys(shard).orders;
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(&key)
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            for (id, json) in page {
                let record = StoredOrder::from_json(&json)
                    .with_context(|| format!("final record of {id}"))?;
                all.push((id, record));
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(all)
}

/// Polls `done` every 20 ms until it reports `want`, or fails after `timeout`.
pub(crate) async fn wait_count<F, Fut>(
    what: &str,
    want: usize,
    timeout: Duration,
    mut done: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let start = Instant::now();
    loop {
        let n = done().await?;
        if n >= want {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("{what}: only {n} of {want} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The poll policy both sides follow: a fixed delay, no jitter, no slow phase.
pub(crate) fn fixed_policy(delay_ms: u64) -> String {
    let delay = format!("{delay_ms}ms");
    json!({"cashless": {"first_delay": delay, "multiplier": 1.0, "max_delay": delay,
                        "jitter": 0.0, "fast_window": "24h"}})
    .to_string()
}

/// Worker arguments for a check-payment fleet on `redis` under `prefix` (`threads`: the
/// worker's default, one per core, when `None`).
pub(crate) fn worker_args(
    redis: &str,
    prefix: &str,
    sandbox: &str,
    concurrency: usize,
    shards: u32,
    policies: &str,
    threads: Option<usize>,
) -> Vec<String> {
    let threads = threads.map(|t| ["--threads".to_string(), t.to_string()]);
    [
        "--redis-url",
        redis,
        "--prefix",
        prefix,
        "--sandbox-url",
        sandbox,
        "--queues",
        "check-payment",
        "--concurrency",
        &concurrency.to_string(),
        "--shards",
        &shards.to_string(),
        "--policies",
        policies,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(threads.into_iter().flatten())
    .collect()
}

fn order_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("e2e-{i}")).collect()
}

/// paywatch's side of one run on the Redis (or Cluster) at `redis`.
pub async fn paywatch_run(
    redis: &str,
    redis_pids: &[u32],
    fleet: &Fleet,
    sandbox: &SandboxHandle,
    o: &E2eOpts,
) -> anyhow::Result<SideResult> {
    let prefix = format!("pwe2e:{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let ids = order_ids(o.orders);
    script_bills(sandbox, &ids, o.pending)?;
    let conn = connect(redis).await?;
    let store = OrderStore::new(conn.clone(), &prefix, o.shards);
    store.prepare().await?;
    let net = Network::open(redis, o.rtt_ms)?;
    let ping_ms = ping_of(&net, redis).await?;
    let (submit_url, workers_url) = Network::urls(&net, redis)?;
    // The harness's own reads (the count of finals, the records) go direct: only the submitter
    // and the workers are measured.
    let submit_conn = connect(&submit_url).await?;
    let args = worker_args(
        &workers_url,
        &prefix,
        &sandbox.base_url(),
        o.concurrency,
        o.shards,
        &fixed_policy(o.delay_ms),
        Some(o.worker_threads),
    );
    let mut workers: Vec<Proc> = (0..o.workers)
        .map(|_| fleet.spawn("paywatch-worker", &args))
        .collect::<anyhow::Result<_>>()?;
    let bodies: Vec<(String, String)> = ids
        .iter()
        .map(|id| (id.clone(), example_order(id, id)))
        .collect();
    let meter = CpuMeter::start(workers.iter().map(Proc::pid).collect(), redis_pids.to_vec());
    let trips_at_start = counted(&net);
    let t0 = now_ms();
    submit_pipelined(&store, &submit_conn, &bodies, 1000, 1).await?;
    wait_count(
        "paywatch final orders",
        o.orders,
        Duration::from_secs(o.timeout_s),
        || final_count(&store, &conn),
    )
    .await?;
    let used = meter.used();
    let network = net_result(&net, ping_ms, trips_at_start, counted(&net), o.orders);
    let rss = workers.iter().map(Proc::peak_rss_kb).max().unwrap_or(0);
    for w in &mut workers {
        w.kill();
    }
    let records = final_records(&store, &conn).await?;
    let last = records
        .iter()
        .filter_map(|(_, r)| r.state.as_ref()?.final_at)
        .map(|t| t.timestamp_millis())
        .max()
        .context("no final_at in the final records")?;
    let checks: u64 = records
        .iter()
        .map(|(_, r)| r.state.as_ref().map_or(0, |s| u64::from(s.poll.checks)))
        .sum();
    let calls = sandbox.state().request_stats().cashless.requests;
    anyhow::ensure!(
        checks == calls,
        "paywatch recorded {checks} checks but the sandbox served {calls}"
    );
    clean_prefix(&conn, &prefix).await;
    Ok(SideResult {
        network,
        ..side_result(o.orders, t0, last, calls, rss, &used)
    })
}

fn side_result(
    orders: usize,
    t0: i64,
    last: i64,
    calls: u64,
    rss: u64,
    used: &CpuUsed,
) -> SideResult {
    let seconds = (last - t0).max(1) as f64 / 1000.0;
    SideResult {
        orders,
        seconds,
        orders_per_sec: orders as f64 / seconds,
        provider_calls: calls,
        worker_peak_rss_kb: rss,
        worker_cpu_s: used.workers_s,
        redis_cpu_s: used.redis_s,
        machine_busy: used.machine_busy,
        network: None,
    }
}

/// CPU seconds the processes `pids` have used so far, together.
fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().map(|pid| cpu_seconds_of(*pid)).sum()
}

/// Deletes every key under `prefix` on a single Redis (a Cluster's keys go with its servers).
pub(crate) async fn clean_prefix(conn: &RedisConn, prefix: &str) {
    let RedisConn::Single(_) = conn else { return };
    let mut conn = conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await;
    }
}

/// A Node process of the BullMQ side, killed when dropped.
struct NodeProc(Child);

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// BullMQ's side of one run on the single Redis at `redis`.
pub async fn bullmq_run(
    redis: &str,
    redis_pid: u32,
    bullmq_dir: &Path,
    sandbox: &SandboxHandle,
    o: &E2eOpts,
) -> anyhow::Result<SideResult> {
    let prefix = format!("bqe2e:{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let ids = order_ids(o.orders);
    script_bills(sandbox, &ids, o.pending)?;
    let client = redis::Client::open(redis)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let ready_key = format!("{prefix}:e2e:ready");
    let final_key = format!("{prefix}:e2e:final");
    let net = Network::open(redis, o.rtt_ms)?;
    let ping_ms = ping_of(&net, redis).await?;
    let (submit_url, workers_url) = Network::urls(&net, redis)?;
    let common = |cmd: &mut Command, redis: &str| {
        cmd.current_dir(bullmq_dir)
            .args(["--redis", redis, "--prefix", &prefix])
            .args(["--timeout-s", &o.timeout_s.to_string()]);
    };
    let mut workers = Vec::new();
    for _ in 0..o.workers {
        let mut cmd = Command::new("node");
        cmd.args(["bench.mjs", "e2e-worker"])
            .args(["--sandbox", &sandbox.base_url()])
            .args(["--concurrency", &o.concurrency.to_string()])
            .args(["--delay-ms", &o.delay_ms.to_string()]);
        common(&mut cmd, &workers_url);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node bench.mjs e2e-worker (is Node.js installed?)")?;
        workers.push(NodeProc(child));
    }
    wait_count(
        "BullMQ workers ready",
        o.workers,
        Duration::from_secs(30),
        || {
            let mut conn = conn.clone();
            let key = ready_key.clone();
            async move { Ok(conn.get::<_, Option<usize>>(&key).await?.unwrap_or(0)) }
        },
    )
    .await?;
    let meter = CpuMeter::start(workers.iter().map(|w| w.0.id()).collect(), vec![redis_pid]);
    let trips_at_start = counted(&net);
    let mut submit = Command::new("node");
    submit.args(["bench.mjs", "e2e-submit", "--jobs", &o.orders.to_string()]);
    common(&mut submit, &submit_url);
    let submitted = crate::report::run_json(submit)?;
    let t0 = submitted
        .get("first_enqueue_ms")
        .and_then(Value::as_i64)
        .context("e2e-submit printed no first_enqueue_ms")?;
    wait_count(
        "BullMQ final orders",
        o.orders,
        Duration::from_secs(o.timeout_s),
        || {
            let mut conn = conn.clone();
            let key = final_key.clone();
            async move { Ok(conn.hlen::<_, usize>(&key).await?) }
        },
    )
    .await?;
    let used = meter.used();
    let network = net_result(&net, ping_ms, trips_at_start, counted(&net), o.orders);
    let rss = workers
        .iter()
        .map(|w| peak_rss_kb_of(w.0.id()))
        .max()
        .unwrap_or(0);
    drop(workers);
    let finals: Vec<String> = conn.hvals(&final_key).await?;
    let last = finals
        .iter()
        .filter_map(|f| {
            serde_json::from_str::<Value>(f)
                .ok()?
                .get("final_at")?
                .as_i64()
        })
        .max()
        .context("no final_at in the BullMQ side's final records")?;
    let calls = sandbox.state().request_stats().cashless.requests;
    clean_prefix(&connect(redis).await?, &prefix).await;
    Ok(SideResult {
        network,
        ..side_result(o.orders, t0, last, calls, rss, &used)
    })
}

/// The runtime a fleet-against-fleet run (`e2e`, `cluster`) drives its side of the bench from:
/// it serves the sandbox and keeps the books, on one runtime thread. On two cores shared with
/// both sides' worker processes and Redis, a second thread only adds wake-ups between the two
/// (measured: paywatch's rate +3 %, BullMQ's unchanged); one thread is the same for both sides.
pub fn harness_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// One side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// paywatch's fleet.
    Paywatch,
    /// The BullMQ workers.
    Bullmq,
}

/// Both sides, alternating, `runs` times each, on a private redis-server.
#[derive(Debug, Clone, Serialize)]
pub struct E2eResult {
    /// paywatch's runs.
    pub paywatch: Vec<SideResult>,
    /// BullMQ's runs.
    pub bullmq: Vec<SideResult>,
}

/// Runs the comparison `runs` times, alternating sides, on one private Redis emptied between
/// sides (the same server for both, nobody else's commands on it); `only` runs one side alone.
pub async fn compare(
    fleet: &Fleet,
    bullmq_dir: &Path,
    o: &E2eOpts,
    runs: usize,
    only: Option<Side>,
) -> anyhow::Result<E2eResult> {
    let sandbox = start_sandbox().await?;
    let redis = crate::servers::RedisProcess::start(&[])?;
    let url = redis.url();
    let mut result = E2eResult {
        paywatch: Vec::new(),
        bullmq: Vec::new(),
    };
    let runs = runs.max(1);
    for run in 1..=runs {
        if only != Some(Side::Bullmq) {
            let p = paywatch_run(&url, &[redis.pid()], fleet, &sandbox, o).await?;
            eprintln!("e2e {run}/{runs}: paywatch {}", p.summary());
            result.paywatch.push(p);
            flush(&url).await?;
        }
        if only != Some(Side::Paywatch) {
            let b = bullmq_run(&url, redis.pid(), bullmq_dir, &sandbox, o).await?;
            eprintln!("e2e {run}/{runs}: BullMQ {}", b.summary());
            result.bullmq.push(b);
            flush(&url).await?;
        }
    }
    Ok(result)
}

/// Empties a private Redis between runs.
pub(crate) async fn flush(url: &str) -> anyhow::Result<()> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let _: () = redis::cmd("FLUSHALL")
        .arg("SYNC")
        .query_async(&mut conn)
        .await?;
    Ok(())
}
