//! The Redis side of a chaos run: one server (restarted by the run), a primary with replicas
//! behind three sentinels, or a Cluster of three masters with a replica each. Every data node
//! keeps an append-only file with `appendfsync everysec`, as production runs it, so a `kill -9`
//! takes whatever the kernel had not yet written with it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::link::SlowLink;
use crate::{RedisServer, ServerBinary, ServerKind, free_port, free_ports, redis_server_binary};

/// The Sentinel name of the primary.
pub const SERVICE: &str = "pw";

/// How long a sentinel waits before it calls an unanswering primary down. With the leader
/// election that follows (up to a second of random delay), a promotion takes about 1–3 s.
const DOWN_AFTER_MS: u64 = 1000;

/// How long a Cluster node waits before it calls an unanswering master failed.
const NODE_TIMEOUT_MS: u64 = 1000;

/// Where the data nodes are and who watches them.
#[derive(Debug)]
pub enum Topology {
    /// One server, restarted by the run itself.
    Single(RedisServer),
    /// A primary, its replicas and three sentinels.
    Sentinel(SentinelSet),
    /// Three masters with one replica each.
    Cluster(ClusterSet),
}

/// A primary with replicas, watched by three sentinels (quorum 2).
#[derive(Debug)]
pub struct SentinelSet {
    /// The data nodes; the first is the primary at the start.
    pub nodes: Vec<RedisServer>,
    sentinels: Vec<Process>,
    /// The slow link the replicas reach the first primary through.
    _link: Option<SlowLink>,
    link_delay: Option<Duration>,
}

/// A Cluster: three masters and three replicas.
#[derive(Debug)]
pub struct ClusterSet {
    /// The nodes; the first three are the masters at the start.
    pub nodes: Vec<RedisServer>,
}

/// What the run killed, and where it looks for its successor.
#[derive(Debug, Clone)]
pub struct Killed {
    /// The port of the killed primary (or master).
    pub port: u16,
    /// A Cluster master's node id (empty behind Sentinel).
    pub node_id: String,
    /// A slot the killed master served (0 behind Sentinel).
    pub slot: u16,
}

/// A child process killed (and reaped) when dropped.
#[derive(Debug)]
struct Process {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn redis7() -> ServerBinary {
    ServerBinary {
        kind: ServerKind::Redis7,
        path: redis_server_binary().into(),
        version: String::new(),
    }
}

/// One command to the server on `port`; `None` when it does not answer.
pub async fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .ok()?;
    cmd.query_async(&mut conn).await.ok()
}

/// Polls `check` every 50 ms until it answers or `within` passes.
async fn until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        anyhow::ensure!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the paywatch Function library is loaded on the server on `port`.
pub async fn has_library(port: u16) -> bool {
    query::<Vec<redis::Value>>(
        port,
        redis::cmd("FUNCTION")
            .arg("LIST")
            .arg("LIBRARYNAME")
            .arg("paywatch"),
    )
    .await
    .is_some_and(|libs| !libs.is_empty())
}

impl Topology {
    /// One durable server.
    pub async fn single() -> Self {
        Self::Single(RedisServer::start_durable().await)
    }

    /// A primary and `replicas` replicas, all durable, and three sentinels that know them all.
    /// With a `link_delay`, the replicas reach the primary through a [`SlowLink`] and lag by it.
    /// Every server logs to `logs`.
    pub async fn sentinel(
        replicas: usize,
        link_delay: Duration,
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let logs = std::path::absolute(logs)?;
        let log = |name: &str| logs.join(name).display().to_string();
        // A replica's first sync starts at once instead of after the default 5 s delay.
        let quick_sync = ["--repl-diskless-sync-delay", "0"];
        let primary_log = log("redis-primary.log");
        let primary = RedisServer::start_of(
            &redis7(),
            true,
            &[quick_sync[0], quick_sync[1], "--logfile", &primary_log],
        )
        .await;
        let link = match link_delay.is_zero() {
            true => None,
            false => Some(SlowLink::start(primary.port(), link_delay).await?),
        };
        let port = link.as_ref().map_or(primary.port(), |l| l.port).to_string();
        let mut nodes = vec![primary];
        for i in 0..replicas {
            let replica_log = log(&format!("redis-replica-{}.log", i + 1));
            let mut args = vec!["--replicaof", "127.0.0.1", &port];
            args.extend(quick_sync);
            args.extend(["--logfile", &replica_log]);
            nodes.push(RedisServer::start_of(&redis7(), true, &args).await);
        }
        let primary = nodes[0].port();
        // A replica that replicates from another address than the primary's (the link's) is
        // "fixed" by the sentinels after the failover timeout; a long one keeps the link up for
        // the run. (It also delays a second attempt should the first election fail.)
        let failover_timeout_ms = if link.is_some() { 120_000 } else { 5_000 };
        let sentinels = (0..3)
            .map(|_| start_sentinel(primary, failover_timeout_ms, &logs))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let set = SentinelSet {
            nodes,
            sentinels,
            link_delay: link.as_ref().map(|_| link_delay),
            _link: link,
        };
        // Each sentinel must know the replicas (to promote one) and the other two sentinels (to
        // reach the quorum and elect a leader) before the primary may die.
        for port in set.sentinel_ports() {
            until(
                "the sentinels to know the replicas and each other",
                Duration::from_secs(30),
                || async move {
                    let replicas_known: Vec<redis::Value> =
                        query(port, redis::cmd("SENTINEL").arg("REPLICAS").arg(SERVICE)).await?;
                    let peers: Vec<redis::Value> =
                        query(port, redis::cmd("SENTINEL").arg("SENTINELS").arg(SERVICE)).await?;
                    (replicas_known.len() == replicas && peers.len() == 2).then_some(())
                },
            )
            .await?;
        }
        set.wait_replicas_online(replicas).await?;
        Ok(Self::Sentinel(set))
    }

    /// Six durable Cluster nodes: three masters (the slots split evenly by `redis-cli --cluster
    /// create`) with one replica each.
    /// Every node logs to `logs`.
    pub async fn cluster(logs: &Path) -> anyhow::Result<Self> {
        let logs = std::path::absolute(logs)?;
        let mut nodes = Vec::new();
        for i in 0..6 {
            let bus = free_port().to_string();
            let timeout = NODE_TIMEOUT_MS.to_string();
            let log = logs
                .join(format!("redis-cluster-{}.log", i + 1))
                .display()
                .to_string();
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                // Given, not left at port + 10000, which can land in the ephemeral range.
                "--cluster-port",
                &bus,
                "--cluster-node-timeout",
                &timeout,
                "--repl-diskless-sync-delay",
                "0",
                "--logfile",
                &log,
            ];
            nodes.push(RedisServer::start_of(&redis7(), true, &args).await);
        }
        let ports: Vec<u16> = nodes.iter().map(|n| n.port()).collect();
        crate::cluster::form(&ports, 1)
            .await
            .map_err(anyhow::Error::msg)?;
        let set = ClusterSet { nodes };
        // Every replica attached and in sync before anything is killed.
        for node in &set.nodes[3..] {
            let port = node.port();
            until(
                "the Cluster's replicas to sync",
                Duration::from_secs(30),
                || async move {
                    let info: String = query(port, redis::cmd("INFO").arg("replication")).await?;
                    (info.contains("role:slave") && info.contains("master_link_status:up"))
                        .then_some(())
                },
            )
            .await?;
        }
        Ok(Self::Cluster(set))
    }

    /// The `REDIS_URL` every process of the run gets.
    pub fn url(&self) -> String {
        match self {
            Self::Single(server) => server.url(),
            Self::Sentinel(set) => format!(
                "redis+sentinel://{}/{SERVICE}",
                set.sentinel_ports()
                    .iter()
                    .map(|p| format!("127.0.0.1:{p}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Self::Cluster(set) => set
                .nodes
                .iter()
                .map(|n| format!("redis://127.0.0.1:{}", n.port()))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// What it is, for the report.
    pub fn describe(&self) -> String {
        match self {
            Self::Single(_) => "one redis-server".into(),
            Self::Sentinel(set) => format!(
                "a primary, {} replica(s){}, 3 sentinels (quorum 2, down after {DOWN_AFTER_MS} ms)",
                set.nodes.len() - 1,
                set.link_delay
                    .map(|d| format!(" {} ms behind", d.as_millis()))
                    .unwrap_or_default()
            ),
            Self::Cluster(_) => {
                format!("3 masters + 3 replicas (cluster-node-timeout {NODE_TIMEOUT_MS} ms)")
            }
        }
    }

    /// `kill -9`s the primary (behind Sentinel) or the master that serves `key`'s slot (on a
    /// Cluster). Nothing is restarted.
    pub async fn kill_primary(&mut self, key: &str) -> anyhow::Result<Killed> {
        match self {
            Self::Single(_) => anyhow::bail!("one server has no replica to promote"),
            Self::Sentinel(set) => {
                let port = set.primary().await?;
                let node = set
                    .nodes
                    .iter_mut()
                    .find(|n| n.port() == port)
                    .ok_or_else(|| anyhow::anyhow!("the primary on {port} is not one of ours"))?;
                node.kill();
                Ok(Killed {
                    port,
                    node_id: String::new(),
                    slot: 0,
                })
            }
            Self::Cluster(set) => {
                let any = set.nodes[0].port();
                let slot: u16 = query(any, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
                    .await
                    .ok_or_else(|| anyhow::anyhow!("CLUSTER KEYSLOT did not answer"))?;
                let (node_id, port) = owner(any, slot)
                    .await
                    .ok_or_else(|| anyhow::anyhow!("no master owns slot {slot}"))?;
                let node = set
                    .nodes
                    .iter_mut()
                    .find(|n| n.port() == port)
                    .ok_or_else(|| anyhow::anyhow!("the master on {port} is not one of ours"))?;
                node.kill();
                Ok(Killed {
                    port,
                    node_id,
                    slot,
                })
            }
        }
    }

    /// Waits until a replica has taken over from `killed`; returns the new primary's port.
    pub async fn wait_promoted(&self, killed: &Killed, within: Duration) -> anyhow::Result<u16> {
        match self {
            Self::Single(_) => anyhow::bail!("one server has no replica to promote"),
            Self::Sentinel(set) => {
                until("Sentinel to promote a replica", within, || async {
                    let port = set.primary().await.ok()?;
                    // Promoted means the node itself says so, not only the sentinels.
                    let role: Vec<redis::Value> = query(port, &redis::cmd("ROLE")).await?;
                    let master =
                        matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master");
                    (port != killed.port && master).then_some(port)
                })
                .await
            }
            Self::Cluster(set) => {
                let survivors: Vec<u16> = set
                    .nodes
                    .iter()
                    .map(|n| n.port())
                    .filter(|p| *p != killed.port)
                    .collect();
                until("the Cluster to promote a replica", within, || {
                    let survivors = survivors.clone();
                    async move {
                        for port in survivors {
                            if let Some((id, owner_port)) = owner(port, killed.slot).await
                                && id != killed.node_id
                            {
                                let info: String =
                                    query(port, redis::cmd("CLUSTER").arg("INFO")).await?;
                                return info.contains("cluster_state:ok").then_some(owner_port);
                            }
                        }
                        None
                    }
                })
                .await
            }
        }
    }

    /// The port of the node that takes writes of `key` now: the primary behind Sentinel, the
    /// master of its slot on a Cluster.
    pub async fn serves(&self, key: &str) -> anyhow::Result<u16> {
        match self {
            Self::Single(server) => Ok(server.port()),
            Self::Sentinel(set) => set.primary().await,
            Self::Cluster(set) => {
                let any = set.nodes[0].port();
                let slot: u16 = query(any, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
                    .await
                    .ok_or_else(|| anyhow::anyhow!("CLUSTER KEYSLOT did not answer"))?;
                owner(any, slot)
                    .await
                    .map(|(_, port)| port)
                    .ok_or_else(|| anyhow::anyhow!("no master owns slot {slot}"))
            }
        }
    }

    /// The single server, for the restarts scenario.
    pub fn single_mut(&mut self) -> Option<&mut RedisServer> {
        match self {
            Self::Single(server) => Some(server),
            _ => None,
        }
    }
}

impl SentinelSet {
    /// The ports the three sentinels listen on.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The port the sentinels name as the primary now (the first sentinel that answers).
    async fn primary(&self) -> anyhow::Result<u16> {
        for port in self.sentinel_ports() {
            let addr: Option<(String, String)> = query(
                port,
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(SERVICE),
            )
            .await;
            if let Some(port) = addr.and_then(|(_, p)| p.parse().ok()) {
                return Ok(port);
            }
        }
        anyhow::bail!("no sentinel named a primary")
    }

    /// Waits until the primary counts `n` replicas online.
    async fn wait_replicas_online(&self, n: usize) -> anyhow::Result<()> {
        let port = self.primary().await?;
        until(
            "the replicas to sync",
            Duration::from_secs(30),
            || async move {
                let info: String = query(port, redis::cmd("INFO").arg("replication")).await?;
                let online = info
                    .lines()
                    .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                    .count();
                (online >= n).then_some(())
            },
        )
        .await
    }
}

/// Starts a sentinel watching the primary on `primary`.
fn start_sentinel(primary: u16, failover_timeout_ms: u64, logs: &Path) -> anyhow::Result<Process> {
    let [port] = free_ports();
    let dir = std::env::temp_dir().join(format!("paywatch-chaos-sentinel-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}\n\
             sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {SERVICE} {failover_timeout_ms}\n\
             sentinel parallel-syncs {SERVICE} 2\n",
            dir.display(),
            logs.join(format!("sentinel-{port}.log")).display()
        ),
    )?;
    let child = Command::new(redis_server_binary())
        .arg(&conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Process { port, child, dir })
}

/// The master serving `slot` as the node on `port` sees it: its id and port.
async fn owner(port: u16, slot: u16) -> Option<(String, u16)> {
    let nodes: String = query(port, redis::cmd("CLUSTER").arg("NODES")).await?;
    nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = fields.get(2)?;
        if !flags.contains("master") || flags.contains("fail") {
            return None;
        }
        let serves = fields.iter().skip(8).any(|range| {
            let mut ends = range.splitn(2, '-');
            let lo: Option<u16> = ends.next().and_then(|s| s.parse().ok());
            let hi: Option<u16> = ends.next().map_or(lo, |s| s.parse().ok());
            matches!((lo, hi), (Some(lo), Some(hi)) if lo <= slot && slot <= hi)
        });
        let node_port = fields
            .get(1)?
            .split(['@', ','])
            .next()?
            .rsplit(':')
            .next()?;
        serves.then(|| Some((fields[0].to_string(), node_port.parse().ok()?)))?
    })
}
