//! An OTLP trace receiver built on the protocol's own definitions (`opentelemetry-proto`): what
//! the product's binaries export is decoded span by span, for tests to read the traces' shape.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;

/// One span as the receiver decoded it.
#[derive(Debug, Clone)]
pub struct Span {
    /// The `service.name` of its process.
    pub service: String,
    /// Its name.
    pub name: String,
    /// Its trace id (hex).
    pub trace_id: String,
    /// Its span id (hex).
    pub span_id: String,
    /// Its parent span id (hex; empty for a root).
    pub parent: String,
    /// (trace id, span id) of each link.
    pub links: Vec<(String, String)>,
    /// Its attributes, values as text.
    pub attributes: Vec<(String, String)>,
}

/// The name prefix of the entry a body that is not an OTLP export leaves among the spans.
pub const UNDECODABLE: &str = "undecodable export: ";

/// What a receiver has decoded so far.
pub type Spans = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP (protobuf) trace receiver on a free port: its base URL (what
/// `OTEL_EXPORTER_OTLP_ENDPOINT` takes) and the spans it decodes.
pub async fn receiver() -> (String, Spans) {
    async fn export(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
        let mut all = spans.lock().unwrap_or_else(|e| e.into_inner());
        let request = match ExportTraceServiceRequest::decode(body) {
            Ok(request) => request,
            Err(e) => {
                // Kept as a span the tests see: a panic here would only drop the connection.
                all.push(Span {
                    service: String::new(),
                    name: format!("{UNDECODABLE}{e}"),
                    trace_id: String::new(),
                    span_id: String::new(),
                    parent: String::new(),
                    links: Vec::new(),
                    attributes: Vec::new(),
                });
                return ExportTraceServiceResponse::default().encode_to_vec();
            }
        };
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()))
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                all.push(Span {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                        .collect(),
                });
            }
        }
        ExportTraceServiceResponse::default().encode_to_vec()
    }
    let spans: Spans = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(export))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// The spans received so far.
pub fn snapshot(spans: &Spans) -> Vec<Span> {
    spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
