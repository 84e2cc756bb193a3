//! The admin API, the in-process helpers, server lifecycle and the binary.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{client, create, fetch, start, status_request, wait_for};
use paywatch_sandbox::{NewPayment, Provider, Sandbox, SandboxConfig, SandboxError};
use serde_json::{Value, json};

#[tokio::test]
async fn creation_validates_and_refuses_duplicates() {
    let sandbox = start(1.0).await;
    let http = client();
    let url = format!("{}/_admin/payments", sandbox.base_url());

    let created = http
        .post(&url)
        .json(&json!({"provider": "cashless", "id": "bill-1"}))
        .send()
        .await
        .expect("admin");
    assert_eq!(created.status(), 201);
    assert_eq!(
        created.json::<Value>().await.expect("json"),
        json!({"provider": "cashless", "id": "bill-1"})
    );

    let again = http
        .post(&url)
        .json(&json!({"provider": "cashless", "id": "bill-1"}))
        .send()
        .await
        .expect("admin");
    assert_eq!(again.status(), 409);
    assert!(again.json::<Value>().await.expect("json")["error"].is_string());
    // The same id under another provider is a different payment.
    let other = http
        .post(&url)
        .json(&json!({"provider": "handcash", "id": "bill-1"}))
        .send()
        .await
        .expect("admin");
    assert_eq!(other.status(), 201);

    for bad in [
        json!({"provider": "paypal"}),
        json!({"provider": "cashless", "id": "a/b"}),
        json!({"provider": "cashless", "timeline": [{"after_ms": 0}]}),
        json!({"provider": "cashless", "faults": [{"kind": "status", "code": 204}]}),
    ] {
        let response = http.post(&url).json(&bad).send().await.expect("admin");
        assert_eq!(response.status(), 400, "{bad}");
        assert!(response.json::<Value>().await.expect("json")["error"].is_string());
    }
    let garbage = http
        .post(&url)
        .body("{not json")
        .send()
        .await
        .expect("admin");
    assert_eq!(garbage.status(), 400);

    let err = sandbox
        .state()
        .create_payment(NewPayment::new(Provider::Cashless).id("bill-1"))
        .expect_err("duplicate");
    assert!(matches!(err, SandboxError::DuplicatePayment { .. }));
}

#[tokio::test]
async fn payment_view_reports_status_and_checks() {
    let sandbox = start(1.0).await;
    let id = create(
        &sandbox,
        json!({"provider": "foxreload", "timeline": [{"after_ms": 0, "status": "paid"}]}),
    )
    .await;
    fetch(&sandbox, "foxreload", &id).await;
    fetch(&sandbox, "foxreload", &id).await;
    let unauthorized = client()
        .get(format!("{}/foxreload/api/orders/{id}", sandbox.base_url()))
        .send()
        .await
        .expect("reachable");
    assert_eq!(unauthorized.status(), 401);

    let http = client();
    let view: Value = http
        .get(format!(
            "{}/_admin/payments/foxreload/{id}",
            sandbox.base_url()
        ))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(view["provider"], "foxreload");
    assert_eq!(view["id"], json!(id));
    assert_eq!(view["status"], "paid");
    assert_eq!(
        view["checks"], 3,
        "every status request counts, whatever its outcome"
    );
    assert!(view["created_at"].is_string());

    let missing = http
        .get(format!(
            "{}/_admin/payments/foxreload/nope",
            sandbox.base_url()
        ))
        .send()
        .await
        .expect("admin");
    assert_eq!(missing.status(), 404);
    let bad_provider = http
        .get(format!(
            "{}/_admin/payments/paypal/{id}",
            sandbox.base_url()
        ))
        .send()
        .await
        .expect("admin");
    assert_eq!(bad_provider.status(), 400);

    let listed: Value = http
        .get(format!("{}/_admin/payments", sandbox.base_url()))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn stats_count_status_calls_per_provider_and_reset_clears_everything() {
    let sandbox = start(1.0).await;
    let id = create(&sandbox, json!({"provider": "handcash"})).await;
    fetch(&sandbox, "handcash", &id).await;
    fetch(&sandbox, "handcash", &id).await;
    status_request(&sandbox, "miraclecash", "nope")
        .send()
        .await
        .expect("reachable");

    let http = client();
    let stats: Value = http
        .get(format!("{}/_admin/stats", sandbox.base_url()))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["handcash"]["requests"], 2);
    assert_eq!(stats["handcash"]["ok"], 2);
    assert_eq!(stats["miraclecash"]["not_found"], 1);
    assert_eq!(stats["cashless"]["requests"], 0);
    assert_eq!(stats["telegram"]["requests"], 0);

    let reset = http
        .post(format!("{}/_admin/reset", sandbox.base_url()))
        .send()
        .await
        .expect("admin");
    assert_eq!(reset.status(), 204);
    assert!(sandbox.state().payments().is_empty());
    assert_eq!(sandbox.state().request_stats().handcash.requests, 0);
    assert_eq!(
        status_request(&sandbox, "handcash", &id)
            .send()
            .await
            .expect("reachable")
            .status(),
        404
    );
}

#[tokio::test]
async fn graceful_shutdown_stops_listening() {
    let sandbox = start(1.0).await;
    // A payment only this sandbox knows. Once the sandbox lets go of its port, another process
    // on the machine may bind it and answer; what must never answer is this sandbox.
    let id = create(&sandbox, json!({"provider": "cashless"})).await;
    assert_eq!(fetch(&sandbox, "cashless", &id).await["id"], json!(id));
    let after = status_request(&sandbox, "cashless", &id).timeout(Duration::from_secs(3));
    sandbox.shutdown().await.expect("clean shutdown");
    match after.send().await {
        // Nothing listens any more.
        Err(e) if e.is_connect() => {}
        // A listener that accepts but never serves: the sandbox's socket outlived its server.
        Err(e) if e.is_timeout() => panic!("connection accepted but never served: {e}"),
        // A reset or another server's answer: the port is no longer the sandbox's.
        Err(_) => {}
        Ok(response) => {
            let served_ours = response.status() == 200
                && response.text().await.is_ok_and(|body| body.contains(&id));
            assert!(!served_ours, "still answering after shutdown");
        }
    }
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let sandbox = start(1.0).await;
    let base = sandbox.base_url();
    drop(sandbox);
    wait_for("the listener to close", Duration::from_secs(5), || async {
        let result = reqwest::Client::new()
            .get(format!("{base}/_admin/health"))
            .send()
            .await;
        result.is_err_and(|e| e.is_connect()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn start_rejects_bad_config_and_busy_ports() {
    let config = SandboxConfig {
        time_scale: -1.0,
        ..SandboxConfig::default()
    };
    let err = Sandbox::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect_err("negative scale");
    assert!(matches!(err, SandboxError::InvalidConfig(_)));

    let first = start(1.0).await;
    let err = Sandbox::start(SandboxConfig::default(), first.addr())
        .await
        .expect_err("port in use");
    assert!(matches!(err, SandboxError::Bind { .. }));
}

/// Kills the child if the test fails before it exits on its own.
struct ChildGuard(Option<std::process::Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn binary_reads_env_serves_and_exits_cleanly_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let secret = "very-secret-cashless-value";
    let child = Command::new(env!("CARGO_BIN_EXE_paywatch-sandbox"))
        .env("SANDBOX_LISTEN", format!("127.0.0.1:{port}"))
        .env("SANDBOX_CASHLESS_API_SECRET", secret)
        .env("SANDBOX_TIME_SCALE", "0.5")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut guard = ChildGuard(Some(child));
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    wait_for("the binary to answer", Duration::from_secs(10), || async {
        let health = http
            .get(format!("{base}/_admin/health"))
            .send()
            .await
            .ok()?;
        health.status().is_success().then_some(())
    })
    .await;

    let created: Value = http
        .post(format!("{base}/_admin/payments"))
        .json(&json!({"provider": "cashless", "id": "b"}))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(created["id"], "b");
    let url = format!("{base}/cashless/api/v3/bills/b");
    let with_env_secret = http
        .get(&url)
        .header(
            "Authorization",
            format!("ApiKey sandbox-cashless-key:{secret}"),
        )
        .send()
        .await
        .expect("reachable");
    assert_eq!(with_env_secret.status(), 200);
    let with_default = http
        .get(&url)
        .header(
            "Authorization",
            "ApiKey sandbox-cashless-key:sandbox-cashless-secret",
        )
        .send()
        .await
        .expect("reachable");
    assert_eq!(with_default.status(), 401);

    let pid = guard.0.as_ref().expect("child").id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = wait_for("the binary to exit", Duration::from_secs(10), || {
        let exited = guard
            .0
            .as_mut()
            .expect("child")
            .try_wait()
            .expect("wait on child");
        async move { exited }
    })
    .await;
    assert!(status.success(), "exit status {status}");

    let child = guard.0.take().expect("child");
    let output = child.wait_with_output().expect("output");
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(logs.contains("shutting down"), "logs: {logs}");
    assert!(!logs.contains(secret), "a secret reached the logs: {logs}");
}

#[tokio::test]
async fn a_pinned_clock_serves_the_payment_at_that_age() {
    let sandbox = start(1.0).await;
    let http = client();
    let id = create(
        &sandbox,
        json!({"provider": "cashless", "webhook": false, "timeline": [
            {"after_ms": 0, "status": "NOT_PAID"},
            {"after_ms": 3_600_000, "status": "FULLY_PAID"}
        ]}),
    )
    .await;
    let clock = format!("{}/_admin/payments/cashless/{id}/clock", sandbox.base_url());
    let status = |v: Value| v["status"].as_str().map(str::to_owned);
    assert_eq!(
        status(fetch(&sandbox, "cashless", &id).await).as_deref(),
        Some("NOT_PAID")
    );
    let pin = |ms: u64| http.put(&clock).json(&json!({"elapsed_ms": ms})).send();
    assert_eq!(pin(3_600_000).await.expect("admin").status(), 204);
    assert_eq!(
        status(fetch(&sandbox, "cashless", &id).await).as_deref(),
        Some("FULLY_PAID")
    );
    // Back in time too: the clock is the caller's.
    assert_eq!(pin(3_599_999).await.expect("admin").status(), 204);
    assert_eq!(
        status(fetch(&sandbox, "cashless", &id).await).as_deref(),
        Some("NOT_PAID")
    );
    assert_eq!(
        http.delete(&clock).send().await.expect("admin").status(),
        204
    );
    assert_eq!(
        status(fetch(&sandbox, "cashless", &id).await).as_deref(),
        Some("NOT_PAID")
    );
    // Bad bodies and unknown payments are 4xx with a reason.
    for bad in [json!({"elapsed_ms": -1}), json!({"at": 5}), json!([])] {
        let response = http.put(&clock).json(&bad).send().await.expect("admin");
        assert_eq!(response.status(), 400, "{bad}");
    }
    let missing = format!("{}/_admin/payments/cashless/nope/clock", sandbox.base_url());
    let response = http
        .put(&missing)
        .json(&json!({"elapsed_ms": 1}))
        .send()
        .await
        .expect("admin");
    assert_eq!(response.status(), 404);
}
