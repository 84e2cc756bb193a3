//! paywatch on a real Redis Cluster: three masters on free loopback ports, orders submitted
//! through FCALL with redis-py's cluster client and over HTTP, checked end to end by a worker
//! connected to the Cluster, with the shards spread over every master.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use paywatch_core::PaymentStatus;
use paywatch_queue::{EnqueueOutcome, JobId, NewJob, QueueConfig, RedisQueue};
use paywatch_tests::stack::Stack;
use paywatch_tests::{free_ports, wait_for};
use serde_json::json;

/// Shards for three masters: their hash tags land on all three (slots 1264, 5329, 9394, 13459
/// under `redis-cli --cluster create`'s even split).
const SHARDS: u32 = 4;

struct Node {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a cluster node on a free port with its bus on another free port.
///
/// The bus port is given (`--cluster-port`) rather than left at Redis's default of port + 10000:
/// that lands in the kernel's ephemeral range (or past 65535), where another process's
/// connection can hold it and the node then exits before it ever answers.
fn start_node() -> Node {
    let [port, bus] = free_ports();
    let dir = std::env::temp_dir().join(format!("paywatch-cluster-{port}"));
    std::fs::create_dir_all(&dir).expect("node dir");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-port", &bus.to_string()])
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .args(["--save", "", "--appendonly", "no", "--logfile", "redis.log"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    Node { port, child, dir }
}

/// Waits until `node` answers, failing at once with its log if the server has exited.
async fn wait_answering(node: &mut Node) {
    let start = std::time::Instant::now();
    while info(node.port, "server").await.is_none() {
        let log = || std::fs::read_to_string(node.dir.join("redis.log")).unwrap_or_default();
        if let Ok(Some(status)) = node.child.try_wait() {
            panic!(
                "cluster node on port {} exited ({status}):\n{}",
                node.port,
                log()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "cluster node on port {} did not answer within 10 s:\n{}",
            node.port,
            log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn info(port: u16, section: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd(if section == "cluster" {
        "CLUSTER"
    } else {
        "INFO"
    })
    .arg(if section == "cluster" {
        "INFO"
    } else {
        section
    })
    .query_async(&mut conn)
    .await
    .ok()
}

#[tokio::test]
async fn orders_run_end_to_end_on_a_three_master_cluster() {
    let mut nodes: Vec<Node> = (0..3).map(|_| start_node()).collect();
    for node in &mut nodes {
        wait_answering(node).await;
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    for node in &nodes {
        wait_for("the cluster to be ok", Duration::from_secs(20), || async {
            info(node.port, "cluster")
                .await
                .filter(|i| i.contains("cluster_state:ok"))
        })
        .await;
    }

    let url = addrs
        .iter()
        .map(|a| format!("redis://{a}"))
        .collect::<Vec<_>>()
        .join(",");
    let stack = Stack::start_on("cluster", url.clone(), SHARDS).await;
    let workers = [
        stack.worker(&stack.worker_args(0.01)).await,
        stack.worker(&stack.worker_args(0.01)).await,
    ];

    // Through FCALL, with redis-py's cluster client routing each call by its shard key.
    let orders: Vec<(String, String)> = (0..24)
        .map(|i| (format!("cl-{i}"), stack.bill_paid_after(100)))
        .collect();
    let root: &Path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root");
    let ensured = Command::new(root.join("scripts/ensure-client-tools.sh"))
        .status()
        .expect("ensure client tools");
    assert!(ensured.success());
    let submitted = tokio::process::Command::new(root.join(".paywatch/clients-venv/bin/python"))
        .arg(root.join("tests/clients/submit_cluster.py"))
        .env("CLUSTER_NODES", addrs.join(","))
        .env("PAYWATCH_PREFIX", &stack.prefix)
        .env("PAYWATCH_SHARDS", SHARDS.to_string())
        .env("ORDERS", json!(orders).to_string())
        .output()
        .await
        .expect("run submit_cluster.py");
    assert!(
        submitted.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&submitted.stdout),
        String::from_utf8_lossy(&submitted.stderr)
    );
    // And over HTTP, through the producer connected to the Cluster.
    for i in 0..6 {
        let id = format!("cl-http-{i}");
        let (code, reply) = stack
            .submit(&json!({"order_id": id, "provider": "cashless", "payment_id": stack.bill_paid_after(100)}))
            .await;
        assert_eq!(code, 202, "{reply}");
    }

    let ids = orders
        .iter()
        .map(|(id, _)| id.clone())
        .chain((0..6).map(|i| format!("cl-http-{i}")));
    for id in ids {
        let view = stack
            .wait_status(&id, PaymentStatus::Paid, Duration::from_secs(30))
            .await;
        assert_eq!(view["phase"], json!("final"), "{view}");
    }
    // Nothing lost, nothing stuck, and every master holds some of it.
    for node in &nodes {
        let keys = info(node.port, "keyspace").await.unwrap_or_default();
        assert!(
            keys.contains("keys="),
            "master {} holds nothing: {keys}",
            node.port
        );
    }
    for worker in workers {
        worker.stop().await;
    }

    // Notifications fan out to three queues, three hash tags: on a Cluster one call each.
    let channels = ["email", "telegram", "webhook"];
    let first: RedisQueue<u32> = RedisQueue::connect(
        &url,
        QueueConfig::new(channels[0]).with_prefix(&stack.prefix),
    )
    .await
    .expect("connect to the cluster");
    let queues: Vec<RedisQueue<u32>> = channels
        .iter()
        .map(|name| first.sibling(QueueConfig::new(*name).with_prefix(&stack.prefix)))
        .collect();
    let jobs = || {
        queues
            .iter()
            .zip(0u32..)
            .map(|(q, n)| (q, NewJob::new(n).with_id(JobId::new("cl-fan").expect("id"))))
            .collect::<Vec<_>>()
    };
    let created = RedisQueue::enqueue_across(jobs()).await.expect("enqueue");
    assert!(
        created.iter().all(|(_, o)| *o == EnqueueOutcome::Created),
        "{created:?}"
    );
    let again = RedisQueue::enqueue_across(jobs()).await.expect("again");
    assert!(
        again.iter().all(|(_, o)| *o == EnqueueOutcome::Duplicate),
        "{again:?}"
    );
    for q in &queues {
        assert_eq!(q.stats().await.expect("stats").ready, 1, "{q:?}");
    }
}
