//! The end-to-end run on a local three-master Redis Cluster against the same run on one Redis:
//! the same orders, workers, concurrency and shard count, only the Redis behind them differs.
//! Beside it, a Redis-bound measurement on the same servers: orders submitted through
//! `paywatch_submit` with nothing else running, which shows what the Cluster adds when Redis,
//! not the workers, is what runs out.

use std::time::Instant;

use paywatch_core::store::OrderStore;
use serde::Serialize;

use crate::e2e::{
    E2eOpts, SideResult, connect, example_order, flush, paywatch_run, start_sandbox,
    submit_pipelined,
};
use crate::fleet::{Fleet, cpu_seconds_of};
use crate::servers::{RedisCluster, RedisProcess};

/// Shards for three masters: two each with [`SLOTS`].
pub const CLUSTER_SHARDS: u32 = 6;

/// The masters' slot ranges: the hash tags `{check-payment.0}` … `{check-payment.5}` (slots 1264,
/// 5329, 9394, 13459, 1140, 5205) land two on each master (checked by a test below).
pub const SLOTS: [(u16, u16); 3] = [(0, 3000), (3001, 7000), (7001, 16383)];

/// Orders per submit pipeline in the Redis-bound measurement.
const SUBMIT_PIPELINE: usize = 1000;
/// Pipelines in flight: enough to keep all three masters busy at once.
const SUBMIT_PARALLEL: usize = 6;

/// Both topologies' runs.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterResult {
    /// One Redis.
    pub single: Vec<SideResult>,
    /// Three masters.
    pub cluster: Vec<SideResult>,
    /// Orders each submit-only run sent.
    pub submit_orders: usize,
    /// Submit-only runs on one Redis.
    pub submit_single: Vec<SubmitRun>,
    /// Submit-only runs on the three masters.
    pub submit_cluster: Vec<SubmitRun>,
}

/// One submit-only run: the rate, and where the cores went meanwhile.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SubmitRun {
    /// Orders per second.
    pub orders_per_sec: f64,
    /// Cores the Redis server process(es) used, on average.
    pub redis_cores: f64,
    /// Cores the driver (this process: encoding, routing, replies) used, on average.
    pub driver_cores: f64,
}

/// Runs paywatch's end-to-end run `runs` times on each topology, alternating.
pub async fn run(fleet: &Fleet, o: &E2eOpts, runs: usize) -> anyhow::Result<ClusterResult> {
    // The latency proxy fronts one server; a Cluster's redirects would go around it.
    anyhow::ensure!(
        o.rtt_ms.is_none(),
        "--rtt-ms works with a single Redis only (e2e)"
    );
    let o = E2eOpts {
        shards: o.shards.max(CLUSTER_SHARDS),
        ..o.clone()
    };
    let sandbox = start_sandbox().await?;
    let single = RedisProcess::start(&[])?;
    let cluster = RedisCluster::start(SLOTS)?;
    let submit_orders = o.orders * 5;
    let mut result = ClusterResult {
        single: Vec::new(),
        cluster: Vec::new(),
        submit_orders,
        submit_single: Vec::new(),
        submit_cluster: Vec::new(),
    };
    let runs = runs.max(1);
    for run in 1..=runs {
        let s = paywatch_run(&single.url(), &[single.pid()], fleet, &sandbox, &o).await?;
        eprintln!(
            "cluster {run}/{runs}: one Redis {:.0} orders/s",
            s.orders_per_sec
        );
        result.single.push(s);
        flush(&single.url()).await?;
        let c = paywatch_run(&cluster.url(), &cluster.pids(), fleet, &sandbox, &o).await?;
        eprintln!(
            "cluster {run}/{runs}: 3 masters {:.0} orders/s",
            c.orders_per_sec
        );
        result.cluster.push(c);
        for node in cluster.node_urls() {
            flush(&node).await?;
        }
        let s = submit_rate(&single.url(), &[single.pid()], o.shards, submit_orders).await?;
        flush(&single.url()).await?;
        let c = submit_rate(&cluster.url(), &cluster.pids(), o.shards, submit_orders).await?;
        for node in cluster.node_urls() {
            flush(&node).await?;
        }
        eprintln!(
            "cluster {run}/{runs}: submit only, one Redis {:.0} orders/s, 3 masters {:.0}",
            s.orders_per_sec, c.orders_per_sec
        );
        result.submit_single.push(s);
        result.submit_cluster.push(c);
    }
    Ok(result)
}

/// Submits `orders` example orders through `paywatch_submit` over `shards` shards, pipelined,
/// with no worker running; `redis_pids` are the servers behind `url`.
async fn submit_rate(
    url: &str,
    redis_pids: &[u32],
    shards: u32,
    orders: usize,
) -> anyhow::Result<SubmitRun> {
    let prefix = format!("pwsub:{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let conn = connect(url).await?;
    let store = OrderStore::new(conn.clone(), &prefix, shards);
    store.prepare().await?;
    let bodies: Vec<(String, String)> = (0..orders)
        .map(|i| {
            let id = format!("sub-{i}");
            let body = example_order(&id, &id);
            (id, body)
        })
        .collect();
    let cpu = || {
        let redis: f64 = redis_pids.iter().map(|p| cpu_seconds_of(*p)).sum();
        (redis, cpu_seconds_of(std::process::id()))
    };
    let (redis_before, driver_before) = cpu();
    let started = Instant::now();
    submit_pipelined(&store, &conn, &bodies, SUBMIT_PIPELINE, SUBMIT_PARALLEL).await?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let (redis_after, driver_after) = cpu();
    Ok(SubmitRun {
        orders_per_sec: orders as f64 / secs,
        redis_cores: (redis_after - redis_before) / secs,
        driver_cores: (driver_after - driver_before) / secs,
    })
}

/// The Cluster slot of a key (CRC16/XMODEM of its hash tag, modulo 16384), as Redis computes it.
#[cfg(test)]
fn slot(tag: &str) -> u16 {
    let mut crc: u16 = 0;
    for b in tag.bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_shards_land_two_on_each_of_three_masters() {
        assert_eq!((SLOTS[0].0, SLOTS[2].1), (0, 16383));
        assert!(SLOTS.windows(2).all(|w| w[0].1 + 1 == w[1].0));
        let master = |s: u16| {
            SLOTS
                .iter()
                .position(|(a, b)| (*a..=*b).contains(&s))
                .unwrap_or(3)
        };
        let mut per_master = [0; 4];
        for shard in 0..CLUSTER_SHARDS {
            per_master[master(slot(&paywatch_core::store::check_queue(shard)))] += 1;
        }
        assert_eq!(per_master, [2, 2, 2, 0]);
        // The known value from tests/it/cluster.rs: {check-payment.0} is slot 1264.
        assert_eq!(slot("check-payment.0"), 1264);
    }
}
