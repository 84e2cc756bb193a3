//! The worst day: a provider's rate limit shared by the whole fleet, a provider that falls over,
//! and a Redis replica that goes away. Real sandbox providers over sockets, real Redis servers.

use std::time::Duration;

use clap::Parser;
use paywatch_core::{PaymentStatus, Provider, queues};
use paywatch_sandbox::{Fault, FaultScope, NewPayment, Provider as SandboxProvider, SandboxConfig};
use paywatch_tests::stack::Stack;
use paywatch_tests::{cleanup, redis_url, unique_prefix, wait_for};
use paywatch_worker::breaker::BreakerConfig;
use paywatch_worker::budget::RateLimits;
use paywatch_worker::config::WorkerConfig;
use paywatch_worker::gate::{Admission, Gate, Hold, fingerprint};
use serde_json::{Value, json};

fn order(id: &str, provider: &str, payment_id: &str) -> Value {
    json!({"order_id": id, "provider": provider, "payment_id": payment_id})
}

fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

/// Waits until the check queue has nothing left to run (every order reached a final state).
async fn wait_checks_drained(stack: &Stack, within: Duration) {
    wait_for("every check to finish", within, || async {
        let s = stack.stats(queues::CHECK_PAYMENT).await;
        (s.ready + s.scheduled + s.active == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_share_one_provider_budget() {
    // FoxReload's 100 requests per minute, time-scaled to 100 per 6 s.
    let stack = Stack::start_with(
        "budget",
        SandboxConfig {
            rate_limit: Some("100/6s".parse().expect("limit")),
            ..SandboxConfig::default()
        },
    )
    .await;
    let limits = r#"{"foxreload":"100/6s"}"#;
    let mut workers = Vec::new();
    for _ in 0..3 {
        let args = with(stack.worker_args(0.01), &["--rate-limits", limits]);
        workers.push(stack.worker(&args).await);
    }
    let mut ids = Vec::new();
    for i in 0..300 {
        // A third are paid at once, the rest a little later, so some orders need a second look.
        let paid_at = if i % 3 == 0 { 0 } else { 1_500 };
        let payment = stack.payment(
            NewPayment::new(SandboxProvider::FoxReload)
                .step(0, "active")
                .step(paid_at, "completed"),
        );
        let id = format!("fox-{i}");
        let (status, body) = stack.submit(&order(&id, "foxreload", &payment)).await;
        assert!(status == 202 || status == 201, "{status} {body}");
        ids.push(id);
    }
    wait_checks_drained(&stack, Duration::from_secs(120)).await;
    let calls = stack.sandbox.state().request_stats().foxreload;
    assert_eq!(
        calls.rate_limited, 0,
        "the provider refused calls: {calls:?}"
    );
    assert!(
        calls.max_in_window <= 100,
        "the provider saw more than its budget in one window: {calls:?}"
    );
    assert!(calls.requests >= 300, "{calls:?}");
    for id in &ids {
        let view = stack.order(id).await.expect("order view");
        assert_eq!(view["status"], "paid", "{id}: {view}");
    }
    assert!(stack.dead_checks().await.is_empty());
    for worker in workers {
        worker.stop().await;
    }
    stack.finish().await;
}

async fn test_gate(prefix: &str, limits: &str, breaker: BreakerConfig) -> Gate {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let conn = redis::aio::ConnectionManager::new(client)
        .await
        .expect("redis");
    let providers = paywatch_core::ProvidersConfig::default();
    let limits = RateLimits::parse_overrides(limits).expect("limits");
    Gate::new(conn, prefix, &providers, &limits, 0.3, breaker)
}

#[tokio::test]
async fn young_orders_keep_a_reserve_of_the_budget() {
    let prefix = unique_prefix("reserve");
    let off = BreakerConfig {
        failures: 0,
        ..BreakerConfig::default()
    };
    let gate = test_gate(&prefix, r#"{"cashless":"10/1m"}"#, off).await;
    // Old orders (past their fast phase) get 7 of 10: 3 are kept for young ones.
    for i in 0..7 {
        let admitted = gate.admit(Provider::Cashless, false).await.expect("admit");
        assert!(
            matches!(admitted, Admission::Go(_)),
            "old call {i}: {admitted:?}"
        );
    }
    let old = gate.admit(Provider::Cashless, false).await.expect("admit");
    assert!(
        matches!(old, Admission::Wait { hold: Hold::Budget, after } if after > Duration::from_secs(50)),
        "{old:?}"
    );
    for i in 0..3 {
        let admitted = gate.admit(Provider::Cashless, true).await.expect("admit");
        assert!(
            matches!(admitted, Admission::Go(_)),
            "young call {i}: {admitted:?}"
        );
    }
    let young = gate.admit(Provider::Cashless, true).await.expect("admit");
    assert!(
        matches!(
            young,
            Admission::Wait {
                hold: Hold::Budget,
                ..
            }
        ),
        "{young:?}"
    );
    // Other providers are not touched by this one's budget.
    let other = gate.admit(Provider::HandCash, false).await.expect("admit");
    assert!(matches!(other, Admission::Go(_)), "{other:?}");
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_provider_is_paused_probed_and_resumed() {
    let stack = Stack::start("breaker").await;
    let sandbox = stack.sandbox.state();
    sandbox
        .set_fault(
            FaultScope::Provider(SandboxProvider::Cashless),
            Fault::status(503),
        )
        .expect("fault");
    let args = with(
        stack.worker_args(0.01),
        &[
            "--breaker-failures",
            "3",
            "--breaker-pause",
            "300ms",
            "--breaker-max-pause",
            "1s",
        ],
    );
    let config = WorkerConfig::try_parse_from(&args).expect("args");
    let fp = fingerprint(
        Provider::Cashless,
        &config.providers_config().expect("providers"),
    );
    let breaker_key = format!("{}:{{provider:cashless:{fp}}}:breaker", stack.prefix);
    let worker = stack.worker(&args).await;
    let mut down = Vec::new();
    for i in 0..20 {
        let payment = stack.payment(
            NewPayment::new(SandboxProvider::Cashless)
                .step(0, "NOT_PAID")
                .step(100, "FULLY_PAID"),
        );
        let id = format!("down-{i}");
        stack.submit(&order(&id, "cashless", &payment)).await;
        down.push(id);
    }
    let client = redis::Client::open(stack.redis.as_str()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    // Two failed probes: the breaker has opened and doubled its pause since.
    wait_for("two failed probes", Duration::from_secs(30), || {
        let mut conn = conn.clone();
        let key = breaker_key.clone();
        async move {
            let level: Option<u32> = redis::cmd("HGET")
                .arg(&key)
                .arg("level")
                .query_async(&mut conn)
                .await
                .ok()?;
            (level? >= 2).then_some(())
        }
    })
    .await;
    // A healthy provider is unaffected meanwhile.
    let handcash = stack.payment(
        NewPayment::new(SandboxProvider::HandCash)
            .step(0, "pending")
            .step(50, "paid"),
    );
    stack.submit(&order("up-1", "handcash", &handcash)).await;
    stack
        .wait_status("up-1", PaymentStatus::Paid, Duration::from_secs(30))
        .await;
    // While paused, the failing provider saw only the calls that opened the breaker, the calls
    // already in flight then (at most the worker's concurrency) and one call per probe.
    // Calls first, probes after: a probe in between only loosens the bound.
    let calls = sandbox.request_stats().cashless.requests;
    let level: u32 = redis::cmd("HGET")
        .arg(&breaker_key)
        .arg("level")
        .query_async(&mut conn)
        .await
        .expect("level");
    assert!(
        calls <= 3 + 16 + u64::from(level) + 1,
        "{calls} calls to a provider that is down (probes: {level})"
    );
    // The provider recovers: the next probe closes the breaker and every order is detected,
    // none failed or dead-lettered on the way.
    sandbox
        .clear_faults(FaultScope::Provider(SandboxProvider::Cashless))
        .expect("clear");
    for id in &down {
        stack
            .wait_status(id, PaymentStatus::Paid, Duration::from_secs(30))
            .await;
    }
    let state: Option<String> = redis::cmd("HGET")
        .arg(&breaker_key)
        .arg("state")
        .query_async(&mut conn)
        .await
        .expect("state");
    assert_eq!(state, None, "a closed breaker keeps no state");
    assert!(stack.dead_checks().await.is_empty());
    worker.stop().await;
    stack.finish().await;
}
