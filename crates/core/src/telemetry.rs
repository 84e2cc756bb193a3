//! What every paywatch binary sets up for operators: logs (text, or JSON with
//! `LOG_FORMAT=json`), the Prometheus recorder with explicit histogram buckets, and one small
//! HTTP listener serving `/metrics`, `/healthz` (the process is up) and `/readyz` (Redis
//! answers), the three paths a scraper and a Kubernetes probe expect.
//!
//! It lives in the core crate because the producer and the worker both need it and share no
//! other crate that is not about domain logic.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `LOG_FORMAT` holds something else than `text` or `json`.
    #[error("LOG_FORMAT must be `text` or `json`, not {0:?}")]
    LogFormat(String),
    /// `RUST_LOG` is not a list of filter directives (`info`, `paywatch_worker=debug,warn`).
    #[error("RUST_LOG: {0}")]
    LogFilter(String),
    /// The Prometheus recorder could not be built or installed.
    #[error("metrics recorder: {0}")]
    Recorder(#[from] metrics_exporter_prometheus::BuildError),
    /// The metrics listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The Redis URL is not one.
    #[error("REDIS_URL: {0}")]
    Redis(#[from] redis::RedisError),
    /// `REDIS_URL` cannot be read.
    #[error(transparent)]
    Url(#[from] paywatch_queue::UrlError),
    /// The `OTEL_*` settings of the trace exporter.
    #[error(transparent)]
    Traces(#[from] crate::traces::TracesError),
}

/// Logs to stderr, filtered by `RUST_LOG` (`info` by default), as text or, with
/// `LOG_FORMAT=json`, one JSON object per line carrying the fields of the current spans.
/// No traces: for processes that only log (the sandbox, the tools). The product's binaries call
/// [`init`].
pub fn init_logs() -> Result<(), TelemetryError> {
    install(&crate::traces::Traces::default())
}

/// Logs as [`init_logs`] does, and traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
/// ([`crate::traces`]); `service` is the default `service.name`. JSON log lines then carry the
/// `trace_id` and `span_id` of the span they were logged in. Call inside the Tokio runtime, and
/// [`crate::traces::Traces::shutdown`] once the process has drained.
pub fn init(service: &str) -> Result<crate::traces::Traces, TelemetryError> {
    let traces = crate::traces::provider(service)?;
    install(&traces)?;
    Ok(traces)
}

fn install(traces: &crate::traces::Traces) -> Result<(), TelemetryError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let directives = log_filter(std::env::var_os("RUST_LOG"))?;
    let filter = tracing_subscriber::EnvFilter::new(&directives);
    let format = std::env::var("LOG_FORMAT").unwrap_or_default();
    // The log filter is the log layer's own: RUST_LOG=warn must not switch the traces off.
    let logs = match format.as_str() {
        "" | "text" => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        "json" => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .event_format(JsonWithTraceIds(
                tracing_subscriber::fmt::format()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            ))
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        other => return Err(TelemetryError::LogFormat(other.to_string())),
    };
    // try_init: a second call (tests running several components in one process) is harmless.
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(crate::traces::layer(traces))
        .try_init();
    Ok(())
}

/// The JSON log line of tracing-subscriber, with `"trace_id"` and `"span_id"` added when the
/// event happened in a traced span, so a log line leads to its trace and back.
struct JsonWithTraceIds(
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>,
);

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonWithTraceIds
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        if let Some((trace_id, span_id)) = crate::traces::current_ids()
            && let Some(end) = line.rfind('}')
        {
            line.insert_str(
                end,
                &format!(r#","trace_id":"{trace_id}","span_id":"{span_id}""#),
            );
        }
        writer.write_str(&line)
    }
}

/// The filter directives `RUST_LOG` holds, checked: `info` when it is unset or empty, an error
/// naming it when a directive does not parse (a typo would otherwise silently log nothing, or
/// everything).
pub fn log_filter(rust_log: Option<std::ffi::OsString>) -> Result<String, TelemetryError> {
    let Some(value) = rust_log else {
        return Ok("info".into());
    };
    let value = value
        .into_string()
        .map_err(|_| TelemetryError::LogFilter("is not valid UTF-8".into()))?;
    if value.trim().is_empty() {
        return Ok("info".into());
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(&value)
        .map_err(|e| TelemetryError::LogFilter(format!("{e} in {value:?}")))?;
    Ok(value)
}

/// Installs the global Prometheus recorder with each histogram's explicit buckets (`buckets`:
/// the `BUCKETS` lists of the crates' metrics modules). Call the crates' `describe()` after.
pub fn install_recorder(buckets: &[(&str, &[f64])]) -> Result<PrometheusHandle, TelemetryError> {
    let mut builder = PrometheusBuilder::new();
    for (name, values) in buckets {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_string()), values)?;
    }
    let handle = builder.install_recorder()?;
    crate::exemplars::register(buckets);
    // Without a listener from the exporter itself, histograms are drained by this upkeep.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

#[derive(Clone)]
struct Ops {
    metrics: PrometheusHandle,
    redis: paywatch_queue::RedisConn,
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` (200 once this process has
/// prepared Redis — see [`crate::store::process_prepared`] — and while Redis at `redis_url`
/// answers PING within a second, 503 otherwise) until the process ends. Binds at once (so a
/// taken port fails start-up); must be called inside a Tokio runtime.
pub fn serve_ops(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    redis_url: &str,
) -> Result<SocketAddr, TelemetryError> {
    let redis = paywatch_queue::RedisEndpoint::open(redis_url)?.managed(
        redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1),
    )?;
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|source| TelemetryError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| TelemetryError::Listen { addr, source })?;
    let app = ops_router(metrics, redis);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics listener stopped");
        }
    });
    Ok(bound)
}

fn ops_router(metrics: PrometheusHandle, redis: paywatch_queue::RedisConn) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Ops { metrics, redis })
}

/// Prometheus text, or OpenMetrics with exemplars when the scraper asks for it
/// ([`crate::exemplars`]).
async fn render(State(ops): State<Ops>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if crate::exemplars::wants_openmetrics(accept) {
        return (
            [(
                header::CONTENT_TYPE,
                crate::exemplars::OPENMETRICS_CONTENT_TYPE,
            )],
            crate::exemplars::openmetrics(&ops.metrics.render()),
        );
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ops.metrics.render(),
    )
}

async fn ready(State(ops): State<Ops>) -> (StatusCode, &'static str) {
    if !crate::store::process_prepared() {
        return (StatusCode::SERVICE_UNAVAILABLE, "waiting for redis\n");
    }
    let mut conn = ops.redis.clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    match tokio::time::timeout(Duration::from_secs(1), ping).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "redis unavailable\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_is_checked() {
        let filter = |v: &str| log_filter(Some(v.into()));
        assert_eq!(log_filter(None).expect("unset"), "info");
        assert_eq!(filter("").expect("empty"), "info");
        assert_eq!(
            filter("paywatch_worker=debug,warn").expect("valid"),
            "paywatch_worker=debug,warn"
        );
        for bad in ["paywatch=loud", "info,x=[", "=debug"] {
            let e = filter(bad).expect_err(bad).to_string();
            assert!(e.starts_with("RUST_LOG: "), "{bad}: {e}");
        }
    }
}
