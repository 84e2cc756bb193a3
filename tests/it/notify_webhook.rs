//! The signed webhook channel against a real HTTP receiver on 127.0.0.1 that checks every
//! signature with an independent implementation (the `standardwebhooks` crate, by Svix).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use paywatch_core::{Channel, Notification, OrderId, PaymentId, PaymentStatus, Provider, Secret};
use paywatch_tests::{free_port, wait_for};
use paywatch_worker::notify::DeliveryError;
use paywatch_worker::notify::webhook::{
    WebhookConfig, WebhookSender, event_body, webhook_id as derive_webhook_id,
};
use standardwebhooks::Webhook;

/// The Standard Webhooks spec's test secret: primary key.
const SECRET_A: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// A second key, for rotation.
const SECRET_B: &str = "whsec_cGF5d2F0Y2gtdGVzdC1yb3RhdGlvbi1r";
/// A key the sender never has: its verifier must reject everything.
const SECRET_UNRELATED: &str = "whsec_cGF5d2F0Y2gtdGVzdC11bnJlbGF0ZWQt";
/// What a shop puts in its webhook URL; must never show up in an error.
const URL_TOKEN: &str = "tok-9f2c41d7e5";
const URL_PATH_SECRET: &str = "hook-path-b71e";
const CODE: &str = "FOX-CODE-7731-SECRET";

/// What the receiver answers to one request.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Held before answering (for the timeout test).
    delay: Duration,
}

impl Reply {
    fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One request the receiver got, with each verifier's verdict.
#[derive(Debug, Clone)]
struct Delivery {
    uri: String,
    headers: HeaderMap,
    body: Bytes,
    /// `verified[i]`: whether verifier `i` accepted the signature.
    verified: Vec<bool>,
}

impl Delivery {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .expect("ASCII header")
    }
}

struct ReceiverState {
    verifiers: Vec<Webhook>,
    script: Mutex<VecDeque<Reply>>,
    deliveries: Mutex<Vec<Delivery>>,
}

/// A real HTTP server on 127.0.0.1: answers from its script (then 204), verifies every
/// request with the `standardwebhooks` crate and records it.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    async fn start(verifier_secrets: &[&str], script: Vec<Reply>) -> Self {
        let verifiers = verifier_secrets
            .iter()
            .map(|s| Webhook::new(s).expect("verifier secret"))
            .collect();
        let state = Arc::new(ReceiverState {
            verifiers,
            script: Mutex::new(script.into()),
            deliveries: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Self {
            addr,
            state,
            server,
        }
    }

    /// A URL for this receiver with a token in both path and query, like shops use.
    fn url(&self) -> String {
        format!(
            "http://{}/{URL_PATH_SECRET}/paywatch?token={URL_TOKEN}",
            self.addr
        )
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().expect("lock").clone()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let verified = state
        .verifiers
        .iter()
        .map(|v| v.verify(&body, &headers).is_ok())
        .collect();
    state.deliveries.lock().expect("lock").push(Delivery {
        uri: uri.to_string(),
        headers,
        body,
        verified,
    });
    let reply = state
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or_else(|| Reply::status(204));
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response_headers = HeaderMap::new();
    for (name, value) in reply.headers {
        response_headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).expect("header value"),
        );
    }
    let status = StatusCode::from_u16(reply.status).expect("status");
    (status, response_headers, reply.body).into_response()
}

fn config(allow: &[&str]) -> WebhookConfig {
    let mut config = WebhookConfig::new(SECRET_A);
    config.allow_hosts = allow.iter().map(|h| h.to_string()).collect();
    config.schedule_scale = 0.001;
    config
}

fn sender(config: WebhookConfig) -> WebhookSender {
    WebhookSender::new(config).expect("valid webhook config")
}

fn notification(target: String, status: PaymentStatus) -> Notification {
    Notification {
        order_id: OrderId::new("order-7781").expect("order id"),
        status,
        channel: Channel::Webhook,
        target,
        provider: Provider::FoxReload,
        payment_id: PaymentId::new("fx-5521").expect("payment id"),
        raw_status: Some("completed".into()),
        detail: None,
        metadata: Some(
            paywatch_core::Metadata::from_json(r#"{"cart":"c-19","customer":42}"#).expect("json"),
        ),
        delivered_codes: vec![CODE.into()],
        occurred_at: Utc::now(),
        traceparent: None,
    }
}

/// Errors go to logs and dead letters: no key, URL token, URL path or code may appear.
#[track_caller]
fn assert_clean(err: &DeliveryError) {
    let texts = [err.to_string(), format!("{err:?}")];
    let forbidden = [
        SECRET_A,
        &SECRET_A["whsec_".len()..],
        &SECRET_B["whsec_".len()..],
        URL_TOKEN,
        URL_PATH_SECRET,
        CODE,
    ];
    for text in &texts {
        for needle in forbidden {
            assert!(!text.contains(needle), "{needle:?} leaked into {text:?}");
        }
    }
}

#[track_caller]
fn expect_permanent(result: Result<(), DeliveryError>) -> String {
    match result {
        Err(err @ DeliveryError::Permanent(_)) => {
            assert_clean(&err);
            let DeliveryError::Permanent(msg) = err else {
                unreachable!()
            };
            msg
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
}

#[track_caller]
fn expect_transient(result: Result<(), DeliveryError>) -> String {
    match result {
        Err(err @ DeliveryError::Transient(_)) => {
            assert_clean(&err);
            let DeliveryError::Transient(msg) = err else {
                unreachable!()
            };
            msg
        }
        other => panic!("expected Transient, got {other:?}"),
    }
}

async fn send(sender: &WebhookSender, n: &Notification, attempt: u32) -> Result<(), DeliveryError> {
    sender.send(n, &derive_webhook_id(n), attempt).await
}

#[tokio::test]
async fn delivers_a_signed_event_the_independent_verifier_accepts() {
    let receiver = Receiver::start(&[SECRET_A, SECRET_UNRELATED], vec![]).await;
    let sender = sender(config(&["127.0.0.1"]));
    let n = notification(receiver.url(), PaymentStatus::Paid);
    let before = Utc::now().timestamp();

    send(&sender, &n, 1).await.expect("delivered");

    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert_eq!(
        d.verified,
        [true, false],
        "key A verifies, an unrelated key does not"
    );
    assert_eq!(
        d.uri,
        format!("/{URL_PATH_SECRET}/paywatch?token={URL_TOKEN}")
    );
    assert_eq!(d.header("webhook-id"), derive_webhook_id(&n));
    assert!(d.header("webhook-id").starts_with("msg_"));
    let ts: i64 = d.header("webhook-timestamp").parse().expect("unix seconds");
    assert!((before..=Utc::now().timestamp()).contains(&ts), "{ts}");
    assert!(d.header("webhook-signature").starts_with("v1,"));
    assert_eq!(d.header("webhook-signature").split(' ').count(), 1);
    assert_eq!(d.header("content-type"), "application/json");
    assert!(d.header("user-agent").starts_with("paywatch-webhook/"));

    assert_eq!(&d.body[..], &event_body(&n).expect("body")[..]);
    let json: serde_json::Value = serde_json::from_slice(&d.body).expect("JSON body");
    assert_eq!(json["type"], "payment.paid");
    // No time in the body: the attempt's time is the webhook-timestamp header, and a
    // transition recorded again after a failover must send the same bytes.
    assert!(json.get("timestamp").is_none(), "{json}");
    let data = &json["data"];
    assert_eq!(data["order_id"], "order-7781");
    assert_eq!(data["status"], "paid");
    assert_eq!(data["provider"], "foxreload");
    assert_eq!(data["payment_id"], "fx-5521");
    assert_eq!(data["raw_status"], "completed");
    assert_eq!(
        data["metadata"],
        serde_json::json!({"cart": "c-19", "customer": 42})
    );
    assert_eq!(data["delivered_codes"], serde_json::json!([CODE]));
}

#[tokio::test]
async fn non_paid_events_carry_no_codes() {
    let receiver = Receiver::start(&[SECRET_A], vec![]).await;
    let sender = sender(config(&["127.0.0.1"]));
    let n = notification(receiver.url(), PaymentStatus::Cancelled);

    send(&sender, &n, 1).await.expect("delivered");

    let d = &receiver.deliveries()[0];
    assert_eq!(d.verified, [true]);
    let json: serde_json::Value = serde_json::from_slice(&d.body).expect("JSON body");
    assert_eq!(json["type"], "payment.cancelled");
    assert!(json["data"].get("delivered_codes").is_none(), "{json}");
}

#[tokio::test]
async fn rotated_keys_both_sign_so_either_verifier_accepts() {
    let receiver = Receiver::start(&[SECRET_A, SECRET_B, SECRET_UNRELATED], vec![]).await;
    let mut config = config(&["127.0.0.1"]);
    config.extra_secrets = vec![Secret::new(SECRET_B)];
    let sender = sender(config);
    let n = notification(receiver.url(), PaymentStatus::Paid);

    send(&sender, &n, 1).await.expect("delivered");

    let d = &receiver.deliveries()[0];
    assert_eq!(d.verified, [true, true, false]);
    let signatures: Vec<&str> = d.header("webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    assert!(signatures.iter().all(|s| s.starts_with("v1,")));
}

#[tokio::test]
async fn server_error_is_transient_and_the_retry_is_the_same_event() {
    let receiver = Receiver::start(
        &[SECRET_A],
        vec![Reply::status(500).body(format!("upstream broke at /{URL_PATH_SECRET}"))],
    )
    .await;
    let sender = sender(config(&["127.0.0.1"]));
    let n = notification(receiver.url(), PaymentStatus::Paid);

    let msg = expect_transient(send(&sender, &n, 1).await);
    assert!(
        msg.contains("500") && msg.contains("upstream broke"),
        "{msg}"
    );
    let wait = sender.retry_delay(1).expect("a retry is scheduled");
    assert!(
        wait <= Duration::from_millis(6),
        "5 s scaled by 0.001: {wait:?}"
    );

    send(&sender, &n, 2).await.expect("the retry is delivered");

    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries.iter().all(|d| d.verified == [true]));
    assert_eq!(
        deliveries[0].header("webhook-id"),
        deliveries[1].header("webhook-id")
    );
    assert_eq!(deliveries[0].body, deliveries[1].body);
}

#[tokio::test]
async fn too_many_requests_with_retry_after_seconds_asks_to_wait() {
    let receiver = Receiver::start(
        &[SECRET_A],
        vec![Reply::status(429).header("retry-after", "7")],
    )
    .await;
    let sender = sender(config(&["127.0.0.1"]));
    let n = notification(receiver.url(), PaymentStatus::Paid);

    match send(&sender, &n, 1).await {
        Err(err @ DeliveryError::RetryAfter { .. }) => {
            assert_clean(&err);
            let DeliveryError::RetryAfter { after, reason } = err else {
                unreachable!()
            };
            assert_eq!(after, Duration::from_secs(7));
            assert!(reason.contains("429"), "{reason}");
        }
        other => panic!("expected RetryAfter, got {other:?}"),
    }
}

#[tokio::test]
async fn unavailable_with_retry_after_date_asks_to_wait_until_then() {
    let at = Utc::now() + chrono::Duration::seconds(120);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let receiver = Receiver::start(
        &[SECRET_A],
        vec![Reply::status(503).header("retry-after", date)],
    )
    .await;
    let sender = sender(config(&["127.0.0.1"]));
    let n = notification(receiver.url(), PaymentStatus::Paid);

    match send(&sender, &n, 1).await {
        Err(DeliveryError::RetryAfter { after, .. }) => {
            assert!((115..=120).contains(&after.as_secs()), "{after:?}");
        }
        other => panic!("expected RetryAfter, got {other:?}"),
    }
}

#[tokio::test]
async fn gone_is_permanent() {
    let receiver = Receiver::start(&[SECRET_A], vec![Reply::status(410)]).await;
    let sender = sender(config(&["127.0.0.1"]));
    let n = notification(receiver.url(), PaymentStatus::Paid);

    let msg = expect_permanent(send(&sender, &n, 1).await);
    assert_eq!(msg, "endpoint answered 410 Gone; no more retries");
}

#[tokio::test]
async fn other_client_errors_are_permanent_with_a_redacted_snippet() {
    // A receiver that echoes everything back: URL, signing key, the codes it was sent.
    let receiver_body = format!(
        "invalid request to /{URL_PATH_SECRET}/paywatch?token={URL_TOKEN} signed with \
         {SECRET_A}; codes {CODE}"
    );
    let receiver = Receiver::start(&[SECRET_A], vec![Reply::status(400).body(receiver_body)]).await;
    let sender = sender(config(&["127.0.0.1"]));
    let n = notification(receiver.url(), PaymentStatus::Paid);

    let msg = expect_permanent(send(&sender, &n, 1).await);
    assert!(
        msg.contains("400") && msg.contains("invalid request"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("http://{}/…", receiver.addr)),
        "{msg}"
    );
    assert_eq!(receiver.deliveries().len(), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let receiver = Receiver::start(&[SECRET_A], vec![]).await;
    let elsewhere = format!("http://{}/elsewhere", receiver.addr);
    receiver
        .state
        .script
        .lock()
        .expect("lock")
        .push_back(Reply::status(307).header("location", elsewhere));
    let sender = sender(config(&["127.0.0.1"]));
    let n = notification(receiver.url(), PaymentStatus::Paid);

    let msg = expect_permanent(send(&sender, &n, 1).await);
    assert!(msg.contains("307") && msg.contains("redirect"), "{msg}");
    assert_eq!(receiver.deliveries().len(), 1, "the redirect was followed");
}

#[tokio::test]
async fn a_slow_receiver_times_out_as_transient() {
    let receiver = Receiver::start(
        &[SECRET_A],
        vec![Reply::status(200).delay(Duration::from_secs(5))],
    )
    .await;
    let mut config = config(&["127.0.0.1"]);
    config.timeout = Duration::from_millis(300);
    let sender = sender(config);
    let n = notification(receiver.url(), PaymentStatus::Paid);

    let started = Instant::now();
    let msg = expect_transient(send(&sender, &n, 1).await);
    let elapsed = started.elapsed();
    assert!(msg.contains("did not answer within 300ms"), "{msg}");
    assert!(
        (Duration::from_millis(250)..Duration::from_secs(3)).contains(&elapsed),
        "{elapsed:?}"
    );
    // The request did arrive: this was a slow answer, not a refused connection.
    wait_for(
        "the receiver to record the request",
        Duration::from_secs(2),
        || {
            let n = receiver.deliveries().len();
            async move { (n == 1).then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let port = free_port();
    let sender = sender(config(&["127.0.0.1"]));
    let n = notification(
        format!("http://127.0.0.1:{port}/{URL_PATH_SECRET}?token={URL_TOKEN}"),
        PaymentStatus::Paid,
    );

    let msg = expect_transient(send(&sender, &n, 1).await);
    assert!(msg.contains("could not connect"), "{msg}");
}

#[tokio::test]
async fn loopback_is_refused_unless_allow_listed() {
    let receiver = Receiver::start(&[SECRET_A], vec![]).await;
    let strict = sender(config(&[]));
    let port = receiver.addr.port();
    for target in [
        receiver.url(),
        format!("http://[::ffff:127.0.0.1]:{port}/{URL_PATH_SECRET}?token={URL_TOKEN}"),
        format!("http://[::1]:{port}/{URL_PATH_SECRET}?token={URL_TOKEN}"),
        format!("http://0x7f.1:{port}/{URL_PATH_SECRET}?token={URL_TOKEN}"),
    ] {
        let n = notification(target, PaymentStatus::Paid);
        let msg = expect_permanent(send(&strict, &n, 1).await);
        assert!(msg.contains("SSRF") && msg.contains("loopback"), "{msg}");
    }
    // Allow-listing 127.0.0.1 does not open up ::1.
    let n = notification(
        format!("http://[::1]:{port}/{URL_PATH_SECRET}?token={URL_TOKEN}"),
        PaymentStatus::Paid,
    );
    expect_permanent(send(&sender(config(&["127.0.0.1"])), &n, 1).await);
    assert!(
        receiver.deliveries().is_empty(),
        "a refused target was contacted"
    );
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_resolution() {
    let receiver = Receiver::start(&[SECRET_A], vec![]).await;
    let target = format!(
        "http://localhost:{}/{URL_PATH_SECRET}?token={URL_TOKEN}",
        receiver.addr.port()
    );
    let n = notification(target, PaymentStatus::Paid);

    let msg = expect_permanent(send(&sender(config(&[])), &n, 1).await);
    assert!(
        msg.contains("SSRF") && msg.contains("localhost") && msg.contains("loopback"),
        "{msg}"
    );
    assert!(
        receiver.deliveries().is_empty(),
        "a refused target was contacted"
    );

    // The same name, allow-listed, goes through the guarded resolver and is delivered.
    send(&sender(config(&["localhost"])), &n, 1)
        .await
        .expect("allow-listed name delivered");
    assert_eq!(receiver.deliveries().len(), 1);
    assert_eq!(receiver.deliveries()[0].verified, [true]);
}

#[tokio::test]
async fn credentials_in_the_url_and_other_schemes_are_refused() {
    let receiver = Receiver::start(&[SECRET_A], vec![]).await;
    let sender = sender(config(&["127.0.0.1"]));
    let cases = [
        (
            format!("http://shop:{URL_TOKEN}@{}/hook", receiver.addr),
            "credentials",
        ),
        (
            format!(
                "ftp://{}/{URL_PATH_SECRET}?token={URL_TOKEN}",
                receiver.addr
            ),
            "must start with http:// or https://",
        ),
    ];
    for (target, expected) in cases {
        let n = notification(target, PaymentStatus::Paid);
        let msg = expect_permanent(send(&sender, &n, 1).await);
        assert!(msg.contains(expected), "{msg}");
    }
    assert!(receiver.deliveries().is_empty());
}

#[tokio::test]
async fn a_bad_signing_secret_is_rejected_at_construction() {
    let mut config = config(&[]);
    config.extra_secrets = vec![Secret::new("whsec_***not-base64***")];
    let err = WebhookSender::new(config).expect_err("bad secret accepted");
    let text = err.to_string();
    assert!(
        text.contains("extra_secrets[0]") && text.contains("base64"),
        "{text}"
    );
    assert!(!text.contains("not-base64"), "{text}");
}
