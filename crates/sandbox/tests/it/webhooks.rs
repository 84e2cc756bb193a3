//! Webhook emission to a tiny receiver on a random port.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{create, fetch, start_with, wait_for};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use paywatch_sandbox::{Provider, SandboxConfig, SandboxHandle};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(5);

#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<(String, Value, Instant)>>>,
    /// How many requests to answer 500 before acknowledging.
    fail_first: Arc<AtomicU32>,
    attempts: Arc<AtomicU32>,
}

impl Receiver {
    fn received(&self) -> Vec<(String, Value, Instant)> {
        self.received.lock().expect("receiver lock").clone()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(provider): Path<String>,
    Json(body): Json<Value>,
) -> StatusCode {
    receiver.attempts.fetch_add(1, Ordering::SeqCst);
    let failing = receiver
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    receiver
        .received
        .lock()
        .expect("receiver lock")
        .push((provider, body, Instant::now()));
    StatusCode::OK
}

/// Starts a receiver and a sandbox (time scale 0.01) that sends its webhooks there.
async fn setup(fail_first: u32) -> (SandboxHandle, Receiver, tokio::task::JoinHandle<()>) {
    let receiver = Receiver::default();
    receiver.fail_first.store(fail_first, Ordering::SeqCst);
    let app = Router::new()
        .route("/webhooks/{provider}", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("receiver addr");
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("receiver serves");
    });
    let sandbox = start_with(SandboxConfig {
        webhook_target: Some(format!("http://{addr}/")),
        time_scale: 0.01,
        ..SandboxConfig::default()
    })
    .await;
    (sandbox, receiver, server)
}

async fn first_webhook(receiver: &Receiver) -> (String, Value, Instant) {
    wait_for("a webhook", DEADLINE, || async {
        receiver.received().into_iter().next()
    })
    .await
}

#[tokio::test]
async fn cashless_webhook_posts_the_paid_bill() {
    let (sandbox, receiver, _server) = setup(0).await;
    let created_at = Instant::now();
    let id = create(
        &sandbox,
        json!({
            "provider": "cashless", "reference": "INV-9",
            "timeline": [{"after_ms": 0, "status": "NOT_PAID"}, {"after_ms": 20_000, "status": "FULLY_PAID"}],
        }),
    )
    .await;
    let (provider, body, arrived) = first_webhook(&receiver).await;
    assert_eq!(provider, "cashless");
    assert!(
        arrived - created_at >= Duration::from_millis(200),
        "webhook came before the bill was paid"
    );
    let bill = &body["bill"];
    assert_eq!(bill["id"], json!(id));
    assert_eq!(bill["status"], "FULLY_PAID");
    assert_eq!(bill["reference"], "INV-9");
    // The webhook describes the same bill the API serves.
    assert_eq!(bill, &fetch(&sandbox, "cashless", &id).await);

    let deliveries = sandbox.state().webhook_deliveries();
    assert_eq!(deliveries.len(), 1);
    assert!(deliveries[0].delivered);
    assert_eq!(deliveries[0].attempts, 1);
    assert!(
        deliveries[0].url.ends_with("/webhooks/cashless")
            && !deliveries[0].url.contains("//webhooks")
    );
}

#[tokio::test]
async fn handcash_webhook_carries_secret_and_transaction() {
    let (sandbox, receiver, _server) = setup(0).await;
    let id = create(
        &sandbox,
        json!({"provider": "handcash", "reference": "order-1", "timeline": [{"after_ms": 1_000, "status": "paid"}]}),
    )
    .await;
    let (provider, body, _) = first_webhook(&receiver).await;
    assert_eq!(provider, "handcash");
    let served = fetch(&sandbox, "handcash", &id).await;
    assert_eq!(
        body,
        json!({
            "appSecret": "sandbox-handcash-secret",
            "paymentRequestId": id,
            "transactionId": served["transactionId"],
            "customParameters": {"reference": "order-1"},
            "userData": {},
        })
    );
    assert_eq!(served["transactionId"].as_str().map(str::len), Some(64));
}

#[tokio::test]
async fn unacknowledged_webhooks_are_retried() {
    let (sandbox, receiver, _server) = setup(2).await;
    let id = create(
        &sandbox,
        json!({"provider": "cashless", "timeline": [{"after_ms": 0, "status": "FULLY_PAID"}]}),
    )
    .await;
    let (_, body, _) = first_webhook(&receiver).await;
    assert_eq!(body["bill"]["id"], json!(id));
    assert_eq!(receiver.attempts.load(Ordering::SeqCst), 3);
    let delivery = wait_for("the delivery to be recorded", DEADLINE, || async {
        sandbox
            .state()
            .webhook_deliveries()
            .into_iter()
            .find(|d| d.delivered)
    })
    .await;
    assert_eq!(delivery.attempts, 3);
    assert_eq!(delivery.last_status, Some(200));
    assert_eq!(delivery.provider, Provider::Cashless);
}

#[tokio::test]
async fn only_paid_payments_that_want_webhooks_get_them() {
    let (sandbox, receiver, _server) = setup(0).await;
    let quiet = [
        json!({"provider": "cashless", "webhook": false, "timeline": [{"after_ms": 0, "status": "FULLY_PAID"}]}),
        json!({"provider": "cashless", "timeline": [{"after_ms": 0, "status": "PARTIALLY_PAID"}]}),
        json!({"provider": "handcash", "timeline": [{"after_ms": 0, "status": "expired"}]}),
        json!({"provider": "miraclecash", "webhook": true, "timeline": [{"after_ms": 0, "status": "successful"}]}),
        json!({"provider": "foxreload", "webhook": true, "timeline": [{"after_ms": 0, "status": "completed"}]}),
    ];
    for body in quiet {
        create(&sandbox, body).await;
    }
    // Due after all the others, so once it is in, any webhook they would have sent is in too.
    let marker = create(
        &sandbox,
        json!({"provider": "cashless", "timeline": [{"after_ms": 5_000, "status": "FULLY_PAID"}]}),
    )
    .await;
    let (_, body, _) = first_webhook(&receiver).await;
    assert_eq!(body["bill"]["id"], json!(marker));
    let deliveries = sandbox.state().webhook_deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(receiver.received().len(), 1);
}
