//! The producer's API against its own OpenAPI document, fuzzed by schemathesis: whatever it
//! sends, no 5xx, and every answer is documented (status, content type, body schema).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use paywatch_tests::stack::{API_TOKEN, Stack};
use serde_json::Value;

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root");
    let installed = Command::new(root.join("scripts/ensure-schemathesis.sh"))
        .status()
        .expect("run scripts/ensure-schemathesis.sh");
    assert!(installed.success(), "scripts/ensure-schemathesis.sh failed");
    let stack = Stack::start("schemathesis").await;
    // Some orders to find, in every phase a GET can show.
    let worker = stack.worker(&stack.worker_args(0.01)).await;
    let bill = stack.bill_paid_after(50);
    stack
        .submit(
            &serde_json::json!({"order_id": "known", "provider": "cashless", "payment_id": bill}),
        )
        .await;

    // The document is OpenAPI 3.1 and names every route.
    let doc: Value = stack
        .http
        .get(format!("{}/openapi.json", stack.api))
        .send()
        .await
        .expect("openapi.json")
        .json()
        .await
        .expect("json");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/v1/orders",
        "/v1/orders/{order_id}",
        "/v1/orders/{order_id}/events",
        "/healthz",
        "/readyz",
        "/webhooks/cashless",
        "/webhooks/handcash",
        "/openapi.json",
        "/v1/admin/queues",
        "/v1/admin/dead-letters",
        "/v1/admin/queues/{queue}/dead-letters/{id}",
        "/v1/admin/queues/{queue}/retry",
        "/v1/admin/queues/{queue}/purge",
        "/v1/admin/orders/{order_id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
    }

    let st = root.join(".paywatch/schemathesis-venv/bin/st");
    let mut run = tokio::process::Command::new(st);
    run.current_dir(std::env::temp_dir())
        .args(["run", &format!("{}/openapi.json", stack.api)])
        .args(["--header", &format!("Authorization: Bearer {API_TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // An open event stream never ends while its order is watched: a fuzzer cannot judge it.
        .args(["--exclude-path-regex", "/events$"])
        .args(["--max-examples", "15", "--seed", "1", "--workers", "2"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--request-timeout", "10", "--max-time", "90"])
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(300), run.output())
        .await
        .expect("schemathesis finishes")
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    worker.stop().await;
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    stack.finish().await;
}
