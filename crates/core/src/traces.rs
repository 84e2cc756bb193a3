//! OpenTelemetry traces: the OTLP pipeline (off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set) and
//! the shape of an order's traces.
//!
//! An order has one trace: the submit, then its first check (the check continues the stored
//! [`crate::traceparent`]). Every later check run, provider webhook wake and notification delivery
//! starts a short trace of its own with a span link to the order's, so no trace grows with the
//! number of checks: a queue that re-schedules the same job would otherwise build one trace of
//! thousands of spans (BullMQ's telemetry did, bullmq#2942).
//!
//! Spans are `tracing` spans exported by `tracing-opentelemetry`; only paywatch's own spans
//! (targets `paywatch*`) reach the exporter, whatever `RUST_LOG` says. Attributes that only the
//! trace needs (semantic conventions) are set with [`set_attributes`], so they stay out of the
//! log lines. No attribute ever holds a secret, a notification target's address or a code.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::traceparent::TraceParent;

/// `OTEL_EXPORTER_OTLP_ENDPOINT`: where spans go; unset or empty, tracing is off.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` (the default) or `grpc`.
pub const PROTOCOL_VAR: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";

/// Why tracing could not start; each names the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    /// The endpoint is not an http(s) URL.
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL, not {0:?}")]
    Endpoint(String),
    /// A protocol this build does not speak.
    #[error("{var} must be `http/protobuf` or `grpc`, not {value:?}")]
    Protocol {
        /// The variable (`OTEL_EXPORTER_OTLP_PROTOCOL` or its `_TRACES_` form).
        var: &'static str,
        /// What it held.
        value: String,
    },
    /// The exporter could not be built.
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The running trace pipeline; [`Traces::shutdown`] flushes what is still buffered.
#[derive(Debug, Clone, Default)]
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    /// Whether spans are exported.
    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter (call once, after the drain).
    /// Blocks up to the exporter's timeout, so it runs off the async threads.
    pub async fn shutdown(&self) {
        let Some(provider) = self.provider.clone() else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not flush the last spans"),
            Err(error) => tracing::warn!(%error, "could not flush the last spans"),
        }
    }
}

/// The tracer provider the environment asks for, or `None` when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is unset or empty (or `OTEL_SDK_DISABLED=true`). `service` names the process unless
/// `OTEL_SERVICE_NAME` does; `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`,
/// `OTEL_BSP_*` and `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS/TIMEOUT` are read by the SDK.
/// Must be called inside a Tokio runtime: the batch exporter runs on it.
pub(crate) fn provider(service: &str) -> Result<Traces, TracesError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(Traces::default());
    }
    let Some(endpoint) = var(ENDPOINT_VAR).or_else(|| var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    else {
        return Ok(Traces::default());
    };
    if url::Url::parse(&endpoint).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
        return Err(TracesError::Endpoint(endpoint));
    }
    let mut grpc = false;
    for name in [PROTOCOL_VAR, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] {
        match var(name).as_deref() {
            None | Some("http/protobuf") => {}
            Some("grpc") => grpc = true,
            Some(other) => {
                return Err(TracesError::Protocol {
                    var: if name == PROTOCOL_VAR {
                        PROTOCOL_VAR
                    } else {
                        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
                    },
                    value: other.to_string(),
                });
            }
        }
    }
    // The builders read the endpoint, headers and timeout from the same variables.
    let exporter = if grpc {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?
    } else {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?
    };
    // Exports on the Tokio runtime: the HTTP client is hyper's (async), as tonic is.
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let name = var("OTEL_SERVICE_NAME").unwrap_or_else(|| service.to_string());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build();
    Ok(Traces {
        provider: Some(provider),
    })
}

/// The `tracing` layer that turns paywatch's spans into OpenTelemetry spans.
pub(crate) fn layer<S>(traces: &Traces) -> Option<impl tracing_subscriber::Layer<S>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    let provider = traces.provider.as_ref()?;
    let tracer = provider.tracer("paywatch");
    // Only paywatch's own spans, at info or above: the libraries' debug spans (hyper, h2,
    // redis) would add a span per frame and say nothing about an order.
    let filter = tracing_subscriber::filter::filter_fn(|meta| {
        meta.target().starts_with("paywatch") && *meta.level() <= tracing::Level::INFO
    });
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_filter(filter),
    )
}

/// The span context a stored `traceparent` names, if it is one.
pub fn span_context(traceparent: &str) -> Option<SpanContext> {
    let tp = TraceParent::parse(traceparent).ok()?;
    Some(SpanContext::new(
        TraceId::from_bytes(tp.trace_id),
        SpanId::from_bytes(tp.span_id),
        TraceFlags::new(tp.flags),
        true,
        TraceState::NONE,
    ))
}

/// Makes `span` a child of the order's stored trace context: the order's own trace (its
/// submit and first check). Without a readable context, the span starts a trace of its own.
pub fn continue_order(span: &tracing::Span, traceparent: Option<&str>) {
    let parent = traceparent
        .and_then(span_context)
        .map_or_else(Context::new, |sc| {
            Context::new().with_remote_span_context(sc)
        });
    // Fails only when tracing is off (no layer): nothing to do then.
    let _ = span.set_parent(parent);
}

/// Makes `span` the root of a short trace of its own, linked to the order's trace: a later
/// check, a webhook wake, a notification delivery.
pub fn link_order(span: &tracing::Span, traceparent: Option<&str>) {
    let _ = span.set_parent(Context::new());
    if let Some(sc) = traceparent.and_then(span_context) {
        span.add_link_with_attributes(sc, vec![KeyValue::new("paywatch.link", "order")]);
    }
}

/// Links the current span to the order whose stored trace context is `traceparent` (a webhook
/// wake names its orders only once it has found them).
pub fn link_current(traceparent: &str) {
    if let Some(sc) = span_context(traceparent) {
        tracing::Span::current()
            .add_link_with_attributes(sc, vec![KeyValue::new("paywatch.link", "order")]);
    }
}

/// `span`'s context as a `traceparent` (valid even when not sampled: the flags say so), or
/// `None` when tracing is off.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Sets OpenTelemetry-only attributes on `span` (semantic-convention names the log lines need
/// not repeat). Nothing happens when tracing is off.
pub fn set_attributes(
    span: &tracing::Span,
    attributes: impl IntoIterator<Item = (&'static str, Value)>,
) {
    for (key, value) in attributes {
        span.set_attribute(key, value);
    }
}

/// The current span's trace and span ids (lowercase hex), when it is being traced and sampled:
/// for log lines and exemplars.
pub fn current_ids() -> Option<(TraceId, SpanId)> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| (sc.trace_id(), sc.span_id()))
}
