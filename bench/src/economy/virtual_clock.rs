//! The discrete-event driver: each order lives on its own virtual clock. The driver asks the
//! product's policy code (a fixed [`PollPolicy`] or the worker's [`Schedules`]) when the next
//! check is, pins the sandbox payment's clock to that age, and makes the check as a real HTTP
//! call through the product's [`ProviderClient`]. Orders do not interact (no shared budget in
//! this part), so each is simulated independently and many run at once.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use paywatch_core::{
    PaymentId, PaymentStatus, PollDecision, PollPolicies, PollPolicy, PollState, ProviderClient,
};
use paywatch_queue::RedisConn;
use paywatch_sandbox::SandboxHandle;
use paywatch_worker::schedules::{Schedules, settled_after};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::workload::Order;

/// What decides the next check.
#[derive(Debug, Clone)]
pub enum Steering {
    /// A fixed policy per provider (the literature's schedules, paywatch's defaults).
    Fixed(PollPolicies),
    /// The worker's adaptive schedules (plans already refreshed from Redis).
    Adaptive(Schedules, PollPolicies),
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Policy steering the checks.
    pub steering: Steering,
    /// Provider webhooks, with delivery-to-check latencies (ms) measured on the real fleet to
    /// draw from; `None` for polling alone.
    pub webhook_latency_ms: Option<Vec<f64>>,
    /// The producer's least gap after an order's last check before a webhook may check it
    /// again (`PAYWATCH_WEBHOOK_MIN_GAP`), ms.
    pub webhook_gap_ms: u64,
    /// Record every order's time to final into this history (as the worker does at finalize).
    pub record: Option<(Schedules, RedisConn)>,
}

/// What one order cost and how late it was seen.
#[derive(Debug, Clone, Copy)]
pub struct OrderResult {
    /// Provider status calls made.
    pub calls: u32,
    /// Detection lag in seconds, for orders final within the schedule and seen final.
    pub lag_s: Option<f64>,
    /// Final at the provider but never seen final (the schedule stopped first).
    pub missed: bool,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// Per order.
    pub orders: Vec<OrderResult>,
    /// Provider calls the sandbox counted (a cross-check of `orders`' calls).
    pub sandbox_calls: u64,
    /// Wall-clock time the run took.
    pub wall: Duration,
}

/// Runs every order of `orders` under `spec` against `sandbox`, `concurrency` at a time.
pub async fn run(
    sandbox: &SandboxHandle,
    client: &ProviderClient,
    orders: &[Order],
    tag: &str,
    spec: &RunSpec,
    seed: u64,
    concurrency: usize,
) -> anyhow::Result<RunResult> {
    let started = std::time::Instant::now();
    let before = total_calls(sandbox);
    let mut results: Vec<(usize, anyhow::Result<OrderResult>)> =
        futures::stream::iter(orders.iter().enumerate())
            .map(|(i, order)| async move {
                let id = format!("{tag}-{i}");
                let seed = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                (i, one(sandbox, client, order, id, spec, seed).await)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    // Back in workload order, so results line up with the orders they are about.
    results.sort_by_key(|(i, _)| *i);
    let orders = results
        .into_iter()
        .map(|(_, r)| r)
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(RunResult {
        orders,
        sandbox_calls: total_calls(sandbox) - before,
        wall: started.elapsed(),
    })
}

fn total_calls(sandbox: &SandboxHandle) -> u64 {
    let s = sandbox.state().request_stats();
    s.cashless.requests + s.handcash.requests + s.miraclecash.requests + s.foxreload.requests
}

fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000)
}

async fn one(
    sandbox: &SandboxHandle,
    client: &ProviderClient,
    order: &Order,
    id: String,
    spec: &RunSpec,
    seed: u64,
) -> anyhow::Result<OrderResult> {
    let mut rng = StdRng::seed_from_u64(seed);
    let state_of_sandbox = sandbox.state();
    let created = state_of_sandbox.create_payment(order.payment(&id))?;
    let payment_id: PaymentId = id.parse()?;
    let provider = order.provider;
    let policies = match &spec.steering {
        Steering::Fixed(p) | Steering::Adaptive(_, p) => p,
    };
    let policy: PollPolicy = policies.for_provider(provider);
    let t0 = epoch();
    let mut state = PollState::new(&policy, t0);
    let mut webhook_at: Option<u64> = match (&spec.webhook_latency_ms, order.webhook_at()) {
        (Some(latencies), Some(paid)) if !latencies.is_empty() => {
            let pick = latencies[rng.random_range(0..latencies.len())];
            Some(paid + pick.ceil().max(0.0) as u64)
        }
        _ => None,
    };
    let mut age_ms: u64 = 0;
    let mut previous_ms: i64 = 0;
    let mut calls = 0u32;
    loop {
        state_of_sandbox.set_payment_clock(created.provider, &created.id, Some(age_ms))?;
        let result = client.check(provider, &payment_id).await;
        calls += 1;
        let now = t0 + TimeDelta::milliseconds(age_ms as i64);
        let decision = match &spec.steering {
            Steering::Fixed(_) => policy.next_with_rng(&mut state, result.as_ref(), now, &mut rng),
            Steering::Adaptive(schedules, _) => schedules.decide_with_rng(
                provider,
                &policy,
                &mut state,
                result.as_ref(),
                now,
                &mut rng,
            ),
        };
        match decision {
            PollDecision::CheckAgainIn(delay) => {
                previous_ms = now.timestamp_millis();
                let mut next = age_ms + (delay.as_micros().div_ceil(1000) as u64).max(1);
                if let Some(w) = webhook_at
                    && w < next
                {
                    // The webhook moves the order's check to now (the producer's fast path),
                    // but never sooner than the producer's least gap after the last call.
                    next = next.min(w.max(age_ms + spec.webhook_gap_ms));
                    webhook_at = None;
                }
                age_ms = next;
            }
            PollDecision::Terminal(status) => {
                let lag_s = order
                    .final_at
                    .map(|(at, _)| (age_ms.saturating_sub(at)) as f64 / 1000.0);
                record(spec, provider, status, settled_after(previous_ms, t0, now)).await?;
                return Ok(OrderResult {
                    calls,
                    lag_s,
                    missed: false,
                });
            }
            PollDecision::GiveUp(_) => {
                let took = Duration::from_millis(age_ms);
                record(spec, provider, PaymentStatus::Unresolved, took).await?;
                return Ok(OrderResult {
                    calls,
                    lag_s: None,
                    missed: order.final_at.is_some(),
                });
            }
        }
    }
}

async fn record(
    spec: &RunSpec,
    provider: paywatch_core::Provider,
    status: PaymentStatus,
    took: Duration,
) -> anyhow::Result<()> {
    if let Some((schedules, conn)) = &spec.record {
        schedules.record(conn, provider, status, took).await?;
    }
    Ok(())
}
