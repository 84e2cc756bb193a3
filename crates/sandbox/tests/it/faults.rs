//! Injected faults over real sockets: statuses with Retry-After, latency, malformed bodies,
//! dropped connections, ordering and scopes.

use std::time::{Duration, Instant};

use crate::common::{client, create, start, status_request};
use paywatch_sandbox::{Fault, FaultScope, Provider, Sandbox, SandboxConfig};
use serde_json::{Value, json};

async fn status_of(sandbox: &paywatch_sandbox::SandboxHandle, provider: &str, id: &str) -> u16 {
    status_request(sandbox, provider, id)
        .send()
        .await
        .expect("answered")
        .status()
        .as_u16()
}

#[tokio::test]
async fn rate_limit_carries_retry_after_and_runs_out() {
    let sandbox = start(1.0).await;
    let id = create(
        &sandbox,
        json!({
            "provider": "cashless",
            "faults": [{"kind": "status", "code": 429, "retry_after_s": 7, "times": 2}],
        }),
    )
    .await;
    for _ in 0..2 {
        let response = status_request(&sandbox, "cashless", &id)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 429);
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok());
        assert_eq!(retry_after, Some("7"));
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            json!({"error": "Too Many Requests"})
        );
    }
    assert_eq!(status_of(&sandbox, "cashless", &id).await, 200);
    let stats = sandbox.state().request_stats().cashless;
    assert_eq!((stats.faulted, stats.ok), (2, 1));
}

#[tokio::test]
async fn status_faults_use_each_providers_error_shape() {
    let sandbox = start(1.0).await;
    let handcash = create(
        &sandbox,
        json!({"provider": "handcash", "faults": [{"kind": "status", "code": 503}]}),
    )
    .await;
    let response = status_request(&sandbox, "handcash", &handcash)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"message": "Service Unavailable"})
    );

    let fox = create(
        &sandbox,
        json!({"provider": "foxreload", "faults": [{"kind": "status", "code": 429}]}),
    )
    .await;
    let response = status_request(&sandbox, "foxreload", &fox)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 429);
    // 429s always say when to come back, defaulting to one second.
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"error": "Too Many Requests"})
    );
}

#[tokio::test]
async fn faults_apply_in_order_then_normal_handling_resumes() {
    let sandbox = start(1.0).await;
    let id = create(&sandbox, json!({"provider": "miraclecash"})).await;
    sandbox
        .state()
        .add_faults(
            FaultScope::Payment {
                provider: Provider::MiracleCash,
                id: id.clone(),
            },
            vec![Fault::status(500).times(1), Fault::status(503).times(2)],
        )
        .expect("payment exists");
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(status_of(&sandbox, "miraclecash", &id).await);
    }
    assert_eq!(codes, vec![500, 503, 503, 200]);
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let sandbox = start(1.0).await;
    let id = create(
        &sandbox,
        json!({"provider": "foxreload", "faults": [{"kind": "latency", "ms": 300, "times": 1}]}),
    )
    .await;
    let started = Instant::now();
    assert_eq!(status_of(&sandbox, "foxreload", &id).await, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(
        sandbox.state().request_stats().foxreload.faulted,
        0,
        "latency alone is not a failure"
    );
}

#[tokio::test]
async fn malformed_answers_200_with_unparseable_json() {
    let sandbox = start(1.0).await;
    let id = create(
        &sandbox,
        json!({"provider": "handcash", "faults": [{"kind": "malformed", "times": 1}]}),
    )
    .await;
    let response = status_request(&sandbox, "handcash", &id)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    assert!(!text.is_empty());
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "body parsed: {text}"
    );
    let next = status_request(&sandbox, "handcash", &id)
        .send()
        .await
        .expect("answered");
    assert!(next.json::<Value>().await.is_ok());
}

#[tokio::test]
async fn drop_gives_a_connection_error_not_a_status() {
    let sandbox = start(1.0).await;
    let id = create(
        &sandbox,
        json!({"provider": "cashless", "faults": [{"kind": "drop", "times": 1}]}),
    )
    .await;
    let err = status_request(&sandbox, "cashless", &id)
        .send()
        .await
        .expect_err("the connection must close without a response");
    assert!(err.status().is_none(), "got an HTTP status: {err:?}");
    assert!(
        !err.is_timeout(),
        "the connection was closed, not left hanging: {err:?}"
    );
    assert_eq!(status_of(&sandbox, "cashless", &id).await, 200);
    assert_eq!(
        sandbox
            .state()
            .stats(Provider::Cashless, &id)
            .map(|s| s.checks),
        Some(2)
    );
}

#[tokio::test]
async fn drop_also_fails_when_the_router_is_served_by_plain_axum() {
    let (router, state) = Sandbox::router(SandboxConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let created = state
        .create_payment(
            paywatch_sandbox::NewPayment::new(Provider::FoxReload)
                .fault(Fault::drop_connection().times(1)),
        )
        .expect("created");
    let url = format!("http://{addr}/foxreload/api/orders/{}", created.id);
    let http = client();
    let err = http
        .get(&url)
        .header("X-API-Key", "sandbox-foxreload-key")
        .send()
        .await
        .expect_err("the body fails before its first byte, so hyper abandons the connection");
    assert!(err.status().is_none(), "got an HTTP status: {err:?}");
    let ok = http
        .get(&url)
        .header("X-API-Key", "sandbox-foxreload-key")
        .send()
        .await
        .expect("answered");
    assert_eq!(ok.status(), 200);
    server.abort();
}

#[tokio::test]
async fn provider_wide_faults_hit_every_id_until_cleared() {
    let sandbox = start(1.0).await;
    let id = create(&sandbox, json!({"provider": "miraclecash"})).await;
    let http = client();
    let faults_url = format!("{}/_admin/providers/miraclecash/faults", sandbox.base_url());
    let added = http
        .post(&faults_url)
        .json(&json!({"kind": "status", "code": 503}))
        .send()
        .await
        .expect("admin");
    assert_eq!(added.status(), 204);

    assert_eq!(status_of(&sandbox, "miraclecash", &id).await, 503);
    assert_eq!(status_of(&sandbox, "miraclecash", "unknown").await, 503);
    // Other providers are untouched.
    let other = create(&sandbox, json!({"provider": "cashless"})).await;
    assert_eq!(status_of(&sandbox, "cashless", &other).await, 200);

    let cleared = http.delete(&faults_url).send().await.expect("admin");
    assert_eq!(cleared.status(), 204);
    assert_eq!(status_of(&sandbox, "miraclecash", &id).await, 200);
    assert_eq!(status_of(&sandbox, "miraclecash", "unknown").await, 404);
}

#[tokio::test]
async fn payment_faults_are_managed_over_the_admin_api() {
    let sandbox = start(1.0).await;
    let id = create(&sandbox, json!({"provider": "foxreload"})).await;
    let http = client();
    let url = format!(
        "{}/_admin/payments/foxreload/{id}/faults",
        sandbox.base_url()
    );

    let added = http
        .post(&url)
        .json(&json!([{"kind": "status", "code": 500}, {"kind": "status", "code": 502}]))
        .send()
        .await
        .expect("admin");
    assert_eq!(added.status(), 204);
    assert_eq!(status_of(&sandbox, "foxreload", &id).await, 500);
    assert_eq!(
        status_of(&sandbox, "foxreload", &id).await,
        500,
        "no `times` means forever"
    );

    assert_eq!(http.delete(&url).send().await.expect("admin").status(), 204);
    assert_eq!(status_of(&sandbox, "foxreload", &id).await, 200);

    let unknown = http
        .post(format!(
            "{}/_admin/payments/foxreload/nope/faults",
            sandbox.base_url()
        ))
        .json(&json!({"kind": "drop"}))
        .send()
        .await
        .expect("admin");
    assert_eq!(unknown.status(), 404);

    let invalid = http
        .post(&url)
        .json(&json!({"kind": "status", "code": 200}))
        .send()
        .await
        .expect("admin");
    assert_eq!(invalid.status(), 400);
    let bogus = http
        .post(&url)
        .json(&json!({"kind": "explode"}))
        .send()
        .await
        .expect("admin");
    assert_eq!(bogus.status(), 400);
    assert!(bogus.json::<Value>().await.expect("json")["error"].is_string());
}
