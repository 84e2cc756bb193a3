//! The health verdict (`GET /v1/admin/health`, `paywatch-producer admin health`) on real stacks:
//! each subsystem broken in turn, and the verdict read back naming it — workers stopped (checks
//! late), a provider answering 503 (its breaker open), webhooks not seen then seen, a webhook
//! target refusing (notifications), a check job deleted by hand (an orphan), and a private
//! redis-server evicting (Redis).

use std::time::Duration;

use paywatch_core::PaymentStatus;
use paywatch_sandbox::{Fault, FaultScope, NewPayment, Provider};
use paywatch_tests::stack::{Stack, WebhookReceiver};
use paywatch_tests::{RedisServer, bins, wait_for};
use serde_json::{Value, json};

/// The verdict as the API answers it.
async fn health(stack: &Stack) -> Value {
    let response = stack
        .http
        .get(format!("{}/v1/admin/health", stack.api))
        .send()
        .await
        .expect("GET /v1/admin/health");
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.expect("JSON")
}

/// Waits until the verdict satisfies `check`, returning it.
async fn health_until(stack: &Stack, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, Duration::from_secs(45), || async {
        let h = health(stack).await;
        check(&h).then_some(h)
    })
    .await
}

/// The entry of `list` (an array of objects) whose `key` is `name`.
fn find<'a>(list: &'a Value, key: &str, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|items| items.iter().find(|i| i[key] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn stopped_workers_make_checks_late_and_webhooks_go_from_not_seen_to_seen() {
    let stack = Stack::start("health-checks").await;
    let worker = stack.worker(&stack.worker_args(0.01)).await;
    let h = health_until(&stack, "the check worker to report in", |h| {
        h["checks"]["workers"] == 1
    })
    .await;
    assert_eq!(h["checks"]["verdict"], "ok", "{h:#}");
    assert_eq!(h["orphans"]["orphans"], 0, "{h:#}");
    assert_eq!(h["orphans"]["complete"], true, "{h:#}");
    let cashless = find(&h["webhooks"]["providers"], "provider", "cashless");
    assert_eq!(cashless["state"], "not_seen", "{h:#}");
    assert!(
        cashless["cause"]
            .as_str()
            .is_some_and(|c| c.contains("/webhooks/cashless")),
        "{h:#}"
    );

    // A bill that gets paid: the sandbox sends Cashless's webhook, and it is noted.
    let bill = stack.bill_paid_after(100);
    let (status, body) = stack
        .submit(&json!({"order_id": "health-paid", "provider": "cashless", "payment_id": bill}))
        .await;
    assert_eq!(status, 202, "{body}");
    stack
        .wait_status("health-paid", PaymentStatus::Paid, Duration::from_secs(30))
        .await;
    let h = health_until(&stack, "Cashless's webhook to be seen", |h| {
        find(&h["webhooks"]["providers"], "provider", "cashless")["state"] == "seen"
    })
    .await;
    assert!(
        find(&h["providers"]["providers"], "provider", "cashless")["calls"]
            .as_u64()
            .is_some_and(|n| n >= 1)
            || h["providers"]["verdict"] == "ok",
        "{h:#}"
    );

    // No worker: the next order's check is due and nobody takes it.
    worker.stop().await;
    let bill = stack.bill_paid_after(100);
    let (status, body) = stack
        .submit(&json!({"order_id": "health-waits", "provider": "cashless", "payment_id": bill}))
        .await;
    assert_eq!(status, 202, "{body}");
    let h = health_until(&stack, "checks to fail for want of workers", |h| {
        h["checks"]["verdict"] == "failing"
    })
    .await;
    assert_eq!(h["verdict"], "failing", "{h:#}");
    assert_eq!(h["checks"]["workers"], 0, "{h:#}");
    assert!(h["checks"]["due"].as_u64().is_some_and(|n| n >= 1), "{h:#}");
    let cause = h["checks"]["cause"].as_str().unwrap_or_default();
    assert!(cause.contains("no check worker"), "{h:#}");
    assert!(
        h["causes"][0]
            .as_str()
            .is_some_and(|c| c.starts_with("checks: no check worker")),
        "{h:#}"
    );
    stack.finish().await;
}

#[tokio::test]
async fn a_provider_answering_503_opens_its_breaker_in_the_verdict() {
    let stack = Stack::start("health-provider").await;
    stack
        .sandbox
        .state()
        .set_fault(FaultScope::Provider(Provider::Cashless), Fault::status(503))
        .expect("fault");
    let mut args = stack.worker_args(0.01);
    args.extend(["--breaker-failures", "2", "--breaker-pause", "60s"].map(String::from));
    let worker = stack.worker(&args).await;
    for i in 0..3 {
        let bill = stack.bill_paid_after(100);
        let (status, body) = stack
            .submit(&json!({"order_id": format!("health-503-{i}"), "provider": "cashless", "payment_id": bill}))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let h = health_until(
        &stack,
        "Cashless's breaker to open, its failures counted",
        |h| {
            let p = find(&h["providers"]["providers"], "provider", "cashless");
            p["breaker"] == "open" && p["failures"].as_u64().is_some_and(|n| n >= 2)
        },
    )
    .await;
    let p = find(&h["providers"]["providers"], "provider", "cashless");
    assert_eq!(p["verdict"], "failing", "{h:#}");
    assert!(
        p["cause"]
            .as_str()
            .is_some_and(|c| c.contains("circuit breaker is open")),
        "{h:#}"
    );
    assert_eq!(h["providers"]["verdict"], "failing", "{h:#}");
    assert!(
        p["reopens_in_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{h:#}"
    );
    let handcash = find(&h["providers"]["providers"], "provider", "handcash");
    assert_eq!(handcash["breaker"], "closed", "{h:#}");
    worker.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn a_refusing_webhook_target_shows_in_the_webhook_channel() {
    let stack = Stack::start("health-notify").await;
    let receiver = WebhookReceiver::start().await;
    let checker = stack.worker(&stack.worker_args(0.01)).await;
    let notifier = stack
        .worker(&stack.notifier_args_for("notify-webhook"))
        .await;
    for i in 0..3 {
        let bill = stack.bill_paid_after(50);
        let (status, body) = stack
            .submit(
                &json!({"order_id": format!("health-gone-{i}"), "provider": "cashless",
                "payment_id": bill, "notify": {"webhook_url": receiver.path("gone")}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let h = health_until(&stack, "three refused deliveries in the verdict", |h| {
        let w = find(&h["notifications"]["channels"], "channel", "webhook");
        w["dead"] == 3 && w["failures"].as_u64().is_some_and(|n| n >= 3)
    })
    .await;
    let w = find(&h["notifications"]["channels"], "channel", "webhook");
    assert_eq!(w["verdict"], "failing", "every delivery failed: {h:#}");
    assert_eq!(w["workers"], 1, "{h:#}");
    assert!(
        w["cause"]
            .as_str()
            .is_some_and(|c| c.contains("deliveries failed")),
        "{h:#}"
    );
    assert_eq!(
        find(&h["notifications"]["channels"], "channel", "email")["verdict"],
        "ok",
        "{h:#}"
    );
    assert_eq!(h["notifications"]["verdict"], "failing", "{h:#}");
    checker.stop().await;
    notifier.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn a_pending_order_whose_check_job_is_deleted_is_an_orphan() {
    let stack = Stack::start("health-orphan").await;
    let bill = stack.payment(NewPayment::new(Provider::Cashless).step(0, "NOT_PAID"));
    let (status, body) = stack
        .submit(&json!({"order_id": "health-lost", "provider": "cashless", "payment_id": bill}))
        .await;
    assert_eq!(status, 202, "{body}");
    let h = health(&stack).await;
    assert_eq!(h["orphans"]["orphans"], 0, "{h:#}");
    assert_eq!(
        h["orphans"]["scanned"], 2,
        "one job, one payment index entry: {h:#}"
    );

    // Someone deletes the order's scheduled check by hand: the record stays, nothing runs it.
    let client = redis::Client::open(stack.redis.as_str()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let removed: i64 = redis::cmd("ZREM")
        .arg(format!("{}:{{check-payment.0}}:due", stack.prefix))
        .arg("health-lost")
        .query_async(&mut conn)
        .await
        .expect("ZREM");
    assert_eq!(removed, 1);
    let h = health(&stack).await;
    assert_eq!(h["orphans"]["orphans"], 1, "{h:#}");
    assert_eq!(h["orphans"]["examples"], json!(["health-lost"]), "{h:#}");
    assert_eq!(h["orphans"]["verdict"], "failing", "{h:#}");
    assert_eq!(h["verdict"], "failing", "{h:#}");

    // The same verdict through the real binary's `admin health`.
    let (code, out, err) = bins::producer(&stack.redis, &stack.prefix, &["admin", "health"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("paywatch health: FAILING"), "{out}");
    assert!(out.contains("orphans: health-lost"), "{out}");
    assert!(out.contains("- orphans: 1 pending order(s)"), "{out}");
    let (code, out, err) =
        bins::producer(&stack.redis, &stack.prefix, &["admin", "health", "--json"]).await;
    assert_eq!(code, Some(0), "{err}");
    let json: Value = serde_json::from_str(&out).expect("admin health --json is JSON");
    assert_eq!(json["orphans"]["orphans"], 1, "{out}");
    stack.finish().await;
}

#[tokio::test]
async fn a_redis_that_may_evict_fails_the_verdict() {
    let server = RedisServer::start().await;
    let client = redis::Client::open(server.url().as_str()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET");
    let stack = Stack::start_on("health-redis", server.url(), 1).await;
    let h = health(&stack).await;
    let node = &h["redis"]["nodes"][0];
    assert_eq!(node["maxmemory_policy"], "allkeys-lru", "{h:#}");
    assert_eq!(node["verdict"], "failing", "{h:#}");
    assert_eq!(h["redis"]["verdict"], "failing", "{h:#}");
    assert!(
        h["redis"]["cause"]
            .as_str()
            .is_some_and(|c| c.contains("noeviction")),
        "{h:#}"
    );
    assert_eq!(h["verdict"], "failing", "{h:#}");

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET");
    let h = health(&stack).await;
    assert_eq!(h["redis"]["verdict"], "ok", "{h:#}");
    assert_eq!(h["redis"]["nodes"][0]["role"], "master", "{h:#}");
    stack.finish().await;
}
