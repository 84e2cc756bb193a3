//! The paywatch side of each scenario.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use paywatch_queue::{NewJob, QueueConfig, RedisQueue, Schedule};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Notify;

const QUEUE: &str = "bench";
const CHUNK: usize = 1000;

async fn queue<T>(redis: &str, prefix: &str, batch: usize) -> anyhow::Result<RedisQueue<T>> {
    let config = QueueConfig::new(QUEUE)
        .with_prefix(prefix)
        .with_batch_size(batch);
    Ok(RedisQueue::connect(redis, config).await?)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Adds `jobs` no-op jobs, due now.
pub async fn preload(redis: &str, prefix: &str, jobs: usize) -> anyhow::Result<Value> {
    let q: RedisQueue<Value> = queue(redis, prefix, 1).await?;
    let mut added = 0;
    while added < jobs {
        let n = CHUNK.min(jobs - added);
        let batch = (added..added + n)
            .map(|i| NewJob::new(json!({ "i": i })))
            .collect();
        q.enqueue_many(batch).await?;
        added += n;
    }
    Ok(json!({ "added": added }))
}

#[derive(Clone)]
struct Done {
    count: Arc<AtomicUsize>,
    target: usize,
    all: Arc<Notify>,
}

/// Processes `jobs` preloaded no-op jobs; the clock runs from the worker's start to the last
/// settled job.
pub async fn work(
    redis: &str,
    prefix: &str,
    jobs: usize,
    concurrency: usize,
) -> anyhow::Result<Value> {
    let q: RedisQueue<Value> = queue(redis, prefix, concurrency).await?;
    let ready = q.stats().await?.ready as usize;
    anyhow::ensure!(
        ready >= jobs,
        "only {ready} jobs are waiting; preload {jobs} first"
    );
    let done = Done {
        count: Arc::new(AtomicUsize::new(0)),
        target: jobs,
        all: Arc::new(Notify::new()),
    };
    async fn noop(_: Value) {}
    let counter = done.clone();
    let worker = WorkerBuilder::new("bench-work")
        .backend(q)
        .concurrency(concurrency)
        // Success events fire after the job's settle is durable in Redis.
        .on_event(move |_, event| {
            if matches!(event, Event::Success(_))
                && counter.count.fetch_add(1, Ordering::Relaxed) + 1 == counter.target
            {
                counter.all.notify_one();
            }
        })
        .build(noop);
    let start = Instant::now();
    let running = tokio::spawn(worker.run());
    done.all.notified().await;
    let seconds = start.elapsed().as_secs_f64();
    running.abort();
    Ok(json!({
        "jobs": jobs,
        "seconds": seconds,
        "jobs_per_sec": jobs as f64 / seconds,
        "peak_rss_kb": crate::fleet::peak_rss_kb_of(std::process::id()),
    }))
}

/// Delayed jobs: lateness = when the handler ran − when the job was meant to run (the producer's
/// clock at enqueue + delay). Negative would mean early.
pub async fn lateness(
    redis: &str,
    prefix: &str,
    jobs: usize,
    spread_ms: u64,
    concurrency: usize,
) -> anyhow::Result<Value> {
    let q: RedisQueue<u64> = queue(redis, prefix, concurrency).await?;
    #[derive(Clone)]
    struct Seen(Arc<std::sync::Mutex<Vec<i64>>>, Arc<Notify>, usize);
    let seen = Seen(
        Arc::new(std::sync::Mutex::new(Vec::with_capacity(jobs))),
        Arc::new(Notify::new()),
        jobs,
    );
    async fn handle(intended: u64, seen: Data<Seen>) {
        let ran = now_ms() as i64;
        let seen: &Seen = &seen;
        let mut v = seen.0.lock().unwrap_or_else(|e| e.into_inner());
        v.push(ran - intended as i64);
        if v.len() == seen.2 {
            seen.1.notify_one();
        }
    }
    let worker = WorkerBuilder::new("bench-lateness")
        .backend(q.clone())
        .data(seen.clone())
        .concurrency(concurrency)
        .build(handle);
    let running = tokio::spawn(worker.run());
    // The producer is a separate task with its own connection, like a shop's producer.
    let producer_q: RedisQueue<u64> = queue(redis, prefix, 1).await?;
    let producer = tokio::spawn(async move {
        let mut added = 0;
        while added < jobs {
            let n = CHUNK.min(jobs - added);
            let batch: Vec<_> = (0..n)
                .map(|_| {
                    let delay = rand::rng().random_range(0..spread_ms.max(1));
                    NewJob::new(now_ms() + delay)
                        .with_schedule(Schedule::After(Duration::from_millis(delay)))
                })
                .collect();
            producer_q.enqueue_many(batch).await?;
            added += n;
        }
        anyhow::Ok(())
    });
    producer.await??;
    tokio::time::timeout(Duration::from_secs(300), seen.1.notified()).await?;
    running.abort();
    let mut v = seen.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    v.sort_unstable();
    let pct = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let out = json!({
        "jobs": v.len(),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": v.last().copied().unwrap_or(0),
        "min_ms": v.first().copied().unwrap_or(0),
        "early": v.iter().filter(|l| **l < 0).count(),
    });
    clean(redis, prefix).await?;
    Ok(out)
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<i64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no used_memory in INFO"))
}

/// The payload of job `i` in the memory scenario: `small` is `{"i":N}`, `order` looks like a
/// check-payment reference (`{"order_id":"ord-N","provider":"cashless"}`).
fn memory_payload(kind: &str, i: usize) -> Value {
    match kind {
        "small" => json!({ "i": i }),
        _ => json!({"order_id": format!("ord-{i}"), "provider": "cashless"}),
    }
}

/// The README's example order (three notify targets), as order `i`.
fn example_order(i: usize) -> Value {
    json!({
        "order_id": format!("shop-{i}"), "provider": "cashless", "payment_id": format!("bill-{i:x}"),
        "notify": {"email": "buyer@example.com", "telegram_chat_id": 123456789,
                   "webhook_url": "https://shop.example/hooks/paywatch"}
    })
}

/// Redis bytes per pending order submitted through the `paywatch_submit` function: the order
/// record, its due entry and its payment index entry, everything a pending order costs.
async fn order_memory(redis: &str, prefix: &str, orders: usize) -> anyhow::Result<Value> {
    use futures::StreamExt;
    let client = redis::Client::open(redis)?;
    let store = paywatch_core::OrderStore::new(
        paywatch_queue::RedisConn::Single(
            redis::aio::ConnectionManager::new(client.clone()).await?,
        ),
        prefix,
        1,
    );
    store.prepare().await?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    // The shard's keys exist before measuring, so their fixed overhead is not charged to orders.
    store
        .submit_json(example_order(usize::MAX).to_string().as_bytes())
        .await?;
    let before = used_memory(&mut conn).await?;
    let submitted = futures::stream::iter(0..orders)
        .map(|i| {
            let store = store.clone();
            async move {
                store
                    .submit_json(example_order(i).to_string().as_bytes())
                    .await
            }
        })
        .buffer_unordered(64)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await;
    anyhow::ensure!(
        submitted == orders,
        "only {submitted} of {orders} orders were accepted"
    );
    let after = used_memory(&mut conn).await?;
    let base = store.keys(0).base;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{base}:*"))
        .query_async(&mut conn)
        .await?;
    let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
    Ok(json!({ "jobs": orders, "bytes_per_job": (after - before) as f64 / orders as f64 }))
}

/// Redis bytes per pending job delayed by an hour.
pub async fn memory(
    redis: &str,
    prefix: &str,
    jobs: usize,
    payload: &str,
) -> anyhow::Result<Value> {
    if payload == "example" {
        return order_memory(redis, prefix, jobs).await;
    }
    let q: RedisQueue<Value> = queue(redis, prefix, 1).await?;
    let mut conn = redis::Client::open(redis)?
        .get_multiplexed_async_connection()
        .await?;
    // Create the queue's keys first so their fixed overhead is not charged to the jobs.
    q.enqueue_many(vec![
        NewJob::new(json!({})).with_schedule(Schedule::After(Duration::from_secs(3600))),
    ])
    .await?;
    let before = used_memory(&mut conn).await?;
    let mut added = 0;
    while added < jobs {
        let n = CHUNK.min(jobs - added);
        let batch = (added..added + n)
            .map(|i| {
                NewJob::new(memory_payload(payload, i))
                    .with_schedule(Schedule::After(Duration::from_secs(3600)))
            })
            .collect();
        q.enqueue_many(batch).await?;
        added += n;
    }
    let after = used_memory(&mut conn).await?;
    clean(redis, prefix).await?;
    Ok(json!({ "jobs": jobs, "bytes_per_job": (after - before) as f64 / jobs as f64 }))
}

/// Deletes every key of the bench queue.
pub async fn clean(redis: &str, prefix: &str) -> anyhow::Result<Value> {
    let q: RedisQueue<Value> = queue(redis, prefix, 1).await?;
    let mut conn = redis::Client::open(redis)?
        .get_multiplexed_async_connection()
        .await?;
    let keys: Vec<String> = q.keys().all().iter().map(|k| k.to_string()).collect();
    let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
    Ok(json!({ "cleaned": true, "prefix": prefix, "queue": QUEUE }))
}
