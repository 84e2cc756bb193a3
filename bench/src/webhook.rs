//! The webhook fast path: a provider's webhook reaches the producer, which moves the order's
//! check to now; a worker runs that check (the verifying API call: a webhook is never trusted on
//! its own), records the final status and enqueues the notifications. Measured per webhook from
//! sending it to the order's last notification job (`notify-webhook`, the third the fan-out
//! writes) existing in Redis, on loopback, one webhook at a time.
//!
//! Set-up: N orders (the README's example order) watch Cashless bills that answer `NOT_PAID` to
//! their first check and `FULLY_PAID` after. Their first checks run, their next ones are ten
//! minutes away (so polling never finds the payment first), and the webhooks start once the
//! producer's minimum gap between two checks of one order (2 s by default) has passed.

use std::time::{Duration, Instant};

use anyhow::Context;
use paywatch_core::Channel;
use paywatch_core::store::OrderStore;
use redis::AsyncCommands;
use serde::Serialize;
use serde_json::{Value, json};

use crate::e2e::{
    connect, example_order, fixed_policy, script_bills, start_sandbox, submit_pipelined,
    wait_count, worker_args,
};
use crate::fleet::Fleet;
use crate::servers::{RedisProcess, free_port};

/// What the webhook benchmark does.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookOpts {
    /// Webhooks (one order each), sent one after another.
    #[arg(long, default_value_t = 200)]
    pub webhooks: usize,
}

/// Latencies of the fast path, ms.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookResult {
    /// Webhooks measured.
    pub webhooks: usize,
    /// Webhook sent → all notification jobs in Redis, each sample (ms, sorted).
    pub notified_ms: Vec<f64>,
    /// Webhook sent → the producer's 200, each sample (ms, sorted).
    pub acked_ms: Vec<f64>,
}

/// The webhook secret-free route the sandbox would call: Cashless sends `{"bill": {...}}`.
fn cashless_webhook(bill: &str) -> Value {
    json!({"bill": {"id": bill, "status": "FULLY_PAID"}})
}

/// Runs the benchmark on a private Redis with one producer and one worker process.
pub async fn run(fleet: &Fleet, o: &WebhookOpts) -> anyhow::Result<WebhookResult> {
    let redis = RedisProcess::start(&[])?;
    let url = redis.url();
    let sandbox = start_sandbox().await?;
    let prefix = format!("pwhook:{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let ids: Vec<String> = (0..o.webhooks).map(|i| format!("hook-{i}")).collect();
    script_bills(&sandbox, &ids, 1)?;
    let conn = connect(&url).await?;
    let store = OrderStore::new(conn.clone(), &prefix, 1);
    store.prepare().await?;

    let port = free_port()?;
    let api = format!("127.0.0.1:{port}");
    let _producer = fleet.spawn(
        "paywatch-producer",
        &[
            "--redis-url",
            &url,
            "--prefix",
            &prefix,
            "serve",
            "--listen",
            &api,
            "--api-tokens",
            "bench-token-0123456789abcdefghij",
        ]
        .map(String::from),
    )?;
    let args = worker_args(
        &url,
        &prefix,
        &sandbox.base_url(),
        32,
        1,
        &fixed_policy(600_000),
        None,
    );
    let _worker = fleet.spawn("paywatch-worker", &args)?;

    let bodies: Vec<(String, String)> = ids
        .iter()
        .map(|id| (id.clone(), example_order(id, id)))
        .collect();
    submit_pipelined(&store, &conn, &bodies, 1000, 1).await?;
    wait_count(
        "first checks",
        o.webhooks,
        Duration::from_secs(60),
        || async { Ok(sandbox.state().request_stats().cashless.requests as usize) },
    )
    .await?;
    // Every first check's reschedule is written once no check job is leased any more.
    let check_keys = paywatch_queue::Keys::new(&prefix, &paywatch_core::store::check_queue(0));
    wait_count("first checks settled", 1, Duration::from_secs(60), || {
        let mut conn = conn.clone();
        let leases = check_keys.leases.clone();
        async move { Ok(usize::from(conn.zcard::<_, usize>(&leases).await? == 0)) }
    })
    .await?;
    // The producer's default minimum gap between two checks of one order (PAYWATCH_WEBHOOK_MIN_GAP)
    // must pass, or the webhook's check is (rightly) held back until it does.
    tokio::time::sleep(Duration::from_millis(2_200)).await;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()?;
    let hook_url = format!("http://{api}/webhooks/cashless");
    let notify_jobs = paywatch_queue::Keys::new(&prefix, Channel::Webhook.queue()).jobs;
    let mut poll = conn.clone();
    let mut notified = Vec::with_capacity(o.webhooks);
    let mut acked = Vec::with_capacity(o.webhooks);
    for id in &ids {
        let job = format!("{id}:paid:webhook");
        let start = Instant::now();
        let response = http
            .post(&hook_url)
            .json(&cashless_webhook(id))
            .send()
            .await
            .context("POST /webhooks/cashless")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        acked.push(start.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            status.is_success() && body["orders"][0]["check"] == "Moved",
            "webhook for {id} answered {status}: {body}"
        );
        loop {
            if poll.hexists::<_, _, bool>(&notify_jobs, &job).await? {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(30),
                "no notification job for {id} within 30 s of its webhook"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        notified.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    notified.sort_by(f64::total_cmp);
    acked.sort_by(f64::total_cmp);
    Ok(WebhookResult {
        webhooks: o.webhooks,
        notified_ms: notified,
        acked_ms: acked,
    })
}
