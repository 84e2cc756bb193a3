//! paywatch on a real Redis Cluster: three masters on free loopback ports, orders submitted
//! through FCALL with redis-py's cluster client and over HTTP, checked end to end by a worker
//! connected to the Cluster, with the shards spread over every master; the real producer binary
//! (`serve`, `enqueue`, `admin`) runs on it too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use paywatch_core::PaymentStatus;
use paywatch_queue::{EnqueueOutcome, JobId, NewJob, QueueConfig, RedisQueue};
use paywatch_tests::stack::{API_TOKEN, EVENTS_SECRET, Stack, authorized_client};
use paywatch_tests::tools::{self, Tool};
use paywatch_tests::{free_port, free_ports, product_binaries, wait_for};
use serde_json::{Value, json};

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
    if !tools::require(Tool::PythonClients, "the Cluster end-to-end test") {
        return;
    }
    let mut nodes: Vec<Node> = (0..3).map(|_| start_node()).collect();
    for node in &mut nodes {
        wait_answering(node).await;
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    if let Err(e) = paywatch_tests::cluster::form(&ports, 0).await {
        panic!("{e}");
    }
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();

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

    // And through the real producer binary, as operators run it: `enqueue`, `admin`, `serve`.
    let producer = product_binaries().join("paywatch-producer");
    let env = [
        ("REDIS_URL", url.clone()),
        ("PAYWATCH_PREFIX", stack.prefix.clone()),
        ("PAYWATCH_SHARDS", SHARDS.to_string()),
    ];
    let enqueued = tokio::process::Command::new(&producer)
        .args([
            "enqueue",
            "--order-id",
            "cl-cli-0",
            "--provider",
            "cashless",
        ])
        .args(["--payment-id", &stack.bill_paid_after(100)])
        .env_clear()
        .envs(env.clone())
        .output()
        .await
        .expect("run paywatch-producer enqueue");
    assert!(
        enqueued.status.success(),
        "enqueue on a Cluster: {}",
        String::from_utf8_lossy(&enqueued.stderr)
    );
    let listed = tokio::process::Command::new(&producer)
        .args(["admin", "stats"])
        .env_clear()
        .envs(env.clone())
        .output()
        .await
        .expect("run paywatch-producer admin");
    assert!(
        listed.status.success(),
        "admin on a Cluster: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    // The health verdict through the binary on a Cluster: Redis per primary, the audit per shard.
    let verdict = tokio::process::Command::new(&producer)
        .args(["admin", "health", "--json"])
        .env_clear()
        .envs(env.clone())
        .output()
        .await
        .expect("run paywatch-producer admin health");
    let verdict: Value = serde_json::from_slice(&verdict.stdout).unwrap_or_else(|e| {
        panic!(
            "admin health on a Cluster ({e}): {}",
            String::from_utf8_lossy(&verdict.stderr)
        )
    });
    let primaries = verdict["redis"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(primaries.len(), 3, "one entry per primary: {verdict:#}");
    assert!(
        primaries
            .iter()
            .all(|n| n["role"] == "master" && n["node"].as_str().is_some_and(|a| a.contains(':'))),
        "{verdict:#}"
    );
    assert_eq!(
        verdict["checks"]["shards"].as_array().map(Vec::len),
        Some(SHARDS as usize),
        "{verdict:#}"
    );
    assert_eq!(verdict["orphans"]["orphans"], 0, "{verdict:#}");
    assert_eq!(verdict["orphans"]["complete"], true, "{verdict:#}");
    let port = free_port();
    let mut served = tokio::process::Command::new(&producer)
        .arg("serve")
        .env_clear()
        .envs(env.clone())
        .env("PAYWATCH_PRODUCER_LISTEN", format!("127.0.0.1:{port}"))
        .env("PAYWATCH_API_TOKENS", API_TOKEN)
        .env("PAYWATCH_EVENTS_SECRET", EVENTS_SECRET)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn paywatch-producer serve");
    let api = format!("http://127.0.0.1:{port}");
    wait_for(
        "the producer binary on a Cluster to be ready",
        Duration::from_secs(30),
        || {
            let exited = served.try_wait().ok().flatten();
            let ready = format!("{api}/readyz");
            async move {
                assert!(
                    exited.is_none(),
                    "paywatch-producer serve exited on a Cluster: {exited:?}"
                );
                reqwest::get(&ready)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        },
    )
    .await;
    let response = authorized_client()
        .post(format!("{api}/v1/orders"))
        .json(&json!({"order_id": "cl-serve-0", "provider": "cashless", "payment_id": stack.bill_paid_after(100)}))
        .send()
        .await
        .expect("POST to the producer binary");
    assert_eq!(response.status().as_u16(), 202);

    let ids = orders
        .iter()
        .map(|(id, _)| id.clone())
        .chain((0..6).map(|i| format!("cl-http-{i}")))
        .chain(["cl-cli-0".to_owned(), "cl-serve-0".to_owned()]);
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
