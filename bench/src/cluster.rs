//! The end-to-end run on a local three-master Redis Cluster against the same run on one Redis:
//! the same orders, workers, concurrency and shard count, only the Redis behind them differs.

use serde::Serialize;

use crate::e2e::{E2eOpts, SideResult, flush, paywatch_run, start_sandbox};
use crate::fleet::Fleet;
use crate::servers::{RedisCluster, RedisProcess};

/// Shards for three masters: two each with [`SLOTS`].
pub const CLUSTER_SHARDS: u32 = 6;

/// The masters' slot ranges: the hash tags `{check-payment.0}` … `{check-payment.5}` (slots 1264,
/// 5329, 9394, 13459, 1140, 5205) land two on each master (checked by a test below).
pub const SLOTS: [(u16, u16); 3] = [(0, 3000), (3001, 7000), (7001, 16383)];

/// Both topologies' runs.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterResult {
    /// One Redis.
    pub single: Vec<SideResult>,
    /// Three masters.
    pub cluster: Vec<SideResult>,
}

/// Runs paywatch's end-to-end run `runs` times on each topology, alternating.
pub async fn run(fleet: &Fleet, o: &E2eOpts, runs: usize) -> anyhow::Result<ClusterResult> {
    let o = E2eOpts {
        shards: o.shards.max(CLUSTER_SHARDS),
        ..o.clone()
    };
    let sandbox = start_sandbox().await?;
    let single = RedisProcess::start(&[])?;
    let cluster = RedisCluster::start(SLOTS)?;
    let mut result = ClusterResult {
        single: Vec::new(),
        cluster: Vec::new(),
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
    }
    Ok(result)
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
        // The known value from tests/tests/cluster.rs: {check-payment.0} is slot 1264.
        assert_eq!(slot("check-payment.0"), 1264);
    }
}
