//! The producer's metrics listener: `/metrics`, `/healthz`, `/readyz`, and the depth of every
//! queue.
//!
//! The producer publishes the depth of all of paywatch's queues, not only the one it feeds:
//! it is the one process always running, so a queue no worker serves still shows its backlog
//! (and the "no worker consuming" alert can see it).

use std::net::SocketAddr;
use std::time::Duration;

use paywatch_core::{queues, telemetry};
use paywatch_queue::{QueueConfig, RedisQueue};

use crate::ProducerError;

/// How often the depth of each queue is read (one small script per queue).
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// Installs the recorder and serves the listener on `addr`; publishes the queues' depth.
/// Returns the bound address. Call inside the Tokio runtime.
pub async fn serve(
    addr: SocketAddr,
    redis_url: &str,
    prefix: &str,
) -> Result<SocketAddr, TelemetryStartError> {
    let handle = telemetry::install_recorder(&crate::metrics::all_buckets())?;
    crate::metrics::describe();
    let bound = telemetry::serve_ops(addr, handle, redis_url)?;
    // The stop signal is never sent: the exporters live as long as the process.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    for name in queues::ALL {
        let queue: RedisQueue<serde_json::Value> =
            RedisQueue::connect(redis_url, QueueConfig::new(name).with_prefix(prefix))
                .await
                .map_err(ProducerError::from)?;
        tokio::spawn(paywatch_queue::metrics::export_depth(
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
    Producer(#[from] ProducerError),
}
