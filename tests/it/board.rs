//! The operator board (`/board`) in a real browser: Debian's chromium, driven by playwright-core
//! (tests/board/board.mjs), against a running stack with real dead letters.
//!
//! Two orders' first checks are refused by the provider (401: their checks dead-letter at once);
//! one of the two has an HTML payload for an order id. The browser is refused with a wrong token
//! and shows nothing, opens the board with the right one, sees the dead letters (the hostile id as
//! text), opens the order's timeline, saves a screenshot, and clicks Retry. Then Redis must hold
//! the job again, due now, and a worker must find the payment paid.
//!
//! Chromium comes from Debian (`scripts/ensure-test-tools.sh`, which `just test` runs first);
//! where it is missing the test skips with a loud banner (under `CI=true` it fails instead).
//! `PAYWATCH_BOARD_SCREENSHOT=docs/board.png` keeps the screenshot (that is how docs/board.png
//! is made); `PAYWATCH_HEALTH_SCREENSHOT=docs/health.png` keeps the health verdict's, on top of
//! the board, which names the dead letters' channel and the missing workers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use paywatch_core::{PaymentStatus, queues};
use paywatch_queue::JobId;
use paywatch_sandbox::{Fault, NewPayment, Provider};
use paywatch_tests::stack::{API_TOKEN, Stack};
use paywatch_tests::tools::{self, Tool};
use paywatch_tests::wait_for;
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Chromium and playwright-core, as `just test`'s setup leaves them; `false` (after a loud
/// banner) when they are missing outside CI.
fn board_tools() -> bool {
    tools::require(Tool::Chromium, "the board's browser test")
}

/// A Cashless bill whose first status request is refused (401), paid soon after.
fn refused_once(stack: &Stack) -> String {
    stack.payment(
        NewPayment::new(Provider::Cashless)
            .step(0, "NOT_PAID")
            .step(200, "FULLY_PAID")
            .fault(Fault::status(401).times(1)),
    )
}

#[tokio::test]
async fn an_operator_retries_a_dead_letter_from_the_board_in_a_real_browser() {
    if !board_tools() {
        return;
    }
    let stack = Stack::start("board").await;
    let checks = stack.queue(queues::CHECK_PAYMENT).await;
    let check_queue = checks.config().name.clone();
    let denied = "board-denied";
    // Printable ASCII without spaces: a valid order id, and an HTML payload if rendered as HTML.
    let hostile = "x<img/src=x/onerror=window.__pwned=1>";
    let worker = stack.worker(&stack.worker_args(0.01)).await;
    for id in [denied, hostile] {
        let bill = refused_once(&stack);
        let (status, body) = stack
            .submit(
                &json!({"order_id": id, "provider": "cashless", "payment_id": bill,
                "metadata": {"note": "<script>window.__pwned=1</script>"}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    wait_for(
        "both checks in the dead letters",
        Duration::from_secs(20),
        || async { Some(stack.dead_checks().await).filter(|d| d.len() == 2) },
    )
    .await;
    // No worker while the browser works: the retried job must be seen waiting in the queue.
    worker.stop().await;

    // Without a token the admin API answers 401 and nothing else.
    let anonymous = reqwest::Client::new()
        .get(format!("{}/v1/admin/queues", stack.api))
        .send()
        .await
        .expect("GET /v1/admin/queues");
    assert_eq!(anonymous.status().as_u16(), 401);
    let board = reqwest::get(format!("{}/board", stack.api))
        .await
        .expect("GET /board");
    let csp = board
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let screenshot = dir.path().join("board.png");
    let mut browser = tokio::process::Command::new("node");
    browser
        .arg(root().join("tests/board/board.mjs"))
        .env("BOARD_URL", &stack.api)
        .env("API_TOKEN", API_TOKEN)
        .env("DEAD_QUEUE", &check_queue)
        .env("DEAD_ID", denied)
        .env("HOSTILE_ID", hostile)
        .env("SCREENSHOT", &screenshot)
        .env("HEALTH_SCREENSHOT", dir.path().join("health.png"))
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), browser.output())
        .await
        .expect("the browser finishes within two minutes")
        .expect("run node tests/board/board.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the board failed in the browser:\n{stdout}\n{stderr}"
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("board.mjs printed no result ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(seen["queueDead"], json!("2"), "{seen}");
    assert!(
        seen["timeline"].as_array().is_some_and(|t| t
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.contains("credentials")))),
        "{seen}"
    );
    assert!(
        seen["payload"]
            .as_str()
            .is_some_and(|p| p.contains("\"order_id\": \"board-denied\"")),
        "{seen}"
    );

    // The health verdict is on top, every subsystem with its verdict, as the API says.
    let health = &seen["health"];
    assert_eq!(health["first"], "health", "{seen}");
    let parts: Vec<&str> = health["parts"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["part"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        parts,
        [
            "checks",
            "providers",
            "webhooks",
            "notifications",
            "orphans",
            "redis"
        ],
        "{seen}"
    );
    assert!(
        ["ok", "degraded", "failing"].contains(&health["verdict"].as_str().unwrap_or_default()),
        "{seen}"
    );
    let orphans = &health["parts"][4];
    assert_eq!(orphans["verdict"], "ok", "{seen}");
    if let Ok(keep) = std::env::var("PAYWATCH_HEALTH_SCREENSHOT") {
        let png = std::fs::read(dir.path().join("health.png")).expect("health screenshot");
        std::fs::write(root().join(&keep), &png).expect("keep the health screenshot");
    }

    // The screenshot is a real PNG.
    let png = std::fs::read(&screenshot).expect("screenshot saved");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("PAYWATCH_BOARD_SCREENSHOT") {
        std::fs::write(root().join(&keep), &png).expect("keep the screenshot");
    }

    // Redis: the job is back in its queue, due, with its order record; the other is still dead.
    let id = JobId::new(denied).expect("id");
    assert!(
        checks.payload(&id).await.expect("payload").is_some(),
        "the retried job has no record in {check_queue}"
    );
    assert!(checks.due_at(&id).await.expect("due").is_some());
    let dead = stack.dead_checks().await;
    assert_eq!(
        dead.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [hostile],
        "only the other dead letter remains"
    );
    let view = stack.order(denied).await.expect("order");
    assert_eq!(view["phase"], json!("watching"), "{view}");

    // And a worker takes it from there: the payment is found paid.
    let worker = stack.worker(&stack.worker_args(0.01)).await;
    stack
        .wait_status(denied, PaymentStatus::Paid, Duration::from_secs(20))
        .await;
    worker.stop().await;
    stack.finish().await;
}
