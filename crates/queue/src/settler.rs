//! The settle batcher: one background task per queue and process that writes settles to Redis.
//!
//! Settles from all workers of a process go through one channel and are written in batches (one
//! script call for up to `settle_batch` jobs), so acks cost a fraction of a round trip each. A
//! handler's future resolves only once its settle is durable in Redis. The same task runs lease
//! upkeep (`lease.rs`), so an extension never races a settle of the same job.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::backoff::Backoff;
use crate::settle::{SettleOp, SettleRequest};
use crate::shared::Shared;
use crate::{lease, scripts};

/// The first wait before writing a batch again after Redis failed it: short, because a settle
/// is what a handler (and the job's next run) waits for.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);

/// A settle waiting to be written, with whoever waits for its result.
type Pending = (String, String, SettleOp, Option<oneshot::Sender<bool>>);

/// The background task: batches settles, extends leases. Holds only a weak reference so it ends
/// when the last queue handle is dropped (the channel closes).
pub(crate) async fn run_settler(
    weak: Weak<Shared>,
    mut rx: mpsc::UnboundedReceiver<SettleRequest>,
) {
    let (lease, batch_max) = match weak.upgrade() {
        Some(s) => (s.config.lease, s.config.settle_batch.max(1)),
        None => return,
    };
    let mut extend = tokio::time::interval(lease::extend_interval(lease));
    extend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(batch_max);
    loop {
        tokio::select! {
            first = rx.recv() => {
                let Some(first) = first else { return };
                let mut flushes = Vec::new();
                let mut extend_leases = false;
                let mut next = Some(first);
                while let Some(req) = next.take() {
                    match req {
                        SettleRequest::Settle { id, token, op, reply } => batch.push((id, token, op, reply)),
                        SettleRequest::Flush { reply, extend_leases: extend } => {
                            extend_leases |= extend;
                            flushes.push(reply);
                        }
                    }
                    if batch.len() >= batch_max || !flushes.is_empty() {
                        break;
                    }
                    next = rx.try_recv().ok();
                }
                let Some(shared) = weak.upgrade() else { return };
                if !batch.is_empty() {
                    write_batch(&shared, &mut batch).await;
                }
                // After the settles: a job settled above is no longer held, so it is neither extended
                // nor reported as a lost lease.
                let reached = !extend_leases || lease::extend_held(&shared).await;
                for reply in flushes {
                    let _ = reply.send(reached);
                }
            }
            _ = extend.tick() => {
                let Some(shared) = weak.upgrade() else { return };
                lease::extend_held(&shared).await;
            }
        }
    }
}

/// Writes one batch, retrying with backoff while Redis is unreachable: a settle is never dropped.
async fn write_batch(shared: &Shared, batch: &mut Vec<Pending>) {
    let keys = &shared.keys;
    let mut backoff = Backoff::new(FIRST_RETRY_DELAY);
    let codes: Vec<i64> = loop {
        let mut inv = scripts::SETTLE.prepare_invoke();
        inv.key(&keys.jobs)
            .key(&keys.due)
            .key(&keys.leases)
            .key(&keys.tokens)
            .key(&keys.attempts)
            .key(&keys.errors)
            .key(&keys.dead)
            .key(&keys.dead_index)
            .key(&keys.stats)
            .key(&keys.signal)
            .key(&keys.done)
            .key(&keys.promoted)
            .arg(
                shared
                    .config
                    .keep_completed
                    .map_or(0, |d| d.as_millis() as u64),
            );
        for (id, token, op, _) in batch.iter() {
            let (a, b): (u64, &str) = match op {
                SettleOp::Complete | SettleOp::Release => (0, ""),
                SettleOp::Reschedule { after_ms, payload } => {
                    (*after_ms, payload.as_deref().unwrap_or(""))
                }
                SettleOp::Retry { after_ms, error } => (*after_ms, error),
                SettleOp::Dead { reason } => (0, reason),
            };
            inv.arg(op.name()).arg(id).arg(token).arg(a).arg(b);
        }
        let mut conn = shared.conn.clone();
        let result = inv.invoke_async::<Vec<i64>>(&mut conn).await;
        shared.observe("settle", &result);
        match result {
            Ok(codes) if codes.len() == batch.len() => break codes,
            Ok(codes) => {
                tracing::error!(
                    got = codes.len(),
                    want = batch.len(),
                    "settle reply has the wrong length"
                );
                break vec![0; batch.len()];
            }
            Err(_) => tokio::time::sleep(backoff.next_delay()).await,
        }
    };
    let queue = shared.config.name.clone();
    let mut held = shared.held();
    for ((id, token, op, reply), code) in batch.drain(..).zip(codes) {
        if held.get(&id) == Some(&token) {
            held.remove(&id);
        }
        let applied = code == 1;
        if applied {
            crate::metrics::settled(&queue, op.name());
        } else {
            metrics::counter!(crate::metrics::STALE_SETTLES_TOTAL, "queue" => queue.clone())
                .increment(1);
            tracing::warn!(queue = %queue, job = %id, op = op.name(), "settle ignored: the lease was lost (the job ran too long or Redis restarted); another run owns it");
        }
        if let Some(reply) = reply {
            let _ = reply.send(applied);
        }
    }
}
