//! The producer's HTTP API.
//!
//! - `POST /v1/orders` → 202 (new), 200 (same order again, whatever became of it), 409 (same id,
//!   other body), 400 (not JSON), 415 (not `application/json`), 422 (invalid field, named),
//!   503 (Redis unreachable). The body goes to the `paywatch_submit` Redis Function unchanged:
//!   it is the one judge of every door.
//! - `GET /v1/orders/{order_id}` → the order as it stands. Order ids may hold any printable ASCII;
//!   `links.self` percent-encodes them, so every accepted id is reachable through its link.
//! - `GET /v1/orders/{order_id}/events` → Server-Sent Events: the order as it stands, then every
//!   change, closing once paywatch has stopped watching it (see [`crate::events`]).
//! - `GET /healthz` (the process is up), `GET /readyz` (Redis answers).
//! - `/v1/admin/*`: the operator's API (see [`crate::admin::http`]); `GET /board`: the web board
//!   on top of it (see [`crate::board`]).
//!
//! `/v1/*` needs an API token (`Authorization: Bearer …`, see [`crate::auth`]); the events stream
//! also takes the per-order signature a shop's backend can hand to its front end.
//! - `POST /webhooks/cashless`, `POST /webhooks/handcash`: provider webhooks (see
//!   [`crate::webhooks`]).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use paywatch_core::store::{OrderView, Phase};
use paywatch_core::{OrderId, PaymentStatus};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::auth::ApiAuth;
use crate::{Producer, ProducerError, Submitted};

/// What the API's handlers share.
#[derive(Debug, Clone)]
pub struct Api {
    /// Orders.
    pub producer: Producer,
    /// Credentials.
    pub auth: ApiAuth,
    /// The operator's view (`/v1/admin/*`).
    pub admin: crate::admin::Admin,
    /// The events streams open per order.
    pub streams: crate::events::OpenStreams,
}

/// What stays unescaped in a path segment: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The largest order body accepted; the submit function allows 64 KiB.
pub const MAX_BODY: usize = 64 * 1024;

/// The API's routes over a [`Producer`], provider webhooks included.
pub fn router(
    producer: Producer,
    handcash_app_secret: Option<paywatch_core::Secret>,
    auth: ApiAuth,
) -> Router {
    let webhooks = crate::webhooks::router(crate::webhooks::WebhookState {
        producer: producer.clone(),
        handcash_app_secret,
    });
    let admin = crate::admin::Admin::new(producer.clone());
    let api = Api {
        producer,
        auth,
        admin,
        streams: crate::events::OpenStreams::default(),
    };
    let orders = Router::new()
        .route(
            "/v1/orders",
            post(create_order).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)),
        )
        .route("/v1/orders/{order_id}", get(get_order))
        .merge(crate::admin::http::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            api.auth.clone(),
            crate::auth::require_token,
        ));
    Router::new()
        .merge(orders)
        // Checks its own credentials: a token, or the order's signature for browsers.
        .route(
            "/v1/orders/{order_id}/events",
            get(crate::events::order_events),
        )
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route("/readyz", get(ready))
        .with_state(api)
        .merge(webhooks)
        // The page is public; everything it shows comes from /v1/admin/* with the token.
        .merge(crate::board::routes())
        .fallback(not_found)
        // A belt, not the fix: no handler should panic, but if one does the client still gets
        // JSON, the panic is counted, and the connection is not simply dropped.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
}

/// Any path no route serves (`GET /v1`, a typo): a JSON 404 like every other refusal.
async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", uri.path()),
        None,
    )
}

/// What a request whose handler panicked gets: a JSON 500, counted and logged (the panic's own
/// message is logged, never sent: it may quote data).
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)");
    tracing::error!(panic = message, "an API handler panicked");
    ::metrics::counter!(crate::metrics::HANDLER_PANICS_TOTAL).increment(1);
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None)
}

/// The API path of an order, its id percent-encoded.
pub fn order_path(order_id: &str) -> String {
    format!("/v1/orders/{}", utf8_percent_encode(order_id, SEGMENT))
}

/// An order's links: itself, and its events stream (signed for browsers, with an expiry, when a
/// secret is set).
pub fn links(auth: &ApiAuth, order_id: &str) -> Value {
    let path = order_path(order_id);
    let events = match crate::events::link_query(auth, order_id) {
        Some(query) => format!("{path}/events?{query}"),
        None => format!("{path}/events"),
    };
    json!({"self": path, "events": events})
}

pub(crate) fn error(
    status: StatusCode,
    message: impl Into<String>,
    field: Option<&str>,
) -> Response {
    let mut body = json!({"error": message.into()});
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    (status, Json(body)).into_response()
}

pub(crate) fn internal(e: &ProducerError) -> Response {
    if e.is_not_durable() {
        tracing::warn!(error = %e, "order written but not yet durable");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not durable yet, retry",
            None,
        )
    } else if e.is_unavailable() {
        tracing::warn!(error = %e, "redis unavailable");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage unavailable, retry later",
            None,
        )
    } else {
        tracing::error!(error = %e, "order request failed");
        error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None)
    }
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// What the function said of an order id taken with another body (`paywatch.lua`'s words).
pub const CONFLICT: &str = "an order with this id already exists with a different body";

/// The fields of an accepted order its answer repeats.
#[derive(serde::Deserialize)]
struct Accepted {
    order_id: String,
    provider: String,
    payment_id: String,
}

/// `POST /v1/orders`: submit an order (through the `paywatch_submit` Redis Function).
#[utoipa::path(post, path = "/v1/orders", tag = "orders",
    request_body(content = crate::openapi::OrderRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "A new order; its first check is due now", body = crate::openapi::SubmitReply),
        (status = 200, description = "The same order was already accepted", body = crate::openapi::SubmitReply),
        (status = 400, description = "The body is not JSON (or not UTF-8, or too deep)", body = crate::openapi::ErrorBody),
        (status = 401, description = "No valid API token", body = crate::openapi::ErrorBody),
        (status = 409, description = "The order id exists with a different body", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is over 64 KiB"),
        (status = 415, description = "The body is not sent as application/json", body = crate::openapi::ErrorBody),
        (status = 422, description = "A field is invalid; `field` names it", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable; retry", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_order(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    // A form or a text/plain body is what a cross-site page can send without asking.
    if !is_json(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the order as JSON with Content-Type: application/json",
            Some("content-type"),
        );
    }
    let (submitted, receipt) = match api.producer.submit_json_with_receipt(&body).await {
        Ok(s) => s,
        Err(ProducerError::Invalid(f)) if f.is_syntax() => {
            return error(StatusCode::BAD_REQUEST, f.to_string(), Some(&f.field));
        }
        Err(ProducerError::Invalid(f)) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                f.to_string(),
                Some(&f.field),
            );
        }
        Err(ProducerError::Conflict(_)) => {
            // The Redis door's words, as every refusal: `<field>: <message>`.
            return error(
                StatusCode::CONFLICT,
                format!("order_id: {CONFLICT}"),
                Some("order_id"),
            );
        }
        Err(e) => return internal(&e),
    };
    // The function accepted it, so these three fields are there; metadata (any number, even one
    // no f64 holds) is skipped unread.
    let order: Accepted = match serde_json::from_slice(&body) {
        Ok(order) => order,
        Err(e) => {
            tracing::error!(error = %e, "an accepted order could not be read back");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None);
        }
    };
    let order_id = order.order_id.as_str();
    let (code, status, phase, created) = match submitted {
        Submitted::Created => (
            StatusCode::ACCEPTED,
            PaymentStatus::Pending,
            Phase::Watching,
            true,
        ),
        Submitted::Existing { status, phase } => (StatusCode::OK, status, phase, false),
    };
    (
        code,
        Json(json!({
            "order_id": order_id,
            "provider": order.provider,
            "payment_id": order.payment_id,
            "status": status,
            "phase": phase,
            "created": created,
            "links": links(&api.auth, order_id),
            "receipt": receipt,
        })),
    )
        .into_response()
}

/// `GET /v1/orders/{order_id}`: an order as it stands.
#[utoipa::path(get, path = "/v1/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path, description = "The order id, percent-encoded")),
    responses(
        (status = 200, description = "The order", body = crate::openapi::OrderView),
        (status = 400, description = "Not an order id", body = crate::openapi::ErrorBody),
        (status = 401, description = "No valid API token", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such order", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable; retry", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_order(State(api): State<Api>, Path(order_id): Path<String>) -> Response {
    let Ok(id) = order_id.parse::<OrderId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "not an order id (order ids are 1 to 128 printable ASCII characters without spaces)",
            Some("order_id"),
        );
    };
    match api.producer.order(&id).await {
        Ok(Some(view)) => {
            let mut body = order_view(&view);
            body["links"] = links(&api.auth, id.as_str());
            Json(body).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no order {id}"), None),
        Err(e) => internal(&e),
    }
}

/// An order's view as JSON: its fields, and the shop's metadata exactly as stored.
///
/// A [`Value`] holds every number as an `f64` or a 64-bit integer, so `1.50`, `1E3` or a 25-digit
/// integer would come back changed and `1e400` not at all; the metadata is therefore kept apart,
/// as its stored text, and written in place of the `metadata` field. Everything else reads and
/// writes through the [`Value`] it dereferences to (`view["status"]`, `view["links"] = …`).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderJson {
    fields: Value,
    metadata: Option<paywatch_core::Metadata>,
    /// Whether the view has a `metadata` field at all (a browser's view has none).
    with_metadata: bool,
}

impl OrderJson {
    /// The shop's metadata, as stored.
    pub fn metadata(&self) -> Option<&paywatch_core::Metadata> {
        self.metadata.as_ref()
    }
}

impl From<Value> for OrderJson {
    /// A view without a `metadata` field of its own: written exactly as `fields`.
    fn from(fields: Value) -> Self {
        Self {
            fields,
            metadata: None,
            with_metadata: false,
        }
    }
}

impl std::ops::Deref for OrderJson {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.fields
    }
}

impl std::ops::DerefMut for OrderJson {
    fn deref_mut(&mut self) -> &mut Value {
        &mut self.fields
    }
}

impl serde::Serialize for OrderJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if !self.with_metadata {
            return self.fields.serialize(serializer);
        }
        let empty = serde_json::Map::new();
        let fields = self.fields.as_object().unwrap_or(&empty);
        let mut map = serializer.serialize_map(Some(fields.len() + 1))?;
        let mut written = false;
        for (key, value) in fields {
            if key == "metadata" {
                continue;
            }
            // In key order, as the other fields are.
            if !written && key.as_str() > "metadata" {
                map.serialize_entry("metadata", &self.metadata)?;
                written = true;
            }
            map.serialize_entry(key, value)?;
        }
        if !written {
            map.serialize_entry("metadata", &self.metadata)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for OrderJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw =
            std::collections::BTreeMap::<String, Box<serde_json::value::RawValue>>::deserialize(
                deserializer,
            )?;
        let mut fields = serde_json::Map::new();
        let mut metadata = None;
        let with_metadata = raw.contains_key("metadata");
        for (key, value) in raw {
            if key == "metadata" {
                if value.get() != "null" {
                    metadata = Some(
                        paywatch_core::Metadata::from_json(value.get())
                            .map_err(D::Error::custom)?,
                    );
                }
            } else {
                let value = serde_json::from_str(value.get()).map_err(D::Error::custom)?;
                fields.insert(key, value);
            }
        }
        Ok(Self {
            fields: Value::Object(fields),
            metadata,
            with_metadata,
        })
    }
}

/// The public view of an order: no credentials, no delivered codes, webhook URL redacted.
pub fn order_view(view: &OrderView) -> OrderJson {
    let record = &view.record;
    let state = record.state.as_ref();
    let fields = json!({
        "order_id": view.order_id,
        "provider": record.provider,
        "payment_id": record.payment_id,
        "status": record.status(),
        "phase": view.phase,
        "watching": view.phase == Phase::Watching,
        "stopped": view.stopped.as_ref().map(|s| json!({"reason": s.reason, "at": s.at})),
        "raw_status": state.and_then(|s| s.raw_status.as_deref()),
        "checks": state.map_or(0, |s| s.poll.checks),
        "checking_now": view.running,
        "next_check_at": view.next_check_at,
        "created_at": record.created_at(),
        "terminal_at": state.and_then(|s| s.final_at),
        "last_error": state.and_then(|s| s.last_error.as_deref()),
        "notified": view.notified,
        "notify": {
            "email": record.notify.email,
            "telegram_chat_id": record.notify.telegram_chat_id,
            "webhook_url": record.notify.webhook_url.as_deref().map(paywatch_core::secret::redact_url),
        },
        // Newest first, as a timeline is read.
        "history": state.map(|s| s.history.iter().rev().collect::<Vec<_>>()).unwrap_or_default(),
        "links": {"self": order_path(view.order_id.as_str())},
    });
    OrderJson {
        fields,
        metadata: record.metadata.clone(),
        with_metadata: true,
    }
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Up", body = crate::openapi::HealthBody)))]
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: Redis answers.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = crate::openapi::HealthBody),
        (status = 503, description = "Redis is unreachable", body = crate::openapi::ErrorBody),
    ))]
pub async fn ready(State(api): State<Api>) -> Response {
    if api.producer.ready().await {
        Json(json!({"status": "ready"})).into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "redis unreachable", None)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// One plain HTTP/1.1 GET over a socket: the raw answer.
    async fn get_raw(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    }

    async fn boom() -> Response {
        panic!("a panic quoting data: s3cret")
    }

    /// Counts `paywatch_producer_handler_panics_total`; every other metric goes nowhere.
    #[derive(Debug, Default)]
    struct PanicCount(std::sync::atomic::AtomicU64);

    impl ::metrics::CounterFn for PanicCount {
        fn increment(&self, value: u64) {
            self.0
                .fetch_add(value, std::sync::atomic::Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.store(value, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[derive(Debug)]
    struct Recorder(std::sync::Arc<PanicCount>);

    impl ::metrics::Recorder for Recorder {
        fn describe_counter(
            &self,
            _: ::metrics::KeyName,
            _: Option<::metrics::Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: ::metrics::KeyName,
            _: Option<::metrics::Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: ::metrics::KeyName,
            _: Option<::metrics::Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &::metrics::Key,
            _: &::metrics::Metadata<'_>,
        ) -> ::metrics::Counter {
            if key.name() == crate::metrics::HANDLER_PANICS_TOTAL {
                ::metrics::Counter::from_arc(self.0.clone())
            } else {
                ::metrics::Counter::noop()
            }
        }
        fn register_gauge(
            &self,
            _: &::metrics::Key,
            _: &::metrics::Metadata<'_>,
        ) -> ::metrics::Gauge {
            ::metrics::Gauge::noop()
        }
        fn register_histogram(
            &self,
            _: &::metrics::Key,
            _: &::metrics::Metadata<'_>,
        ) -> ::metrics::Histogram {
            ::metrics::Histogram::noop()
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_and_an_unknown_path_answer_json() {
        // The one test of this crate that installs a recorder: the process's, for the server task.
        let panics = std::sync::Arc::new(PanicCount::default());
        ::metrics::set_global_recorder(Recorder(panics.clone())).expect("the only recorder");
        let app = Router::new()
            .route("/boom", get(boom))
            .fallback(not_found)
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        for (path, status, body) in [
            ("/boom", "500", r#"{"error":"internal error"}"#),
            ("/v1", "404", r#"{"error":"no such endpoint: /v1"}"#),
        ] {
            let answer = get_raw(addr, path).await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{answer}"
            );
            assert!(
                answer.contains("content-type: application/json"),
                "{answer}"
            );
            assert!(answer.ends_with(body), "{answer}");
            assert!(!answer.contains("s3cret"), "{answer}");
        }
        assert_eq!(
            panics.0.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "the panic is counted, the 404 is not"
        );
    }

    #[test]
    fn an_order_view_writes_metadata_as_stored() {
        let text = r#"{"a":1e400,"b":1234567890123456789012345,"c":-0,"d":1.50,"e":1E3}"#;
        let json: OrderJson = serde_json::from_str(&format!(
            r#"{{"order_id":"o","metadata":{text},"status":"paid"}}"#
        ))
        .expect("reads");
        assert_eq!(json["status"], "paid");
        assert_eq!(json.metadata().map(|m| m.get()), Some(text));
        assert_eq!(
            serde_json::to_string(&json).expect("writes"),
            format!(r#"{{"metadata":{text},"order_id":"o","status":"paid"}}"#)
        );
        // A view made from fields alone (a browser's) has no metadata field to write.
        let browser = OrderJson::from(json!({"order_id": "o", "status": "paid"}));
        assert_eq!(
            serde_json::to_string(&browser).expect("writes"),
            r#"{"order_id":"o","status":"paid"}"#
        );
    }
}
