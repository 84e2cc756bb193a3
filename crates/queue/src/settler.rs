//! The settle batcher: one background task per queue and process that writes settles to Redis.
//!
//! Settles from all workers of a process go through one channel and are written in batches (one
//! script call for up to `settle_batch` jobs), so acks cost a fraction of a round trip each. A
//! handler's future resolves only once its settle is written to Redis. The same task runs lease
//! upkeep (`lease.rs`), so an extension never races a settle of the same job.
//!
//! With durable settles ([`DurableSettles`]) a batch also waits, after it is written, until the
//! replicas (and the primary's disk) have it: only then do its handlers hear back, and only then
//! does a flush (what every fetch waits for in that mode) answer. A primary that dies after a
//! settle was acknowledged has it on a replica that can be promoted.

use std::sync::Weak;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot};

use crate::DurableSettles;
use crate::backoff::Backoff;
use crate::settle::{SettleOp, SettleRequest};
use crate::shared::Shared;
use crate::{lease, scripts};

/// The first wait before writing a batch again after Redis failed it: short, because a settle
/// is what a handler (and the job's next run) waits for.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);

/// A settle waiting to be written, with whoever waits for its result, and (once written)
/// whether it applied.
type Pending = (
    String,
    String,
    SettleOp,
    Option<oneshot::Sender<bool>>,
    bool,
);

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
    let mut durable = Durable::default();
    loop {
        tokio::select! {
            first = rx.recv() => {
                let Some(first) = first else { return };
                let mut flushes = Vec::new();
                let mut extend_leases = false;
                let mut next = Some(first);
                while let Some(req) = next.take() {
                    match req {
                        SettleRequest::Settle { id, token, op, reply } => batch.push((id, token, op, reply, false)),
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
                    if let Some(settles) = shared.config.durable_settles {
                        // A broken connection means the primary may have changed, and `WAIT` on
                        // a new one proves nothing about writes made to the old: write the batch
                        // again (settles are idempotent per lease token), then wait again.
                        while !durable.wait(&shared, settles).await {
                            write_batch(&shared, &mut batch).await;
                        }
                    }
                    reply(&shared, &mut batch);
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
/// Leaves each settle's result next to it for [`reply`].
async fn write_batch(shared: &Shared, batch: &mut [Pending]) {
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
        for (id, token, op, _, _) in batch.iter() {
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
    // Settled (or found stale): no longer this process's to extend, whatever the wait below.
    let mut held = shared.held();
    for ((id, token, _, _, applied), code) in batch.iter_mut().zip(codes) {
        if held.get(id.as_str()) == Some(&*token) {
            held.remove(id.as_str());
        }
        // Written again after a broken wait: applied if either write applied it.
        *applied |= code == 1;
    }
}

/// Tells each settle's waiter whether it applied, once it is as durable as the queue asks.
fn reply(shared: &Shared, batch: &mut Vec<Pending>) {
    let queue = shared.config.name.clone();
    for (id, _, op, reply, applied) in batch.drain(..) {
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

/// The settler's side of durable settles: its own connection for `WAIT` (which blocks the
/// connection it runs on and counts that connection's writes) and what the server supports.
#[derive(Default)]
struct Durable {
    conn: Option<MultiplexedConnection>,
    /// Whether the server has `WAITAOF`, once asked (`COMMAND INFO`, not the version string).
    waitaof: Option<bool>,
    /// Whether the last wait fell short, so a long replica outage is logged once.
    behind: bool,
}

impl Durable {
    /// Waits until everything written to Redis so far is on the replicas (and the primary's
    /// disk) as `settles` asks, however long that takes: a settle that is not durable must not
    /// count as done. Held leases are extended meanwhile, so the jobs still running keep them.
    /// Returns `false`, at once, when the connection broke: the primary may have changed (a
    /// failover), so the caller must write again what it wants durable, then wait again.
    async fn wait(&mut self, shared: &Shared, settles: DurableSettles) -> bool {
        let mut backoff = Backoff::new(FIRST_RETRY_DELAY);
        let mut extended = Instant::now();
        let every = lease::extend_interval(shared.config.lease);
        loop {
            let error = match self.once(shared, settles).await {
                Ok(None) => {
                    if std::mem::take(&mut self.behind) {
                        tracing::info!(queue = %shared.config.name, "settles are durable again");
                    }
                    return true;
                }
                // WAIT already waited its timeout: ask again at once.
                Ok(Some(short)) => short,
                Err(e) => {
                    // The connection is suspect: a fresh one next time, after a pause; what was
                    // to be made durable may be gone with the old primary.
                    self.conn = None;
                    tracing::warn!(queue = %shared.config.name, error = %e, "waiting for the replicas failed; writing again what was to be durable");
                    tokio::time::sleep(backoff.next_delay()).await;
                    return false;
                }
            };
            if !std::mem::replace(&mut self.behind, true) {
                tracing::warn!(queue = %shared.config.name, problem = %error, "settles are not durable yet; this queue's workers wait (and fetch nothing) until they are");
            }
            if extended.elapsed() >= every {
                lease::extend_held(shared).await;
                extended = Instant::now();
            }
        }
    }

    /// One attempt: a marker write and `WAIT` (and `WAITAOF`) on the settler's own connection,
    /// sent together so they share one socket: `WAIT` covers the marker, and the marker comes
    /// after every settle already written on the shared connection. `Some(problem)` when the
    /// server answered but fewer than asked acknowledged in time.
    async fn once(
        &mut self,
        shared: &Shared,
        settles: DurableSettles,
    ) -> redis::RedisResult<Option<String>> {
        let timeout_ms = u64::try_from(settles.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let opened = shared
                    .client
                    .exclusive(settles.timeout + Duration::from_secs(5))
                    .await
                    .ok_or_else(|| {
                        redis::RedisError::from((
                            redis::ErrorKind::InvalidClientConfig,
                            "durable settles need one primary (a single server or Sentinel), not a Cluster",
                        ))
                    })??;
                self.conn.insert(opened)
            }
        };
        if settles.local_fsync && self.waitaof.is_none() {
            let info: Vec<Option<redis::Value>> = redis::cmd("COMMAND")
                .arg("INFO")
                .arg("WAITAOF")
                .query_async(conn)
                .await?;
            let has = info.first().is_some_and(Option::is_some);
            if !has {
                tracing::warn!(queue = %shared.config.name, "PAYWATCH_DURABLE_FSYNC needs WAITAOF, which this Redis lacks: settles wait for replicas only");
            }
            self.waitaof = Some(has);
        }
        let mut pipe = redis::pipe();
        pipe.cmd("INCR").arg(&shared.keys.sync).ignore();
        pipe.cmd("WAIT").arg(settles.replicas).arg(timeout_ms);
        let fsync = settles.local_fsync && self.waitaof == Some(true);
        if fsync {
            pipe.cmd("WAITAOF").arg(1).arg(0).arg(timeout_ms);
        } else {
            // Keeps the reply's shape: "the disk" counts as acknowledged.
            pipe.cmd("ECHO").arg(1);
        }
        let (replicas, local): (u32, redis::Value) = pipe.query_async(conn).await?;
        if replicas < settles.replicas {
            return Ok(Some(format!(
                "{replicas} of {} replicas acknowledged within {:?}",
                settles.replicas, settles.timeout
            )));
        }
        if fsync {
            let local: (u32, u32) = redis::from_redis_value(local)?;
            if local.0 < 1 {
                return Ok(Some(format!(
                    "the primary's append-only file did not have them within {:?}",
                    settles.timeout
                )));
            }
        }
        Ok(None)
    }
}
