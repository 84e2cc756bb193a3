//! The apalis middleware that settles each job in Redis once its handler returns.

use std::sync::Arc;
use std::time::Instant;

use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use futures::FutureExt;
use futures::future::BoxFuture;
use tower_layer::Layer;
use tower_service::Service;

use crate::JobInfo;
use crate::outcome::JobOutcome;
use crate::settle::{SettleOp, decide};
use crate::shared::Shared;

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
            shared.settle(info.id.as_str(), &info.token, op).await;
            result
        }
        .boxed()
    }
}
