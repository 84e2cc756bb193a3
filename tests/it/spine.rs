//! The spine end to end: order → check-payment → terminal → notifier queues, for all four
//! providers, over real sockets (producer API, sandbox providers) and a real Redis.

use std::time::Duration;

use chrono::{DateTime, Utc};
use paywatch_core::{PaymentStatus, queues};
use paywatch_queue::JobId;
use paywatch_sandbox::{Fault, NewPayment, Provider};
use paywatch_tests::stack::Stack;
use paywatch_tests::wait_for;
use serde_json::{Value, json};

fn order(id: &str, provider: &str, payment_id: &str) -> Value {
    json!({
        "order_id": id,
        "provider": provider,
        "payment_id": payment_id,
        "notify": {
            "email": "buyer@example.com",
            "telegram_chat_id": 4242,
            "webhook_url": "https://shop.example/hooks/paywatch?token=s3cret"
        },
        "metadata": {"cart": id}
    })
}

fn delay_ms(entry: &Value) -> Option<u64> {
    entry["decision"]
        .as_str()?
        .strip_prefix("check again in ")?
        .strip_suffix("ms")?
        .parse()
        .ok()
}

fn at(entry: &Value) -> DateTime<Utc> {
    entry["at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .expect("history entry time")
}

/// History oldest first.
fn history(view: &Value) -> Vec<Value> {
    let mut h = view["history"].as_array().cloned().unwrap_or_default();
    h.reverse();
    h
}

/// A sandbox payment's provider, its name in the order, its timeline (ms, raw status, extra
/// fields) and the status paywatch must end with.
type Case = (
    Provider,
    &'static str,
    Vec<(u64, &'static str, Option<Value>)>,
    PaymentStatus,
);

#[tokio::test]
async fn every_terminal_status_of_every_provider() {
    let stack = Stack::start("spine-terminal").await;
    let cases: Vec<Case> = vec![
        (
            Provider::Cashless,
            "cashless",
            vec![(0, "NOT_PAID", None), (150, "FULLY_PAID", None)],
            PaymentStatus::Paid,
        ),
        (
            Provider::HandCash,
            "handcash",
            vec![(0, "pending", None), (150, "paid", None)],
            PaymentStatus::Paid,
        ),
        (
            Provider::HandCash,
            "handcash",
            vec![(0, "pending", None), (150, "expired", None)],
            PaymentStatus::Expired,
        ),
        (
            Provider::MiracleCash,
            "miraclecash",
            vec![(0, "pending", None), (150, "successful", None)],
            PaymentStatus::Paid,
        ),
        (
            Provider::MiracleCash,
            "miraclecash",
            vec![(0, "pending", None), (150, "unsuccessful", None)],
            PaymentStatus::Failed,
        ),
        (
            Provider::MiracleCash,
            "miraclecash",
            vec![(0, "pending", None), (150, "expired", None)],
            PaymentStatus::Expired,
        ),
        (
            Provider::MiracleCash,
            "miraclecash",
            vec![(0, "pending", None), (150, "cancelled", None)],
            PaymentStatus::Cancelled,
        ),
        (
            Provider::FoxReload,
            "foxreload",
            vec![
                (0, "active", None),
                (100, "paid", None),
                (200, "processing", None),
                (300, "completed", None),
            ],
            PaymentStatus::Paid,
        ),
        (
            Provider::FoxReload,
            "foxreload",
            vec![
                (0, "active", None),
                (
                    150,
                    "cancelled",
                    Some(json!({"cancelReason": "payment_expiration"})),
                ),
            ],
            PaymentStatus::Expired,
        ),
        (
            Provider::FoxReload,
            "foxreload",
            vec![
                (0, "active", None),
                (
                    150,
                    "cancelled",
                    Some(json!({"cancelReason": "out_of_stock"})),
                ),
            ],
            PaymentStatus::Cancelled,
        ),
        (
            Provider::FoxReload,
            "foxreload",
            vec![(0, "active", None), (150, "failed", None)],
            PaymentStatus::Failed,
        ),
    ];
    let worker = stack.worker(&stack.worker_args(0.01)).await;
    let mut expected = Vec::new();
    for (i, (provider, name, steps, status)) in cases.into_iter().enumerate() {
        let mut payment = NewPayment::new(provider);
        for (after, raw, fields) in steps {
            payment = match fields.and_then(|f| f.as_object().cloned()) {
                Some(fields) => payment.step_with_fields(after, raw, fields),
                None => payment.step(after, raw),
            };
        }
        let created = stack
            .sandbox
            .state()
            .create_payment(payment)
            .expect("sandbox payment");
        let order_id = format!("order-{i}");
        let (code, _) = stack.submit(&order(&order_id, name, &created.id)).await;
        assert_eq!(code, 202, "{order_id} accepted");
        expected.push((order_id, status));
    }
    for (order_id, status) in &expected {
        let view = stack
            .wait_status(order_id, *status, Duration::from_secs(20))
            .await;
        assert!(view["checks"].as_u64().unwrap_or(0) >= 1, "{view}");
        let notified = wait_for("notifications enqueued", Duration::from_secs(5), || async {
            stack
                .order(order_id)
                .await
                .filter(|v| v["notified"] == json!(true))
        })
        .await;
        let text = notified.to_string();
        assert!(
            !text.contains("s3cret"),
            "webhook token leaked in the view: {text}"
        );
        assert!(
            !text.contains("FOX-"),
            "delivered codes leaked in the view: {text}"
        );
    }
    // One job per (order, status, channel), on each notifier queue.
    for queue in [
        queues::NOTIFY_EMAIL,
        queues::NOTIFY_TELEGRAM,
        queues::NOTIFY_WEBHOOK,
    ] {
        let q = stack.queue(queue).await;
        assert_eq!(
            q.stats().await.expect("stats").total,
            expected.len() as u64,
            "{queue}"
        );
        let channel = queue.trim_start_matches("notify-");
        for (order_id, status) in &expected {
            let id = JobId::new(format!("{order_id}:{status}:{channel}")).expect("id");
            let payload = q
                .payload(&id)
                .await
                .expect("payload")
                .expect("notification job exists");
            let job: Value = serde_json::from_str(&payload).expect("json");
            assert_eq!(job["status"], json!(status.to_string()));
        }
    }
    // The FoxReload codes travel to the notifiers (and only there).
    let email = stack.queue(queues::NOTIFY_EMAIL).await;
    let paid = email
        .payload(&JobId::new("order-7:paid:email").expect("id"))
        .await
        .expect("payload")
        .expect("foxreload paid email");
    assert!(paid.contains("FOX-"), "codes in the email job: {paid}");
    // The check jobs settle right after their fan-out.
    wait_for(
        "every check job to finish",
        Duration::from_secs(10),
        || async { (stack.stats(queues::CHECK_PAYMENT).await.total == 0).then_some(()) },
    )
    .await;
    worker.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn partial_payment_resets_to_fast_polling() {
    let stack = Stack::start("spine-partial").await;
    let created = stack
        .sandbox
        .state()
        .create_payment(
            NewPayment::new(Provider::Cashless)
                .step(0, "NOT_PAID")
                .step(700, "PARTIALLY_PAID")
                .step(1600, "FULLY_PAID"),
        )
        .expect("payment");
    let worker = stack.worker(&stack.worker_args(0.01)).await;
    stack
        .submit(&order("partial", "cashless", &created.id))
        .await;
    let view = stack
        .wait_status("partial", PaymentStatus::Paid, Duration::from_secs(20))
        .await;
    worker.stop().await;
    let h = history(&view);
    let first_partial = h
        .iter()
        .position(|e| e["raw_status"] == json!("PARTIALLY_PAID"))
        .expect("a PARTIALLY_PAID observation");
    // The history keeps changes, each with the number of checks answered by then.
    let checks_before = h[first_partial]["check"].as_u64().expect("check number") - 1;
    // 700 ms of NOT_PAID at 30 ms growing ×1.5 is about 6 checks; without backoff it would be ~23.
    assert!(
        (3..=12).contains(&checks_before),
        "several NOT_PAID checks first, with growing delays: {checks_before} in {h:?}"
    );
    let after = delay_ms(&h[first_partial]).expect("delay after partial");
    // Cashless: 3 s first delay × 0.01 = 30 ms, ±10% jitter.
    assert!(
        after <= 33,
        "partial payment resets to the first delay: {after} ms"
    );
    stack.finish().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let stack = Stack::start("spine-429").await;
    let created = stack
        .sandbox
        .state()
        .create_payment(
            NewPayment::new(Provider::MiracleCash)
                .step(0, "pending")
                .step(200, "successful")
                .fault(Fault::rate_limited(1).times(1)),
        )
        .expect("payment");
    let worker = stack.worker(&stack.worker_args(0.01)).await;
    stack
        .submit(&order("limited", "miraclecash", &created.id))
        .await;
    let view = stack
        .wait_status("limited", PaymentStatus::Paid, Duration::from_secs(20))
        .await;
    worker.stop().await;
    let h = history(&view);
    let limited = h
        .iter()
        .position(|e| {
            e["error"]
                .as_str()
                .is_some_and(|s| s.starts_with("rate_limited"))
        })
        .expect("a rate-limited check");
    assert!(
        delay_ms(&h[limited]).expect("delay") >= 1000,
        "{:?}",
        h[limited]
    );
    let gap = at(&h[limited + 1]) - at(&h[limited]);
    assert!(
        gap >= chrono::Duration::milliseconds(1000),
        "next check only {gap} later"
    );
    stack.finish().await;
}

#[tokio::test]
async fn order_creation_is_idempotent_and_conflicts_are_refused() {
    let stack = Stack::start("spine-idempotent").await;
    let body = order("same", "cashless", "bill-1");
    let (code, first) = stack.submit(&body).await;
    assert_eq!((code, first["created"].clone()), (202, json!(true)));
    // Without durable acknowledgements only the primary had it, and the receipt says so.
    assert_eq!(
        first["receipt"],
        json!({"replicas_acknowledged": null, "primary_fsynced": null})
    );
    let (code, again) = stack.submit(&body).await;
    assert_eq!((code, again["created"].clone()), (200, json!(false)));
    let mut other = body.clone();
    other["notify"]["email"] = json!("someone.else@example.com");
    let (code, conflict) = stack.submit(&other).await;
    assert_eq!((code, conflict["field"].clone()), (409, json!("order_id")));
    let stats = stack.stats(queues::CHECK_PAYMENT).await;
    assert_eq!((stats.total, stats.ready), (1, 1), "one check job");

    let (code, bad) = stack
        .submit(&json!({"order_id": "x", "provider": "paypal", "payment_id": "p"}))
        .await;
    assert_eq!((code, bad["field"].clone()), (422, json!("provider")));
    let raw = stack
        .http
        .post(format!("{}/v1/orders", stack.api))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(raw.status().as_u16(), 400);
    assert!(
        stack.order("x").await.is_none(),
        "nothing stored for a rejected order"
    );
    stack.finish().await;
}

#[tokio::test]
async fn an_order_is_unresolved_at_the_deadline() {
    let stack = Stack::start("spine-deadline").await;
    let created = stack
        .sandbox
        .state()
        .create_payment(NewPayment::new(Provider::Cashless).step(0, "NOT_PAID"))
        .expect("payment");
    let mut args = stack.worker_args(1.0);
    args.extend([
        "--policies".to_string(),
        json!({"cashless": {"first_delay": "20ms", "multiplier": 1.5, "max_delay": "100ms",
            "fast_window": "300ms", "grace_interval": "200ms", "deadline": "1s"}})
        .to_string(),
    ]);
    let worker = stack.worker(&args).await;
    stack.submit(&order("slow", "cashless", &created.id)).await;
    let view = stack
        .wait_status("slow", PaymentStatus::Unresolved, Duration::from_secs(10))
        .await;
    worker.stop().await;
    let h = history(&view);
    assert!(
        h.last()
            .and_then(|e| e["decision"].as_str())
            .is_some_and(|d| d.contains("deadline")),
        "{h:?}"
    );
    let created_at: DateTime<Utc> = view["created_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("created_at");
    let terminal_at: DateTime<Utc> = view["terminal_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("terminal_at");
    assert!(
        terminal_at - created_at >= chrono::Duration::milliseconds(950),
        "not before the deadline"
    );
    // Unresolved is not a customer outcome: nothing goes to the customer channels.
    assert_eq!(stack.stats(queues::NOTIFY_EMAIL).await.total, 0);
    stack.finish().await;
}

#[tokio::test]
async fn rejected_credentials_dead_letter_with_a_clear_reason() {
    let stack = Stack::start("spine-401").await;
    let created = stack
        .sandbox
        .state()
        .create_payment(NewPayment::new(Provider::Cashless).step(0, "NOT_PAID"))
        .expect("payment");
    let mut args = stack.worker_args(0.01);
    args.extend(
        [
            "--cashless-base-url",
            &format!("{}/cashless", stack.sandbox.base_url()),
            "--cashless-api-key",
            "wrong-key-123",
            "--cashless-api-secret",
            "wrong-secret-456",
        ]
        .map(String::from),
    );
    let worker = stack.worker(&args).await;
    stack
        .submit(&order("denied", "cashless", &created.id))
        .await;
    let dead = wait_for(
        "the check to be dead-lettered",
        Duration::from_secs(10),
        || async { Some(stack.dead_checks().await).filter(|d| !d.is_empty()) },
    )
    .await;
    worker.stop().await;
    assert_eq!(dead[0].id, "denied");
    let reason = dead[0].error.to_lowercase();
    assert!(
        reason.contains("cashless") && reason.contains("credentials"),
        "{reason}"
    );
    assert!(
        !reason.contains("wrong-key-123") && !reason.contains("wrong-secret-456"),
        "{reason}"
    );
    assert_eq!(
        dead[0].attempts, 1,
        "no retries against rejected credentials"
    );
    // A given-up order says so, and why, instead of reading as a live pending one.
    let view = stack.order("denied").await.expect("view");
    assert_eq!(view["status"], json!("pending"));
    assert_eq!(
        (view["phase"].clone(), view["watching"].clone()),
        (json!("stopped"), json!(false)),
        "{view}"
    );
    assert!(
        view["stopped"]["reason"]
            .as_str()
            .is_some_and(|e| e.contains("credentials") && !e.contains("wrong-key-123")),
        "{view}"
    );
    assert_eq!(view["next_check_at"], Value::Null);
    // Submitting it again is answered, not a 500: it exists, and paywatch stopped watching it.
    let (code, again) = stack
        .submit(&order("denied", "cashless", &created.id))
        .await;
    assert_eq!(
        (code, again["created"].clone(), again["phase"].clone()),
        (200, json!(false), json!("stopped")),
        "{again}"
    );
    stack.finish().await;
}

#[tokio::test]
async fn a_worker_crash_mid_flight_loses_nothing() {
    let stack = Stack::start("spine-crash").await;
    let providers = [
        (Provider::Cashless, "cashless", "NOT_PAID", "FULLY_PAID"),
        (Provider::HandCash, "handcash", "pending", "paid"),
        (
            Provider::MiracleCash,
            "miraclecash",
            "pending",
            "successful",
        ),
        (Provider::FoxReload, "foxreload", "active", "completed"),
    ];
    for i in 0..20u64 {
        let (provider, name, open, done) = providers[i as usize % 4];
        let created = stack
            .sandbox
            .state()
            .create_payment(
                NewPayment::new(provider)
                    .step(0, open)
                    .step(1500 + 50 * i, done),
            )
            .expect("payment");
        stack
            .submit(&order(&format!("o{i}"), name, &created.id))
            .await;
    }
    let first = stack.worker(&stack.worker_args(0.01)).await;
    wait_for(
        "checks to be under way",
        Duration::from_secs(10),
        || async {
            let view = stack.order("o19").await?;
            (view["checks"].as_u64()? >= 2).then_some(())
        },
    )
    .await;
    first.crash();
    let second = stack.worker(&stack.worker_args(0.01)).await;
    for i in 0..20 {
        stack
            .wait_status(
                &format!("o{i}"),
                PaymentStatus::Paid,
                Duration::from_secs(30),
            )
            .await;
    }
    let emails = wait_for("every email job", Duration::from_secs(10), || async {
        let s = stack.stats(queues::NOTIFY_EMAIL).await;
        (s.total == 20).then_some(s)
    })
    .await;
    second.stop().await;
    assert_eq!(
        emails.total, 20,
        "one email job per order, none lost, none doubled"
    );
    assert!(stack.dead_checks().await.is_empty());
    stack.finish().await;
}
