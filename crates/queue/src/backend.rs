//! The apalis backend: `WorkerBuilder::new(name).backend(queue).build(handler)`.
//!
//! A worker leases jobs in batches and hands them to apalis one at a time. It never returns an
//! error to apalis (that would stop the worker): Redis outages are retried with backoff, and a
//! payload that does not decode is dead-lettered with the decode error while the rest of the
//! batch goes on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::{Backend, BackendConfig, finalize::Ephemeral};
use apalis_core::task::{Task, builder::TaskBuilder, task_id::TaskId};
use apalis_core::worker::context::WorkerContext;
use futures::future::BoxFuture;
use rand::Rng;
use serde::de::DeserializeOwned;

use crate::queue::Shared;
use crate::settle::{self, SettleLayer, SettleOp, lock_held};
use crate::{JobId, JobInfo, QueueConfig, QueueError, RedisQueue, scripts, wake};

/// A job leased by one fetch, not yet handed to apalis.
#[derive(Debug)]
pub(crate) struct Leased {
    id: String,
    payload: String,
    attempts: u32,
    due_ms: u64,
    leased_ms: u64,
    token: String,
}

/// Per-worker state of a queue handle used as a backend.
pub(crate) struct WorkerState {
    buffer: VecDeque<Leased>,
    fetch: Option<BoxFuture<'static, Vec<Leased>>>,
    /// Set while the fetch future has a request in flight (dropping it then would strand leases).
    requesting: Arc<AtomicBool>,
    closing: Option<BoxFuture<'static, ()>>,
}

impl WorkerState {
    fn new() -> Self {
        Self {
            buffer: VecDeque::new(),
            fetch: None,
            requesting: Arc::new(AtomicBool::new(false)),
            closing: None,
        }
    }
}

/// Starts the process-wide settler and wake-up listener of this queue, once.
fn ensure_background(shared: &Arc<Shared>) {
    if shared.background_started.swap(true, Ordering::SeqCst) {
        return;
    }
    metrics::gauge!(crate::metrics::REDIS_UP, "queue" => shared.config.name.clone()).set(1.0);
    crate::metrics::register_worker(&shared.config.name);
    let rx = shared
        .settle_rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(rx) = rx {
        tokio::spawn(settle::run_settler(Arc::downgrade(shared), rx));
    }
    tokio::spawn(wake::run_listener(
        Arc::downgrade(shared),
        shared.wakeup.clone(),
    ));
}

/// Leases the next batch, waiting as long as nothing is due. Never fails: errors back off.
async fn next_batch(shared: Arc<Shared>, requesting: Arc<AtomicBool>) -> Vec<Leased> {
    let config = &shared.config;
    let mut wait: Option<Duration> = None;
    let mut error_backoff = Duration::from_millis(100);
    loop {
        if let Some(d) = wait {
            wake::idle_wait(&shared.wakeup, d).await;
        }
        let token = format!("{:016x}", rand::rng().random::<u64>());
        requesting.store(true, Ordering::SeqCst);
        let result = fetch(&shared, &token).await;
        shared.observe("fetch", &result);
        match result {
            Ok(batch) => {
                requesting.store(false, Ordering::SeqCst);
                error_backoff = Duration::from_millis(100);
                if batch.reclaimed > 0 {
                    metrics::counter!(crate::metrics::LEASES_RECLAIMED_TOTAL, "queue" => config.name.clone()).increment(batch.reclaimed);
                    tracing::info!(queue = %config.name, jobs = batch.reclaimed, "reclaimed jobs whose lease expired");
                }
                if !batch.jobs.is_empty() {
                    return batch.jobs;
                }
                // Sleep until the earliest due job or lease expiry, judged by the Redis clock.
                let mut ms = config.idle_poll.as_millis() as i64;
                for at in [batch.next_due, batch.lease_head] {
                    if at >= 0 {
                        ms = ms.min((at - batch.now).max(1));
                    }
                }
                wait = Some(Duration::from_millis(ms.max(1) as u64));
            }
            Err(_) => {
                // The script may have run before the connection broke; those leases expire.
                requesting.store(false, Ordering::SeqCst);
                wait = Some(error_backoff);
                error_backoff = (error_backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

struct Fetched {
    now: i64,
    next_due: i64,
    lease_head: i64,
    reclaimed: u64,
    jobs: Vec<Leased>,
}

async fn fetch(shared: &Shared, token: &str) -> Result<Fetched, redis::RedisError> {
    let keys = &shared.keys;
    let config = &shared.config;
    let mut conn = shared.conn.clone();
    let (now, next_due, lease_head, reclaimed, flat): (i64, i64, i64, u64, Vec<redis::Value>) =
        scripts::FETCH
            .key(&keys.jobs)
            .key(&keys.due)
            .key(&keys.leases)
            .key(&keys.tokens)
            .key(&keys.attempts)
            .arg(config.batch_size)
            .arg(config.lease.as_millis() as u64)
            .arg(token)
            .arg(config.reclaim_limit)
            .invoke_async(&mut conn)
            .await?;
    let mut jobs = Vec::with_capacity(flat.len() / 4);
    let mut held = lock_held(shared);
    for quad in flat.chunks_exact(4) {
        let id: String = redis::from_redis_value_ref(&quad[0])?;
        // Bytes, not String: a payload that is not UTF-8 must reach the dead letters, not fail
        // the whole fetch.
        let payload: Vec<u8> = redis::from_redis_value_ref(&quad[1])?;
        let attempts: u32 = redis::from_redis_value_ref(&quad[2])?;
        let due_ms: u64 = redis::from_redis_value_ref(&quad[3])?;
        held.insert(id.clone(), token.to_string());
        jobs.push(Leased {
            id,
            payload: String::from_utf8_lossy(&payload).into_owned(),
            attempts,
            due_ms,
            leased_ms: now.max(0) as u64,
            token: token.to_string(),
        });
    }
    drop(held);
    if !jobs.is_empty() {
        let queue = config.name.clone();
        metrics::counter!(crate::metrics::JOBS_FETCHED_TOTAL, "queue" => queue.clone())
            .increment(jobs.len() as u64);
        let lateness = metrics::histogram!(crate::metrics::LATENESS_SECONDS, "queue" => queue);
        for job in &jobs {
            lateness.record((now as f64 - job.due_ms as f64).max(0.0) / 1000.0);
        }
    }
    Ok(Fetched {
        now,
        next_due,
        lease_head,
        reclaimed,
        jobs,
    })
}

impl<T> RedisQueue<T>
where
    T: DeserializeOwned,
{
    /// Turns a leased job into an apalis task, or dead-letters it when it cannot run.
    fn admit(shared: &Shared, job: Leased) -> Option<Task<T>> {
        let queue = &shared.config.name;
        let max = shared.config.retry.max_attempts;
        if job.attempts > max {
            let reason = format!(
                "started {} times without finishing (more than max_attempts {max}): its workers likely crashed or were killed while running it",
                job.attempts
            );
            tracing::warn!(queue = %queue, job = %job.id, "{reason}");
            crate::metrics::dead_lettered(queue, "crashed");
            settle::settle_later(shared, &job.id, &job.token, SettleOp::Dead { reason });
            return None;
        }
        let args = match serde_json::from_str::<T>(&job.payload) {
            Ok(args) => args,
            Err(e) => {
                let reason = format!("payload does not decode: {e}");
                tracing::warn!(queue = %queue, job = %job.id, reason = %reason, "poison job dead-lettered");
                crate::metrics::dead_lettered(queue, "poison");
                settle::settle_later(shared, &job.id, &job.token, SettleOp::Dead { reason });
                return None;
            }
        };
        let id = match JobId::new(job.id.clone()) {
            Ok(id) => id,
            Err(e) => {
                settle::settle_later(
                    shared,
                    &job.id,
                    &job.token,
                    SettleOp::Dead {
                        reason: e.to_string(),
                    },
                );
                return None;
            }
        };
        let info = JobInfo {
            id,
            queue: queue.clone(),
            attempt: job.attempts,
            due_ms: job.due_ms,
            leased_ms: job.leased_ms,
            token: job.token,
        };
        Some(
            TaskBuilder::new(args)
                .task_id(TaskId::from_string(job.id))
                // apalis counts the run itself when it starts the task.
                .attempt(job.attempts.saturating_sub(1) as usize)
                .data(info)
                .build(),
        )
    }
}

impl<T> Backend for RedisQueue<T>
where
    T: DeserializeOwned + Send + 'static,
{
    type Task = Task<T>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        ensure_background(&self.shared);
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        ensure_background(&self.shared);
        let shared = self.shared.clone();
        let state = self
            .worker
            .get_or_insert_with(|| Mutex::new(WorkerState::new()))
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        // Start fetching the next batch while the buffer still has work, so fetches overlap
        // with running and settling jobs instead of alternating with them.
        let low_water = shared.config.batch_size / 2;
        loop {
            if let Some(fetch) = state.fetch.as_mut()
                && let Poll::Ready(batch) = fetch.as_mut().poll(cx)
            {
                state.fetch = None;
                state.buffer.extend(batch);
            }
            while let Some(job) = state.buffer.pop_front() {
                if let Some(task) = Self::admit(&shared, job) {
                    if state.fetch.is_none() && state.buffer.len() < low_water {
                        let mut fetch =
                            Box::pin(next_batch(shared.clone(), state.requesting.clone()));
                        // Polled once now so the request starts (and wakes us when it lands).
                        match fetch.as_mut().poll(cx) {
                            Poll::Ready(batch) => state.buffer.extend(batch),
                            Poll::Pending => state.fetch = Some(fetch),
                        }
                    }
                    return Poll::Ready(Some(Ok(task)));
                }
            }
            if state.fetch.is_some() {
                return Poll::Pending;
            }
            state.fetch = Some(Box::pin(next_batch(
                shared.clone(),
                state.requesting.clone(),
            )));
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        let shared = self.shared.clone();
        let Some(state) = self.worker.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let state = state.get_mut().unwrap_or_else(|e| e.into_inner());
        // A fetch with a request in flight must land, or the jobs it leased would wait for
        // their lease to expire; a fetch that is only sleeping can be dropped.
        if let Some(fetch) = state.fetch.as_mut() {
            if state.requesting.load(Ordering::SeqCst) {
                match fetch.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(batch) => state.buffer.extend(batch),
                }
            }
            state.fetch = None;
        }
        let closing = state.closing.get_or_insert_with(|| {
            // Leased but never started: hand them back so another worker takes them at once.
            let unstarted: Vec<Leased> = state.buffer.drain(..).collect();
            Box::pin(async move {
                let releases = unstarted
                    .iter()
                    .map(|job| settle::settle(&shared, &job.id, &job.token, SettleOp::Release));
                futures::future::join_all(releases).await;
                settle::flush(&shared).await;
            })
        });
        closing.as_mut().poll(cx).map(Ok)
    }
}

impl<T> BackendConfig for RedisQueue<T>
where
    T: DeserializeOwned + Send + 'static,
{
    type Args = T;
    type Id = String;
    type Kind = Ephemeral;
    type Config = QueueConfig;
    type Layer = SettleLayer;

    fn config(&self) -> &Self::Config {
        &self.shared.config
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        SettleLayer::new(self.shared.clone())
    }
}
