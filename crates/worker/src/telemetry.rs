//! Logs, traces and metrics for a worker process.

use anyhow::Context;
use paywatch_core::telemetry;

use crate::config::WorkerConfig;

/// Structured logs to stderr (`RUST_LOG` filters, `info` by default; `LOG_FORMAT=json` for JSON
/// lines) and, when `PAYWATCH_METRICS_LISTEN` is set, a listener serving `/metrics`,
/// `/healthz` and `/readyz`; traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (returned, to be
/// flushed after the drain). Call inside the Tokio runtime.
pub fn init(config: &WorkerConfig) -> anyhow::Result<paywatch_core::traces::Traces> {
    let traces = telemetry::init("paywatch-worker")?;
    if let Some(addr) = config.metrics_listen {
        let handle = telemetry::install_recorder(&crate::metrics::all_buckets())
            .context("PAYWATCH_METRICS_LISTEN")?;
        crate::metrics::describe();
        let bound = telemetry::serve_ops(addr, handle, &config.redis_url)
            .context("PAYWATCH_METRICS_LISTEN")?;
        tracing::info!(addr = %bound, "metrics, health and readiness listening");
    }
    Ok(traces)
}
