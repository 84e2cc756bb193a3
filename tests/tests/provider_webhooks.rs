//! Provider webhooks are a fast path: they move an order's scheduled check to now, and the
//! check (not the webhook) decides the status.

use std::time::{Duration, Instant};

use paywatch_core::PaymentStatus;
use paywatch_sandbox::{NewPayment, Provider};
use paywatch_tests::stack::Stack;
use serde_json::json;

/// Policies that would not look again for a minute: only a webhook can make detection fast.
fn slow_policies() -> String {
    let slow = json!({"first_delay": "60s", "multiplier": 1.5, "max_delay": "60s",
        "fast_window": "10m", "grace_interval": "5m", "deadline": "1h"});
    json!({"cashless": slow, "handcash": slow}).to_string()
}

#[tokio::test]
async fn a_provider_webhook_triggers_an_immediate_verified_check() {
    let stack = Stack::start("webhook-fast-path").await;
    let mut args = stack.worker_args(1.0);
    args.extend(["--policies".to_string(), slow_policies()]);
    let worker = stack.worker(&args).await;
    let bill = stack.bill_paid_after(500);
    let request = stack.payment(
        NewPayment::new(Provider::HandCash)
            .step(0, "pending")
            .step(500, "paid"),
    );
    let started = Instant::now();
    for (id, provider, payment) in [("c1", "cashless", &bill), ("h1", "handcash", &request)] {
        let (code, _) = stack
            .submit(&json!({"order_id": id, "provider": provider, "payment_id": payment}))
            .await;
        assert_eq!(code, 202);
    }
    // The sandbox POSTs each provider's webhook to the producer when the payment is paid.
    for id in ["c1", "h1"] {
        let view = stack
            .wait_status(id, PaymentStatus::Paid, Duration::from_secs(15))
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "far sooner than the 60 s poll"
        );
        // The first check (at once, unpaid) and the webhook's; never the 60 s poll.
        let checks = view["checks"].as_u64().unwrap_or(0);
        assert!((1..=2).contains(&checks), "{view}");
    }
    worker.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn webhooks_that_cannot_be_trusted_or_read_are_refused() {
    let stack = Stack::start("webhook-refused").await;
    let post = |path: &'static str, body: serde_json::Value| {
        let stack = &stack;
        async move {
            stack
                .http
                .post(format!("{}{path}", stack.api))
                .json(&body)
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }
    };
    let forged = json!({"appSecret": "guess", "paymentRequestId": "abc", "transactionId": "t"});
    assert_eq!(
        post("/webhooks/handcash", forged).await,
        401,
        "wrong appSecret"
    );
    assert_eq!(
        post("/webhooks/cashless", json!({"nope": 1})).await,
        400,
        "unreadable body"
    );
    let unknown = json!({"bill": {"id": "no-such-bill", "status": "FULLY_PAID"}});
    assert_eq!(
        post("/webhooks/cashless", unknown).await,
        200,
        "acknowledged, nothing to do"
    );
    stack.finish().await;
}
