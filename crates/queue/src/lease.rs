//! Lease upkeep: extending the leases this process holds while their jobs run, and handing them
//! back when a run is abandoned.
//!
//! A lease is the only liveness signal (no heartbeats): while a job runs, its lease is pushed
//! forward every third of a lease, so two extensions in a row can fail before another worker
//! may reclaim the job.

use std::time::Duration;

use crate::settle::SettleOp;
use crate::shared::Shared;
use crate::{QueueError, scripts};

/// Extensions per lease period: the margin of missed extensions before a lease expires.
const EXTENSIONS_PER_LEASE: u32 = 3;

/// The shortest extension interval, so a tiny test lease does not turn into a busy loop.
const MIN_EXTEND_INTERVAL: Duration = Duration::from_millis(100);

/// Leases extended per script call: keeps every script bounded however many jobs are held.
const EXTEND_CHUNK: usize = 500;

/// How often held leases are extended.
pub(crate) fn extend_interval(lease: Duration) -> Duration {
    (lease / EXTENSIONS_PER_LEASE).max(MIN_EXTEND_INTERVAL)
}

/// Extends every lease this process holds, in bounded chunks. True when every chunk reached
/// Redis (some leases may still have been lost; those are logged and counted).
pub(crate) async fn extend_held(shared: &Shared) -> bool {
    let held = shared.held_snapshot();
    let mut reached = true;
    for chunk in held.chunks(EXTEND_CHUNK) {
        let mut inv = scripts::EXTEND.prepare_invoke();
        inv.key(&shared.keys.leases)
            .key(&shared.keys.tokens)
            .arg(shared.config.lease.as_millis() as u64);
        for (id, token) in chunk {
            inv.arg(id).arg(token);
        }
        let mut conn = shared.conn.clone();
        let result = inv.invoke_async::<Vec<String>>(&mut conn).await;
        shared.observe("extend", &result);
        match result {
            Ok(lost) if !lost.is_empty() => {
                metrics::counter!(crate::metrics::LEASES_LOST_TOTAL, "queue" => shared.config.name.clone()).increment(lost.len() as u64);
                tracing::warn!(queue = %shared.config.name, lost = lost.len(), "leases lost before their jobs finished; those jobs may run twice");
            }
            Ok(_) => {}
            Err(_) => reached = false,
        }
    }
    reached
}

/// Hands back every lease this process holds, so other workers take those jobs at once.
pub(crate) async fn release_held(shared: &Shared) -> Result<usize, QueueError> {
    let held = shared.held_snapshot();
    let waits = held
        .iter()
        .map(|(id, token)| shared.settle(id, token, SettleOp::Release));
    let applied = futures::future::join_all(waits).await;
    Ok(applied.into_iter().filter(|a| *a == Some(true)).count())
}
