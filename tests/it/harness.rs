//! The harness's own Redis: when nothing answers at `REDIS_URL`, a test process starts a
//! `redis-server` of its own, and that server does not outlive the process.

use std::process::Command;
use std::time::Duration;

use paywatch_tests::{SharedRedis, free_port, ping, ping_blocking, redis_url, wait_for};

/// Run only as a child of `a_test_process_without_redis_starts_one_and_leaves_no_orphan` (with
/// `REDIS_URL` pointing at a closed port): prints the URL the harness chose.
#[test]
#[ignore = "run by another test in a child process"]
fn child_reports_its_redis() {
    let url = redis_url();
    assert!(ping_blocking(&url), "{url} answers");
    println!("shared-redis-url={url}");
}

#[tokio::test]
async fn a_test_process_without_redis_starts_one_and_leaves_no_orphan() {
    let closed = format!("redis://127.0.0.1:{}", free_port());
    let output = Command::new(std::env::current_exe().expect("own test binary"))
        .args([
            "--exact",
            "harness::child_reports_its_redis",
            "--ignored",
            "--nocapture",
        ])
        .env("REDIS_URL", &closed)
        .output()
        .expect("run the child test process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let url = stdout
        .lines()
        .find_map(|line| line.strip_prefix("shared-redis-url="))
        .unwrap_or_else(|| panic!("no URL in {stdout}"))
        .to_string();
    assert_ne!(url, closed, "the harness did not use the closed REDIS_URL");
    // The child process has exited: its server must go away by itself.
    wait_for(
        "the child's redis-server to stop",
        Duration::from_secs(10),
        || {
            let url = url.clone();
            async move { (!ping(&url).await).then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn dropping_the_shared_server_stops_it() {
    let server = SharedRedis::start();
    let url = server.url().to_string();
    assert!(ping(&url).await);
    drop(server);
    wait_for(
        "the dropped redis-server to stop",
        Duration::from_secs(10),
        || {
            let url = url.clone();
            async move { (!ping(&url).await).then_some(()) }
        },
    )
    .await;
}
