//! Forming a Redis Cluster out of nodes a test started: one way for every test that needs one.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Joins the cluster-enabled servers on `ports` into one Cluster (`redis-cli --cluster create`,
/// `replicas` replicas per master) and waits, up to 30 s, until every node reports
/// `cluster_state:ok`. The error says what failed, with `redis-cli`'s output.
pub async fn form(ports: &[u16], replicas: u32) -> Result<(), String> {
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("redis-cli --cluster create: {e}"))?;
    if !created.status.success() {
        return Err(format!(
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in ports {
        while !state_ok(*port).await {
            if Instant::now() > deadline {
                return Err(format!(
                    "node 127.0.0.1:{port} did not reach cluster_state:ok within 30 s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Whether the node on `port` reports `cluster_state:ok`.
async fn state_ok(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    let info: redis::RedisResult<String> = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut conn)
        .await;
    info.is_ok_and(|i| i.contains("cluster_state:ok"))
}
