//! Private Redis servers for the benchmarks that must not share a Redis with anyone: one
//! `redis-server`, or a three-master Cluster, on free loopback ports, killed when dropped.
//!
//! Command counts (idle cost), `used_memory` (scale) and `SLOWLOG` only mean something on a server
//! nothing else talks to, and a throughput run should not be slowed by other people's tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A free loopback port, found by binding port 0.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Two distinct free loopback ports (both held until both are chosen).
fn two_free_ports() -> anyhow::Result<[u16; 2]> {
    let held = [
        TcpListener::bind("127.0.0.1:0")?,
        TcpListener::bind("127.0.0.1:0")?,
    ];
    Ok([held[0].local_addr()?.port(), held[1].local_addr()?.port()])
}

/// One `redis-server` child process.
#[derive(Debug)]
pub struct RedisProcess {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl RedisProcess {
    /// Starts `redis-server` (keeping nothing on disk) with `extra` arguments and waits until it
    /// answers PING.
    pub fn start(extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_on(free_port()?, extra)
    }

    /// Same, on `port`.
    fn start_on(port: u16, extra: &[&str]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("paywatch-bench-redis-{port}"));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new(redis_server_binary())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (Debian: apt-get install redis-server)")?;
        let server = Self { port, dir, child };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        while !ping(&self.url()) {
            if start.elapsed() > Duration::from_secs(10) {
                bail!(
                    "redis-server on port {} did not answer within 10 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its process id (to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters (no replicas) on free loopback ports.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisProcess>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers owning the slot ranges `slots` (three inclusive
    /// ranges covering 0–16383) and joins them with `CLUSTER MEET`.
    ///
    /// Not `redis-cli --cluster create`: its even split puts paywatch's first shards' hash tags
    /// mostly on one master, and the benchmark wants each master to carry the same share.
    pub fn start(slots: [(u16, u16); 3]) -> anyhow::Result<Self> {
        let nodes = (0..3)
            .map(|_| -> anyhow::Result<(RedisProcess, u16)> {
                // The bus port is named: Redis's default, port + 10000, can pass 65535 for a
                // port the kernel handed out, and the node would not start.
                let [port, bus] = two_free_ports()?;
                let node = RedisProcess::start_on(
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-port",
                        &bus.to_string(),
                    ],
                )?;
                Ok((node, bus))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (nodes, buses): (Vec<RedisProcess>, Vec<u16>) = nodes.into_iter().unzip();
        for ((node, bus), (first, last)) in nodes.iter().zip(&buses).zip(slots) {
            let mut conn = redis::Client::open(node.url())?.get_connection()?;
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query(&mut conn)?;
            if node.port != nodes[0].port {
                let mut first_node = redis::Client::open(nodes[0].url())?.get_connection()?;
                let _: () = redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(node.port)
                    .arg(bus)
                    .query(&mut first_node)?;
            }
        }
        let start = Instant::now();
        for node in &nodes {
            while !cluster_ok(&node.url()) {
                if start.elapsed() > Duration::from_secs(30) {
                    bail!("the cluster did not reach cluster_state:ok within 30 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(Self { nodes })
    }

    /// The seed URLs, comma-separated (paywatch's `REDIS_URL` for a Cluster).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(RedisProcess::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Each master's process id.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(RedisProcess::pid).collect()
    }

    /// Each master's URL.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisProcess::url).collect()
    }
}

fn redis_server_binary() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_string())
}

fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut conn).is_ok()
}

fn cluster_ok(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
        return false;
    };
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query::<String>(&mut conn)
        .is_ok_and(|info| info.contains("cluster_state:ok"))
}
