//! A queue's depth as operators and autoscalers want it: jobs due now (the work waiting for a
//! worker) apart from jobs scheduled for later (a check due in hours is not backlog).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use serde::{Deserialize, Serialize};

use crate::metrics as metrics_names;
use crate::{QueueError, RedisQueue};

/// Depth per state and the earliest due time.
static DEPTH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/depth.lua")));

/// One queue's depth, read atomically by the Redis clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// Due now, waiting for a worker.
    pub due: u64,
    /// Due later.
    pub scheduled: u64,
    /// Leased by a worker.
    pub leased: u64,
    /// In the dead letters.
    pub dead: u64,
    /// Milliseconds until the earliest pending job falls due (negative: it has waited that
    /// long); `None` when no job is pending.
    pub next_due_in_ms: Option<i64>,
}

impl<T> RedisQueue<T> {
    /// Depth per state and the time until the next due job (one Redis call).
    pub async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let keys = &self.shared.keys;
        let mut conn = self.shared.conn.clone();
        let v: Vec<i64> = DEPTH
            .key(&keys.due)
            .key(&keys.leases)
            .key(&keys.dead)
            .invoke_async(&mut conn)
            .await?;
        let [now, due, scheduled, leased, dead, earliest] = v[..] else {
            return Err(QueueError::Protocol(format!(
                "depth reply of {} values",
                v.len()
            )));
        };
        let count = |n: i64| n.max(0) as u64;
        Ok(QueueDepth {
            due: count(due),
            scheduled: count(scheduled),
            leased: count(leased),
            dead: count(dead),
            next_due_in_ms: (earliest >= 0).then(|| earliest - now),
        })
    }
}

/// Publishes one queue's depth per state and the time until its next due job.
pub async fn record_depth<T>(queue: &RedisQueue<T>) -> Result<(), QueueError> {
    let depth = queue.depth().await?;
    let name = queue.config().name.clone();
    for (state, value) in [
        (metrics_names::state::DUE, depth.due),
        (metrics_names::state::SCHEDULED, depth.scheduled),
        (metrics_names::state::LEASED, depth.leased),
        (metrics_names::state::DEAD, depth.dead),
    ] {
        metrics::gauge!(metrics_names::JOBS, "queue" => name.clone(), "state" => state)
            .set(value as f64);
    }
    let next = depth
        .next_due_in_ms
        .map_or(f64::INFINITY, |ms| ms as f64 / 1000.0);
    metrics::gauge!(metrics_names::NEXT_DUE_SECONDS, "queue" => name).set(next);
    Ok(())
}

/// Publishes [`record_depth`] every `every` until `stop` turns true (errors are skipped: Redis
/// health has its own metrics).
pub async fn export_depth<T>(
    queue: RedisQueue<T>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let _ = record_depth(&queue).await;
    }
}
