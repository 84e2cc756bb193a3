//! The apalis backend: `WorkerBuilder::new(name).backend(queue).build(handler)`.
//!
//! A worker leases jobs in batches (`fetch.rs`) and hands them to apalis one at a time. It never
//! returns an error to apalis (that would stop the worker): Redis outages are retried with
//! backoff, and a payload that does not decode is dead-lettered with the decode error while the
//! rest of the batch goes on.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use apalis_core::backend::{Backend, BackendConfig, finalize::Ephemeral};
use apalis_core::task::{Task, builder::TaskBuilder, task_id::TaskId};
use apalis_core::worker::context::WorkerContext;
use serde::de::DeserializeOwned;

use crate::fetch::{Leased, WorkerState, next_batch};
use crate::middleware::SettleLayer;
use crate::settle::SettleOp;
use crate::shared::Shared;
use crate::{JobId, JobInfo, QueueConfig, QueueError, RedisQueue, settler, wake};

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
        tokio::spawn(settler::run_settler(Arc::downgrade(shared), rx));
    }
    tokio::spawn(wake::run_listener(
        shared.client.clone(),
        shared.keys.signal.clone(),
        Arc::downgrade(&shared.wakeup),
    ));
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
            shared.settle_later(&job.id, &job.token, SettleOp::Dead { reason });
            return None;
        }
        let args = match serde_json::from_str::<T>(&job.payload) {
            Ok(args) => args,
            Err(e) => {
                let reason = format!("payload does not decode: {e}");
                tracing::warn!(queue = %queue, job = %job.id, reason = %reason, "poison job dead-lettered");
                crate::metrics::dead_lettered(queue, "poison");
                shared.settle_later(&job.id, &job.token, SettleOp::Dead { reason });
                return None;
            }
        };
        let id = match JobId::new(job.id.clone()) {
            Ok(id) => id,
            Err(e) => {
                shared.settle_later(
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
                    .map(|job| shared.settle(&job.id, &job.token, SettleOp::Release));
                futures::future::join_all(releases).await;
                shared.flush().await;
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
