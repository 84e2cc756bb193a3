//! Helpers shared by the sandbox's integration tests: start a sandbox on a free port, talk to it
//! over real sockets, and wait on conditions with a deadline instead of sleeping.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine;
use paywatch_sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use serde_json::Value;

/// A sandbox with default credentials whose timelines run at `time_scale`.
pub async fn start(time_scale: f64) -> SandboxHandle {
    start_with(SandboxConfig {
        time_scale,
        ..SandboxConfig::default()
    })
    .await
}

pub async fn start_with(config: SandboxConfig) -> SandboxHandle {
    Sandbox::start(config, "127.0.0.1:0".parse().expect("loopback address"))
        .await
        .expect("sandbox starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// Polls `check` every 10 ms until it returns `Some`, panicking after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Creates a payment through the admin API and returns its id.
pub async fn create(sandbox: &SandboxHandle, body: Value) -> String {
    let response = client()
        .post(format!("{}/_admin/payments", sandbox.base_url()))
        .json(&body)
        .send()
        .await
        .expect("admin reachable");
    assert_eq!(response.status(), 201, "creating {body}");
    let created: Value = response.json().await.expect("json");
    created["id"].as_str().expect("id in answer").to_string()
}

/// The status URL of a payment and a request builder carrying the right credentials.
pub fn status_request(
    sandbox: &SandboxHandle,
    provider: &str,
    id: &str,
) -> reqwest::RequestBuilder {
    let base = sandbox.base_url();
    let client = client();
    match provider {
        "cashless" => client
            .get(format!("{base}/cashless/api/v3/bills/{id}"))
            .header(
                "Authorization",
                "ApiKey sandbox-cashless-key:sandbox-cashless-secret",
            ),
        "handcash" => client
            .get(format!("{base}/handcash/v3/paymentRequests/{id}"))
            .header("App-Id", "sandbox-handcash-app")
            .header("App-Secret", "sandbox-handcash-secret"),
        "miraclecash" => {
            let token = base64::engine::general_purpose::STANDARD
                .encode("sandbox-miracle-client:sandbox-miracle-key");
            client
                .get(format!("{base}/miraclecash/external/payments/prompt/{id}"))
                .header("Authorization", format!("Basic {token}"))
        }
        "foxreload" => client
            .get(format!("{base}/foxreload/api/orders/{id}"))
            .header("X-API-Key", "sandbox-foxreload-key"),
        other => panic!("unknown provider {other}"),
    }
}

/// Fetches a payment with good credentials, expecting a 200 JSON answer.
pub async fn fetch(sandbox: &SandboxHandle, provider: &str, id: &str) -> Value {
    let response = status_request(sandbox, provider, id)
        .send()
        .await
        .expect("provider reachable");
    assert_eq!(response.status(), 200, "{provider}/{id}");
    response.json().await.expect("json body")
}

pub const PROVIDERS: [&str; 4] = ["cashless", "handcash", "miraclecash", "foxreload"];
