//! The real `paywatch-producer serve`, as operators run it: it says where it listens in words a
//! person (and a log query) can use, and its unknown paths answer JSON like every refusal.

use std::process::Stdio;
use std::time::Duration;

use paywatch_tests::stack::API_TOKEN;
use paywatch_tests::{bins, cleanup, free_port, redis_url, unique_prefix, wait_for};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn the_producer_logs_its_address_and_answers_unknown_paths_with_json() {
    let dir = bins::dir();
    let port = free_port();
    let prefix = unique_prefix("door-serve");
    let mut child = tokio::process::Command::new(dir.join("paywatch-producer"))
        .arg("serve")
        .env("REDIS_URL", redis_url())
        .env("PAYWATCH_PREFIX", &prefix)
        .env("PAYWATCH_API_TOKENS", API_TOKEN)
        .env("PAYWATCH_PRODUCER_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start paywatch-producer serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read the log") {
            if line.contains("producer API listening") {
                return line;
            }
        }
        panic!("the producer exited without saying it listens");
    })
    .await
    .expect("the producer says it listens within 30 s");
    // The address itself, not the Debug of a Result (`addr=Ok(127.0.0.1:…)`).
    assert!(
        listening.contains(&format!("127.0.0.1:{port}")) && !listening.contains("Ok("),
        "{listening}"
    );
    let client = reqwest::Client::new();
    let response = wait_for("the API answers", Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            client
                .get(format!("http://127.0.0.1:{port}/v1"))
                .send()
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(body["error"], "no such endpoint: /v1", "{body}");
    child.kill().await.expect("stop the producer");
    cleanup(&redis_url(), &prefix).await;
}
