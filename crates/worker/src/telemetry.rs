//! Logs and metrics for a worker process.

use anyhow::Context;

use crate::config::WorkerConfig;

/// Structured logs to stderr (`RUST_LOG` filters, `info` by default) and, when
/// `PAYWATCH_METRICS_LISTEN` is set, a Prometheus endpoint at `/metrics`.
pub fn init(config: &WorkerConfig) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    if let Some(addr) = config.metrics_listen {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .context("PAYWATCH_METRICS_LISTEN")?;
    }
    Ok(())
}
