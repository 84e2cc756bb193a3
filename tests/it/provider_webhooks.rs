//! Provider webhooks are a fast path: they move an order's scheduled check to now, and the
//! check (not the webhook) decides the status.

use std::time::Duration;

use paywatch_core::PaymentStatus;
use paywatch_sandbox::{NewPayment, Provider};
use paywatch_tests::stack::Stack;
use paywatch_tests::wait_for;
use serde_json::json;

/// Policies that would not look again for a minute: only a webhook can make detection fast.
fn slow_policies() -> String {
    let slow = json!({"first_delay": "60s", "multiplier": 1.5, "max_delay": "60s",
        "fast_window": "10m", "grace_interval": "5m", "deadline": "1h"});
    json!({"cashless": slow, "handcash": slow}).to_string()
}

/// When the sandbox marks the payments paid: the first check (due at once) comes long before.
const PAID_AFTER_MS: u64 = 3_000;

#[tokio::test]
async fn a_provider_webhook_triggers_an_immediate_verified_check() {
    let stack = Stack::start("webhook-fast-path").await;
    let mut args = stack.worker_args(1.0);
    args.extend(["--policies".to_string(), slow_policies()]);
    let worker = stack.worker(&args).await;
    let orders = [
        (
            "c1",
            "cashless",
            Provider::Cashless,
            stack.bill_paid_after(PAID_AFTER_MS),
        ),
        (
            "h1",
            "handcash",
            Provider::HandCash,
            stack.payment(
                NewPayment::new(Provider::HandCash)
                    .step(0, "pending")
                    .step(PAID_AFTER_MS, "paid"),
            ),
        ),
    ];
    for (id, provider, _, payment) in &orders {
        let (code, _) = stack
            .submit(&json!({"order_id": id, "provider": provider, "payment_id": payment}))
            .await;
        assert_eq!(code, 202);
    }
    // The first check runs at once and finds the payment open; the next poll is a minute away.
    for (id, ..) in &orders {
        let view = wait_for("the first check", Duration::from_secs(10), || async {
            stack
                .order(id)
                .await
                .filter(|v| v["checks"].as_u64().unwrap_or(0) >= 1)
        })
        .await;
        assert_eq!(
            view["status"], "pending",
            "the first check must see the payment open (it is paid after {PAID_AFTER_MS} ms): {view}"
        );
    }
    // The sandbox POSTs each provider's webhook to the producer when the payment is paid. Only
    // that can bring a check before the 60 s poll, so reaching `paid` within the deadline, in
    // exactly two checks, is the proof.
    for (id, _, provider, payment) in &orders {
        let view = stack
            .wait_status(id, PaymentStatus::Paid, Duration::from_secs(30))
            .await;
        assert_eq!(
            view["checks"], 2,
            "the first check and the webhook's: {view}"
        );
        wait_for(
            "the webhook to be acknowledged",
            Duration::from_secs(10),
            || {
                let delivered = stack
                    .sandbox
                    .state()
                    .webhook_deliveries()
                    .iter()
                    .any(|d| d.provider == *provider && d.id == *payment && d.delivered);
                async move { delivered.then_some(()) }
            },
        )
        .await;
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
