//! Logs and metrics for a worker process.

use anyhow::Context;
use paywatch_core::telemetry;

use crate::config::WorkerConfig;

/// Structured logs to stderr (`RUST_LOG` filters, `info` by default; `LOG_FORMAT=json` for JSON
/// lines) and, when `PAYWATCH_METRICS_LISTEN` is set, a listener serving `/metrics`,
/// `/healthz` and `/readyz`. Call inside the Tokio runtime.
pub fn init(config: &WorkerConfig) -> anyhow::Result<()> {
    telemetry::init_logs()?;
    if let Some(addr) = config.metrics_listen {
        let handle = telemetry::install_recorder(&crate::metrics::all_buckets())
            .context("PAYWATCH_METRICS_LISTEN")?;
        crate::metrics::describe();
        let bound = telemetry::serve_ops(addr, handle, &config.redis_url)
            .context("PAYWATCH_METRICS_LISTEN")?;
        tracing::info!(addr = %bound, "metrics, health and readiness listening");
    }
    Ok(())
}
