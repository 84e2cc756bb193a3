//! The parts of the economy benchmark that need the real fleet on real time: provider webhooks
//! through the producer to a worker's check, and a fleet sharing FoxReload's request budget.
//! Everything runs in this process over loopback sockets: the sandbox, the producer's HTTP API,
//! and a paywatch worker ([`App`]) on the given Redis.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;
use paywatch_core::{OrderId, PaymentStatus, Phase, Secret};
use paywatch_producer::Producer;
use paywatch_sandbox::{
    NewPayment, Provider as SandboxProvider, Sandbox, SandboxConfig, SandboxHandle,
};
use paywatch_worker::app::App;
use paywatch_worker::config::WorkerConfig;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A sandbox, the producer's API in front of it (the sandbox's webhook target) and a worker.
struct Fleet {
    prefix: String,
    sandbox: SandboxHandle,
    producer: Producer,
    api_task: JoinHandle<()>,
    worker_stop: Option<oneshot::Sender<()>>,
    worker: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Fleet {
    async fn start(
        redis: &str,
        sandbox: SandboxConfig,
        worker_args: &[&str],
    ) -> anyhow::Result<Self> {
        let prefix = format!(
            "pwbench-eco:{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let any: SocketAddr = "127.0.0.1:0".parse()?;
        let listener = tokio::net::TcpListener::bind(any).await?;
        let api = format!("http://{}", listener.local_addr()?);
        let sandbox = Sandbox::start(
            SandboxConfig {
                webhook_target: Some(api),
                ..sandbox
            },
            any,
        )
        .await?;
        let producer = Producer::connect(redis, &prefix).await?;
        let handcash = Secret::new(
            sandbox
                .state()
                .config()
                .credentials
                .handcash_app_secret
                .clone(),
        );
        let token = uuid::Uuid::new_v4().simple().to_string();
        let auth = paywatch_producer::auth::ApiAuth::new([token], None)?;
        let router = paywatch_producer::http::router(producer.clone(), Some(handcash), auth);
        let api_task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let base = sandbox.base_url();
        let mut args = vec![
            "paywatch-worker",
            "--redis-url",
            redis,
            "--prefix",
            &prefix,
            "--sandbox-url",
            &base,
            "--queues",
            "check-payment",
            "--lease",
            "5s",
            "--grace-period",
            "2s",
        ];
        args.extend_from_slice(worker_args);
        let config = WorkerConfig::try_parse_from(args)?;
        let app = App::build(config).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let worker = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Ok(Self {
            prefix,
            sandbox,
            producer,
            api_task,
            worker_stop: Some(stop),
            worker: Some(worker),
        })
    }

    async fn submit(
        &self,
        order_id: &str,
        provider: SandboxProvider,
        payment_id: &str,
    ) -> anyhow::Result<()> {
        let body = json!({"order_id": order_id, "provider": provider.to_string(), "payment_id": payment_id});
        self.producer
            .submit_json(body.to_string().as_bytes())
            .await?;
        Ok(())
    }

    /// The order's final status and when it was recorded, once it has one.
    async fn final_at(
        &self,
        order_id: &str,
    ) -> anyhow::Result<Option<(PaymentStatus, DateTime<Utc>, u32)>> {
        let id: OrderId = order_id.parse()?;
        let Some(view) = self.producer.order(&id).await? else {
            return Ok(None);
        };
        if view.phase != Phase::Final {
            return Ok(None);
        }
        let state = view.record.state.as_ref();
        Ok(state.and_then(|s| s.final_at.map(|at| (s.status, at, s.poll.checks))))
    }

    async fn stop(mut self, redis: &str) {
        if let Some(stop) = self.worker_stop.take() {
            let _ = stop.send(());
        }
        if let Some(worker) = self.worker.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
        }
        self.api_task.abort();
        let _ = self.sandbox.shutdown().await;
        let _ = clean(redis, &self.prefix).await;
    }
}

/// Webhook → producer → check now → final recorded, measured on the real fleet: the lag from the
/// moment the sandbox's payment became paid (and its webhook fired) to the order's recorded
/// final status, in milliseconds, for `n` Cashless and HandCash orders.
pub async fn webhook_lag(redis: &str, n: usize, seed: u64) -> anyhow::Result<Vec<f64>> {
    let fleet = Fleet::start(redis, SandboxConfig::default(), &["--concurrency", "64"]).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut orders = Vec::with_capacity(n);
    for i in 0..n {
        let provider = if i % 2 == 0 {
            SandboxProvider::Cashless
        } else {
            SandboxProvider::HandCash
        };
        let paid = match provider {
            SandboxProvider::Cashless => "FULLY_PAID",
            _ => "paid",
        };
        // Paid 2.1–2.6 s after creation: past the producer's 2 s gap after the first check and
        // before the second poll (3 s or 5 s, ±10 %), so the webhook is what finds it.
        let at = rng.random_range(2_100..2_600);
        let payment = NewPayment::new(provider)
            .step(0, initial(provider))
            .step(at, paid);
        let created = fleet.sandbox.state().create_payment(payment)?;
        let created_at = fleet
            .sandbox
            .state()
            .stats(provider, &created.id)
            .map(|s| s.created_at)
            .unwrap_or_else(Utc::now);
        let order_id = format!("wh-{i}");
        fleet.submit(&order_id, provider, &created.id).await?;
        orders.push((
            order_id,
            created_at + chrono::TimeDelta::milliseconds(at as i64),
        ));
        // Spread the orders a little, as a shop's would be.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..10))).await;
    }
    let mut lags = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(60);
    for (order_id, paid_at) in &orders {
        loop {
            if let Some((status, at, _)) = fleet.final_at(order_id).await? {
                anyhow::ensure!(status == PaymentStatus::Paid, "{order_id} ended {status}");
                lags.push((at - *paid_at).as_seconds_f64() * 1000.0);
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{order_id} not final within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    fleet.stop(redis).await;
    Ok(lags)
}

fn initial(provider: SandboxProvider) -> &'static str {
    match provider {
        SandboxProvider::Cashless => "NOT_PAID",
        SandboxProvider::FoxReload => "active",
        _ => "pending",
    }
}

/// The budgeted case's results.
#[derive(Debug, Clone)]
pub struct Budgeted {
    /// Time scale the fleet ran at.
    pub time_scale: f64,
    /// Old orders (never paying, past their fast phase) polled meanwhile.
    pub old_orders: usize,
    /// Young orders submitted during the measured window.
    pub young_orders: usize,
    /// Detection lags of the young orders, unscaled seconds.
    pub young_lags_s: Vec<f64>,
    /// Checks the old orders got during the measured window, per order.
    pub old_checks_per_order: f64,
    /// Checks the old orders' schedule asked for in the window, per order.
    pub old_checks_wanted: f64,
    /// Status calls FoxReload received during the measured window.
    pub requests: u64,
    /// Calls answered 429 over the whole run.
    pub rate_limited: u64,
    /// Most calls in any one window of the provider's limit.
    pub max_in_window: u64,
    /// Length of the measured window, unscaled seconds.
    pub window_s: f64,
}

/// FoxReload at 100 calls a minute, shared by the fleet through the gate: `old` orders that never
/// pay, past their fast phase, and young ones arriving and paying quickly; time-scaled by
/// `time_scale` (the provider's limit, the budget and every policy alike).
pub async fn budgeted(
    redis: &str,
    old: usize,
    window_unscaled: Duration,
    time_scale: f64,
    seed: u64,
) -> anyhow::Result<Budgeted> {
    let minute_ms = (60_000.0 * time_scale).round() as u64;
    let limit = format!("100/{minute_ms}ms");
    let sandbox = SandboxConfig {
        time_scale,
        rate_limit: Some(limit.parse().map_err(|e| anyhow::anyhow!("{e}"))?),
        ..SandboxConfig::default()
    };
    let scale_text = time_scale.to_string();
    let limits = json!({ "foxreload": limit }).to_string();
    let fleet = Fleet::start(
        redis,
        sandbox,
        &[
            "--concurrency",
            "64",
            "--time-scale",
            &scale_text,
            "--rate-limits",
            &limits,
        ],
    )
    .await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let fox = SandboxProvider::FoxReload;
    let mut old_ids = Vec::with_capacity(old);
    for i in 0..old {
        let created = fleet
            .sandbox
            .state()
            .create_payment(NewPayment::new(fox).step(0, "active"))?;
        fleet.submit(&format!("old-{i}"), fox, &created.id).await?;
        old_ids.push(created.id);
    }
    // Let them leave their fast phase (FoxReload's is 5 minutes), plus a minute to settle.
    let fast = Duration::from_secs_f64(6.0 * 60.0 * time_scale);
    tokio::time::sleep(fast).await;
    let calls_before = fleet.sandbox.state().request_stats().foxreload.requests;
    let old_before = old_checks(&fleet, &old_ids);
    // Young orders: one every 6 s (unscaled), paying after a log-normal median 20 s.
    let window = Duration::from_secs_f64(window_unscaled.as_secs_f64() * time_scale);
    let every = Duration::from_secs_f64(6.0 * time_scale);
    let started = Instant::now();
    let mut young = Vec::new();
    while started.elapsed() < window {
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * rng.random::<f64>()).cos();
        let at = (20_000.0 * (0.6 * z).exp()).clamp(1_000.0, 600_000.0) as u64;
        let payment = NewPayment::new(fox).step(0, "active").step(at, "completed");
        let created = fleet.sandbox.state().create_payment(payment)?;
        let created_at = fleet
            .sandbox
            .state()
            .stats(fox, &created.id)
            .map(|s| s.created_at)
            .unwrap_or_else(Utc::now);
        let order_id = format!("young-{}", young.len());
        fleet.submit(&order_id, fox, &created.id).await?;
        let paid_at =
            created_at + chrono::TimeDelta::microseconds((at as f64 * 1000.0 * time_scale) as i64);
        young.push((order_id, paid_at));
        tokio::time::sleep(every).await;
    }
    let requests = fleet.sandbox.state().request_stats().foxreload.requests - calls_before;
    let old_after = old_checks(&fleet, &old_ids);
    let mut lags = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for (order_id, paid_at) in &young {
        loop {
            if let Some((_, at, _)) = fleet.final_at(order_id).await? {
                lags.push((at - *paid_at).as_seconds_f64() / time_scale);
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{order_id} not final in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let stats = fleet.sandbox.state().request_stats().foxreload;
    let window_s = window_unscaled.as_secs_f64();
    fleet.stop(redis).await;
    Ok(Budgeted {
        time_scale,
        old_orders: old,
        young_orders: young.len(),
        young_lags_s: lags,
        old_checks_per_order: (old_after - old_before) as f64 / old.max(1) as f64,
        old_checks_wanted: window_s / 300.0,
        requests,
        rate_limited: stats.rate_limited,
        max_in_window: stats.max_in_window,
        window_s,
    })
}

/// Status calls the sandbox counted for the old orders so far.
fn old_checks(fleet: &Fleet, ids: &[String]) -> u64 {
    let state = fleet.sandbox.state();
    ids.iter()
        .filter_map(|id| state.stats(SandboxProvider::FoxReload, id))
        .map(|p| p.checks)
        .sum()
}

/// Deletes every key under `prefix`.
pub async fn clean(redis: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = {
        let mut iter: redis::AsyncIter<String> = conn.scan_match(format!("{prefix}:*")).await?;
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key?);
        }
        keys
    };
    for chunk in keys.chunks(500) {
        redis::cmd("DEL")
            .arg(chunk)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(())
}
