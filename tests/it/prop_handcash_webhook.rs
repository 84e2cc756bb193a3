//! Property tests of the HandCash webhook check, through the producer's public webhook router on
//! a real socket: any body whose `appSecret` is not exactly ours is refused (400 or 401, never
//! accepted, never a 5xx), and with our secret any `paymentRequestId` is handled or refused as
//! invalid.

use paywatch_core::Secret;
use paywatch_producer::Producer;
use paywatch_producer::webhooks::{WebhookState, router};
use paywatch_tests::{cleanup, redis_url, unique_prefix};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

const OURS: &str = "hc-app-secret-3c9f0e7d21";

struct Endpoint {
    url: String,
    prefix: String,
    http: reqwest::Client,
}

async fn start(secret: Option<&str>) -> Endpoint {
    let prefix = unique_prefix("prop-handcash");
    let producer = Producer::connect(&redis_url(), &prefix)
        .await
        .expect("producer");
    let app = router(WebhookState {
        producer,
        handcash_app_secret: secret.map(Secret::new),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/webhooks/handcash",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Endpoint {
        url,
        prefix,
        http: reqwest::Client::new(),
    }
}

impl Endpoint {
    async fn post(&self, body: Vec<u8>) -> u16 {
        self.http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the endpoint answers")
            .status()
            .as_u16()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A secret that is not ours: anything, or ours changed a little.
fn wrong_secret() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>()
            .prop_filter("not ours", |s| s != OURS)
            .prop_map(Value::String),
        (0..OURS.len(), any::<char>()).prop_filter_map("changed", |(i, c)| {
            let mut s: Vec<char> = OURS.chars().collect();
            s[i] = c;
            let s: String = s.into_iter().collect();
            (s != OURS).then_some(json!(s))
        }),
        Just(json!(format!("{OURS} "))),
        Just(json!(&OURS[..OURS.len() - 1])),
        Just(json!(OURS.to_uppercase())),
        Just(Value::Null),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!([OURS])),
        Just(json!({"value": OURS})),
    ]
}

fn payment_request_id() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-zA-Z0-9_-]{1,40}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        Just(Value::Null),
        any::<i64>().prop_map(|n| json!(n)),
    ]
}

fn run<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(Config::with_cases(cases));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

#[test]
fn anything_but_our_secret_is_refused() {
    let rt = runtime();
    let endpoint = rt.block_on(start(Some(OURS)));
    run(
        96,
        (
            wrong_secret(),
            payment_request_id(),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..128)),
        ),
        |(secret, id, raw)| {
            let body = match raw {
                Some(raw) => raw,
                None => serde_json::to_vec(&json!({"appSecret": secret, "paymentRequestId": id}))
                    .expect("json"),
            };
            let status = rt.block_on(endpoint.post(body));
            prop_assert!(status == 400 || status == 401, "answered {status}");
            Ok(())
        },
    );
    rt.block_on(cleanup(&redis_url(), &endpoint.prefix));
}

#[test]
fn our_secret_with_any_payment_id_is_handled_or_invalid() {
    let rt = runtime();
    let endpoint = rt.block_on(start(Some(OURS)));
    run(64, payment_request_id(), |id| {
        let body = serde_json::to_vec(
            &json!({"appSecret": OURS, "paymentRequestId": id, "transactionId": "tx"}),
        )
        .expect("json");
        let status = rt.block_on(endpoint.post(body));
        prop_assert!(status == 200 || status == 400, "answered {status}");
        Ok(())
    });
    rt.block_on(cleanup(&redis_url(), &endpoint.prefix));
}

#[test]
fn without_a_configured_secret_nothing_is_accepted() {
    let rt = runtime();
    let endpoint = rt.block_on(start(None));
    run(
        32,
        (
            prop_oneof![wrong_secret(), Just(json!(OURS))],
            payment_request_id(),
        ),
        |(secret, id)| {
            let body = serde_json::to_vec(&json!({"appSecret": secret, "paymentRequestId": id}))
                .expect("json");
            let status = rt.block_on(endpoint.post(body));
            prop_assert_eq!(status, 404);
            Ok(())
        },
    );
    rt.block_on(cleanup(&redis_url(), &endpoint.prefix));
}
