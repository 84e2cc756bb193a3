//! The producer's metrics listener: `/metrics`, `/healthz`, `/readyz`, and the depth of every
//! queue.
//!
//! The producer publishes the depth of all of paywatch's queues, not only the one it feeds:
//! it is the one process always running, so a queue no worker serves still shows its backlog
//! (and the "no worker consuming" alert can see it).

use std::net::SocketAddr;
use std::time::Duration;

use paywatch_core::store::check_queue;
use paywatch_core::{queues, telemetry};
use paywatch_queue::{QueueConfig, RedisQueue};

/// How often the depth of each queue is read (one small script per queue).
const DEPTH_EVERY: Duration = Duration::from_secs(10);

/// Installs the recorder and serves the listener on `addr`; publishes the depth of every queue
/// (the check queue of each of the `shards`).
/// Returns the bound address. Call inside the Tokio runtime.
pub async fn serve(
    addr: SocketAddr,
    redis_url: &str,
    prefix: &str,
    shards: u32,
) -> Result<SocketAddr, TelemetryStartError> {
    let handle = telemetry::install_recorder(&crate::metrics::all_buckets())?;
    crate::metrics::describe();
    let bound = telemetry::serve_ops(addr, handle, redis_url)?;
    // The stop signal is never sent: the exporters live as long as the process.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // The check queue is one queue per shard; the others are single.
    let names = queues::ALL
        .iter()
        .filter(|q| **q != queues::CHECK_PAYMENT)
        .map(|q| q.to_string())
        .chain((0..shards).map(check_queue));
    for name in names {
        let queue: RedisQueue<serde_json::Value> =
            RedisQueue::connect(redis_url, QueueConfig::new(name).with_prefix(prefix)).await?;
        tokio::spawn(paywatch_queue::export_depth(
            queue,
            DEPTH_EVERY,
            stop.clone(),
        ));
    }
    std::mem::forget(stop_tx);
    Ok(bound)
}

/// Why the metrics listener did not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryStartError {
    /// The recorder or the listener.
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    /// A queue handle.
    #[error(transparent)]
    Queue(#[from] paywatch_queue::QueueError),
}
