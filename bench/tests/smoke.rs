//! Every benchmark still runs: `paywatch-bench all --smoke` with tiny numbers writes a report
//! with each benchmark's section, summary row and plot. Nothing here judges speed.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private redis-server for the queue benchmark (the others start their own), killed on drop.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (Debian: apt-get install redis-server)");
        let redis = Self(child, port);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        redis
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_benchmark_produces_its_rows_and_plots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ensured = Command::new(root.join("scripts/ensure-bullmq.sh"))
        .status()
        .expect("run scripts/ensure-bullmq.sh");
    assert!(ensured.success(), "scripts/ensure-bullmq.sh failed");
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("BENCHMARKS.md");
    let plots = dir.path().join("plots");
    let mut child = Command::new(env!("CARGO_BIN_EXE_paywatch-bench"))
        .arg("--redis")
        .arg(format!("redis://127.0.0.1:{}", redis.1))
        .args(["all", "--smoke"])
        .arg("--out")
        .arg(&out)
        .arg("--plots")
        .arg(&plots)
        .arg("--bullmq-dir")
        .arg(root.join("bench/bullmq"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run paywatch-bench all --smoke");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            panic!("paywatch-bench all --smoke did not finish within 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = child
        .stderr
        .take()
        .map(|mut e| {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
        .unwrap_or_default();
    assert!(
        status.success(),
        "paywatch-bench all --smoke failed:\n{stderr}"
    );

    let report = std::fs::read_to_string(&out).expect("the report");
    for heading in [
        "## The machine",
        "## Summary against the targets",
        "## Queue: no-op jobs, lateness, memory",
        "## End to end: check-payment throughput against BullMQ",
        "## Webhook fast path",
        "## Idle cost",
        "## Scale:",
        "## Redis Cluster against one Redis",
    ] {
        assert!(report.contains(heading), "no {heading:?} in:\n{report}");
    }
    for row in [
        "| check-payment throughput vs BullMQ",
        "| Redis bytes per pending order (README example, all keys)",
        "| webhook → verified final → notification enqueued, p99",
        "| Redis commands/s sent by one idle check-payment worker",
        "spike of 300 checks all processed | all | 300 of 300 |",
        "| scripts over 10 ms in SLOWLOG",
        "| end-to-end throughput, 3-master Cluster / one Redis",
        "| paywatch | **",
        "| BullMQ 6 | **",
        "| BullMQ 6 Worker (defaults) | **",
        "| submit rate through the FCALL door | **",
    ] {
        assert!(report.contains(row), "no row {row:?} in:\n{report}");
    }
    for png in [
        "e2e.png",
        "webhook.png",
        "idle.png",
        "scale-lateness.png",
        "cluster.png",
    ] {
        let bytes = std::fs::read(plots.join(png)).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{png} is not a PNG ({} bytes)",
            bytes.len()
        );
        assert!(
            report.contains(&format!("plots/{png})")),
            "{png} is not linked from the report"
        );
    }
}
