//! The Python and Node examples of docs/enqueue-from-any-language.md, run for real: each submits
//! an order straight into Redis, sees a bad order refused with the exact error text, waits for a
//! real worker to find it paid at the sandbox, and resubmits it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use paywatch_tests::stack::Stack;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Installs redis-py and ioredis for the examples (quick when already there); once per test
/// process, so the two tests do not install over each other.
fn ensure_client_tools() {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = ONCE.get_or_init(|| {
        Command::new(root().join("scripts/ensure-client-tools.sh"))
            .status()
            .expect("run scripts/ensure-client-tools.sh")
            .success()
    });
    assert!(*ok, "scripts/ensure-client-tools.sh failed");
}

async fn run_example(test: &str, program: &str, script: &str) {
    ensure_client_tools();
    let stack = Stack::start(test).await;
    let worker = stack.worker(&stack.worker_args(0.01)).await;
    let bill = stack.bill_paid_after(300);
    let order_id = format!("{test}-order");
    let mut command = tokio::process::Command::new(program);
    command
        .arg(root().join("tests/clients").join(script))
        .env("REDIS_URL", &stack.redis)
        .env("PAYWATCH_PREFIX", &stack.prefix)
        .env("PAYWATCH_SHARDS", "1")
        .env("ORDER_ID", &order_id)
        .env("PAYMENT_ID", &bill)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the example finishes within a minute")
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script}: {stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].contains("created") && lines[0].contains("watching"),
        "{stdout}"
    );
    assert!(
        lines[1].ends_with("paywatch: notify.email: must contain exactly one @"),
        "the exact error text: {stdout}"
    );
    assert!(
        lines[2].starts_with("checked: ") && lines[2].contains("paid"),
        "{stdout}"
    );
    assert!(
        lines[3].contains("exists") && lines[3].contains("paid") && lines[3].contains("final"),
        "{stdout}"
    );
    // The producer's API sees the order the client submitted.
    let view = stack.order(&order_id).await.expect("view");
    assert_eq!(view["status"], "paid", "{view}");
    worker.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn python_redis_py_submits_and_sees_it_paid() {
    let python = root().join(".paywatch/clients-venv/bin/python");
    run_example("client-python", python.to_str().expect("path"), "submit.py").await;
}

#[tokio::test]
async fn node_ioredis_submits_and_sees_it_paid() {
    run_example("client-node", "node", "submit.mjs").await;
}
