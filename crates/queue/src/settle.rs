//! Settling jobs: the middleware that turns a handler's result into complete / reschedule /
//! retry / dead-letter, and the background batcher that writes those settles to Redis.
//!
//! Settles from all workers of a process go through one channel and are written in batches (one
//! script call for up to `settle_batch` jobs), so acks cost a fraction of a round trip each. A
//! handler's future resolves only once its settle is durable in Redis. The same background task
//! extends the leases this process holds.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use apalis_core::error::{AbortError, BoxDynError, RetryAfterError};
use apalis_core::task::Task;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tower_layer::Layer;
use tower_service::Service;

use crate::outcome::{JobOutcome, Settlement};
use crate::queue::Shared;
use crate::{JobInfo, QueueError, RetryPolicy, scripts};

/// Longest error text kept with a retrying or dead job.
const MAX_ERROR_LEN: usize = 2000;

/// One way to settle a leased job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SettleOp {
    Complete,
    /// `payload: None` keeps the stored payload.
    Reschedule {
        after_ms: u64,
        payload: Option<String>,
    },
    Retry {
        after_ms: u64,
        error: String,
    },
    Dead {
        reason: String,
    },
    Release,
}

impl SettleOp {
    fn name(&self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Reschedule { .. } => "reschedule",
            Self::Retry { .. } => "retry",
            Self::Dead { .. } => "dead",
            Self::Release => "release",
        }
    }
}

/// A message to the background settler.
#[derive(Debug)]
pub(crate) enum SettleRequest {
    /// Settle one job; `reply` learns whether it applied (false: the lease was lost).
    Settle {
        id: String,
        token: String,
        op: SettleOp,
        reply: Option<oneshot::Sender<bool>>,
    },
    /// Answered once everything sent before it is written.
    Flush(oneshot::Sender<()>),
}

/// Sends a settle and waits until it is durable. `None` if the settler is gone.
pub(crate) async fn settle(shared: &Shared, id: &str, token: &str, op: SettleOp) -> Option<bool> {
    let (tx, rx) = oneshot::channel();
    shared
        .settle_tx
        .send(SettleRequest::Settle {
            id: id.to_string(),
            token: token.to_string(),
            op,
            reply: Some(tx),
        })
        .ok()?;
    rx.await.ok()
}

/// Sends a settle without waiting for it.
pub(crate) fn settle_later(shared: &Shared, id: &str, token: &str, op: SettleOp) {
    let _ = shared.settle_tx.send(SettleRequest::Settle {
        id: id.to_string(),
        token: token.to_string(),
        op,
        reply: None,
    });
}

/// Waits until every settle sent so far is written.
pub(crate) async fn flush(shared: &Shared) {
    let (tx, rx) = oneshot::channel();
    if shared.settle_tx.send(SettleRequest::Flush(tx)).is_ok() {
        let _ = rx.await;
    }
}

/// Hands back every lease this process holds.
pub(crate) async fn release_held(shared: &Shared) -> Result<usize, QueueError> {
    let held: Vec<(String, String)> = lock_held(shared)
        .iter()
        .map(|(id, token)| (id.clone(), token.clone()))
        .collect();
    let mut released = 0;
    let waits: Vec<_> = held
        .iter()
        .map(|(id, token)| settle(shared, id, token, SettleOp::Release))
        .collect();
    for applied in futures::future::join_all(waits).await {
        if applied == Some(true) {
            released += 1;
        }
    }
    Ok(released)
}

pub(crate) fn lock_held(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
    // A poisoned map only means a panic elsewhere; the data (id → token) is still valid.
    shared.held.lock().unwrap_or_else(|e| e.into_inner())
}

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
    let mut extend = tokio::time::interval((lease / 3).max(Duration::from_millis(100)));
    extend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(batch_max);
    loop {
        tokio::select! {
            first = rx.recv() => {
                let Some(first) = first else { return };
                let mut flushes = Vec::new();
                let mut next = Some(first);
                while let Some(req) = next.take() {
                    match req {
                        SettleRequest::Settle { id, token, op, reply } => batch.push((id, token, op, reply)),
                        SettleRequest::Flush(tx) => flushes.push(tx),
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
                for tx in flushes {
                    let _ = tx.send(());
                }
            }
            _ = extend.tick() => {
                let Some(shared) = weak.upgrade() else { return };
                extend_held(&shared).await;
            }
        }
    }
}

type Pending = (String, String, SettleOp, Option<oneshot::Sender<bool>>);

/// Writes one batch, retrying with backoff while Redis is unreachable: a settle is never dropped.
async fn write_batch(shared: &Shared, batch: &mut Vec<Pending>) {
    let keys = &shared.keys;
    let mut backoff = Duration::from_millis(50);
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
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    let queue = shared.config.name.clone();
    let mut held = lock_held(shared);
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

/// Extends every lease this process holds, in bounded chunks.
async fn extend_held(shared: &Shared) {
    let held: Vec<(String, String)> = lock_held(shared)
        .iter()
        .map(|(id, token)| (id.clone(), token.clone()))
        .collect();
    for chunk in held.chunks(500) {
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
        if let Ok(lost) = result
            && !lost.is_empty()
        {
            metrics::counter!(crate::metrics::LEASES_LOST_TOTAL, "queue" => shared.config.name.clone()).increment(lost.len() as u64);
            tracing::warn!(queue = %shared.config.name, lost = lost.len(), "leases lost before their jobs finished; those jobs may run twice");
        }
    }
}

/// Decides how to settle a run from the handler's result.
pub(crate) fn decide<R: JobOutcome>(
    result: &Result<R, BoxDynError>,
    attempt: u32,
    policy: &RetryPolicy,
) -> SettleOp {
    match result {
        Ok(outcome) => match outcome.settlement() {
            Ok(Settlement::Complete) => SettleOp::Complete,
            Ok(Settlement::Reschedule { after_ms, payload }) => {
                SettleOp::Reschedule { after_ms, payload }
            }
            Err(e) => SettleOp::Dead {
                reason: truncate(format!("could not encode the rescheduled arguments: {e}")),
            },
        },
        Err(e) => {
            if let Some(abort) = e.downcast_ref::<AbortError>() {
                let reason = std::error::Error::source(abort)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| abort.to_string());
                return SettleOp::Dead {
                    reason: truncate(reason),
                };
            }
            let explicit = e
                .downcast_ref::<RetryAfterError>()
                .map(RetryAfterError::get_duration);
            let delay = match (explicit, policy.delay_after(attempt)) {
                (_, None) => None,
                (Some(d), Some(_)) => Some(d),
                (None, Some(d)) => Some(d),
            };
            match delay {
                Some(d) => SettleOp::Retry {
                    after_ms: d.as_millis() as u64,
                    error: truncate(e.to_string()),
                },
                None => SettleOp::Dead {
                    reason: truncate(format!("failed {attempt} times; last error: {e}")),
                },
            }
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_LEN {
        let mut cut = MAX_ERROR_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// apalis middleware that settles each job in Redis once its handler returns.
#[derive(Clone)]
pub struct SettleLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SettleLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettleLayer")
            .field("queue", &self.shared.config.name)
            .finish()
    }
}

impl SettleLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for SettleLayer {
    type Service = SettleService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SettleService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`SettleLayer`] wraps around a worker's handler.
#[derive(Clone)]
pub struct SettleService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for SettleService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettleService")
            .field("queue", &self.shared.config.name)
            .finish()
    }
}

impl<S, T> Service<Task<T>> for SettleService<S>
where
    S: Service<Task<T>>,
    S::Response: JobOutcome + Send + 'static,
    S::Error: Into<BoxDynError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<S::Response, BoxDynError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<T>) -> Self::Future {
        let info = task.ctx().data().get::<JobInfo>().cloned();
        let fut = self.inner.call(task);
        let shared = self.shared.clone();
        async move {
            let started = Instant::now();
            let result = fut.await.map_err(Into::into);
            let Some(info) = info else { return result };
            let queue = shared.config.name.clone();
            metrics::histogram!(crate::metrics::RUN_SECONDS, "queue" => queue.clone())
                .record(started.elapsed().as_secs_f64());
            let op = decide(&result, info.attempt, &shared.config.retry);
            if let SettleOp::Dead { reason } = &op {
                tracing::warn!(queue = %queue, job = %info.id, attempt = info.attempt, reason = %reason, "job dead-lettered");
                crate::metrics::dead_lettered(&queue, "failed");
            }
            settle(&shared, info.id.as_str(), &info.token, op).await;
            result
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Next;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(2),
            multiplier: 2.0,
            max_delay: Duration::from_secs(60),
            jitter: 0.0,
        }
    }

    #[test]
    fn success_completes_or_reschedules() {
        let ok: Result<(), BoxDynError> = Ok(());
        assert_eq!(decide(&ok, 1, &policy()), SettleOp::Complete);
        let again: Result<Next<u32>, BoxDynError> = Ok(Next::Reschedule {
            after: Duration::from_millis(1500),
            args: 7,
        });
        assert_eq!(
            decide(&again, 1, &policy()),
            SettleOp::Reschedule {
                after_ms: 1500,
                payload: Some("7".into())
            }
        );
    }

    #[test]
    fn after_keeps_the_stored_arguments() {
        let again: Result<Next<u32>, BoxDynError> = Ok(Next::After(Duration::from_secs(2)));
        assert_eq!(
            decide(&again, 1, &policy()),
            SettleOp::Reschedule {
                after_ms: 2000,
                payload: None
            }
        );
    }

    #[test]
    fn errors_retry_then_die() {
        let err: Result<(), BoxDynError> = Err("boom".into());
        assert_eq!(
            decide(&err, 1, &policy()),
            SettleOp::Retry {
                after_ms: 2000,
                error: "boom".into()
            }
        );
        assert!(
            matches!(decide(&err, 3, &policy()), SettleOp::Dead { reason } if reason.contains("boom"))
        );
    }

    #[test]
    fn abort_dies_at_once_and_retry_after_is_honoured() {
        let abort: Result<(), BoxDynError> = Err(Box::new(AbortError::new("bad credentials")));
        assert_eq!(
            decide(&abort, 1, &policy()),
            SettleOp::Dead {
                reason: "bad credentials".into()
            }
        );
        let later: Result<(), BoxDynError> = Err(Box::new(RetryAfterError::new(
            "429",
            Duration::from_secs(9),
        )));
        assert!(matches!(
            decide(&later, 1, &policy()),
            SettleOp::Retry { after_ms: 9000, .. }
        ));
    }
}
