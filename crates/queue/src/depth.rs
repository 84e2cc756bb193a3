//! A queue's depth as operators and autoscalers want it: jobs due now (the work waiting for a
//! worker) apart from jobs scheduled for later (a check due in hours is not backlog).

use std::sync::LazyLock;

use redis::Script;
use serde::{Deserialize, Serialize};

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
