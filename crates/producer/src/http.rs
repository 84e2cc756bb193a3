//! The producer's HTTP API.
//!
//! - `POST /v1/orders` → 202 (new), 200 (same order again), 409 (same id, other body),
//!   400 (not JSON), 422 (invalid field), 503 (Redis unreachable).
//! - `GET /v1/orders/{order_id}` → the order's status and recent history.
//! - `GET /healthz` (the process is up), `GET /readyz` (Redis answers).
//! - `POST /webhooks/cashless`, `POST /webhooks/handcash`: provider webhooks (see
//!   [`crate::webhooks`]).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use paywatch_core::store::OrderRecord;
use paywatch_core::{HistoryEntry, OrderId};
use serde_json::{Value, json};

use crate::{Producer, ProducerError, Submitted, validate};

/// History entries returned by `GET /v1/orders/{id}`.
const HISTORY_SHOWN: usize = 20;

/// The API's routes over a [`Producer`], provider webhooks included.
pub fn router(producer: Producer, handcash_app_secret: Option<paywatch_core::Secret>) -> Router {
    let webhooks = crate::webhooks::router(crate::webhooks::WebhookState {
        producer: producer.clone(),
        handcash_app_secret,
    });
    Router::new()
        .route("/v1/orders", post(create_order))
        .route("/v1/orders/{order_id}", get(get_order))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .with_state(producer)
        .merge(webhooks)
}

fn error(status: StatusCode, message: impl Into<String>, field: Option<&str>) -> Response {
    let mut body = json!({"error": message.into()});
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    (status, Json(body)).into_response()
}

fn internal(e: &ProducerError) -> Response {
    if e.is_unavailable() {
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

async fn create_order(State(producer): State<Producer>, body: Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body is not valid JSON: {e}"),
                None,
            );
        }
    };
    let spec = match validate::order_spec(&value) {
        Ok(spec) => spec,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                e.to_string(),
                Some(&e.field),
            );
        }
    };
    match producer.enqueue_order(&spec).await {
        Ok(Submitted::Created) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "order_id": spec.order_id,
                "provider": spec.provider,
                "payment_id": spec.payment_id,
                "status": "pending",
                "created": true,
                "links": {"self": format!("/v1/orders/{}", spec.order_id)},
            })),
        )
            .into_response(),
        Ok(Submitted::Existing(status)) => (
            StatusCode::OK,
            Json(json!({
                "order_id": spec.order_id,
                "provider": spec.provider,
                "payment_id": spec.payment_id,
                "status": status,
                "created": false,
                "links": {"self": format!("/v1/orders/{}", spec.order_id)},
            })),
        )
            .into_response(),
        Err(ProducerError::Conflict(id)) => error(
            StatusCode::CONFLICT,
            format!("order {id} already exists with a different body"),
            Some("order_id"),
        ),
        Err(e) => internal(&e),
    }
}

async fn get_order(State(producer): State<Producer>, Path(order_id): Path<String>) -> Response {
    let Ok(id) = order_id.parse::<OrderId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid order id",
            Some("order_id"),
        );
    };
    match producer.order(&id, HISTORY_SHOWN).await {
        Ok(Some((record, history))) => Json(order_view(&record, &history)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no order {id}"), None),
        Err(e) => internal(&e),
    }
}

/// The public view of an order: no credentials, no delivered codes, webhook URL redacted.
pub fn order_view(record: &OrderRecord, history: &[HistoryEntry]) -> Value {
    let spec = &record.spec;
    json!({
        "order_id": spec.order_id,
        "provider": spec.provider,
        "payment_id": spec.payment_id,
        "status": record.status,
        "raw_status": record.raw_status,
        "checks": record.checks,
        "next_check_at": record.next_check_at,
        "created_at": record.created_at,
        "terminal_at": record.terminal_at,
        "last_error": record.last_error,
        "notified": record.notified,
        "notify": {
            "email": spec.notify.email,
            "telegram_chat_id": spec.notify.telegram_chat_id,
            "webhook_url": spec.notify.webhook_url.as_deref().map(redact_url),
        },
        "metadata": spec.metadata,
        "history": history,
    })
}

fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => format!(
            "{}://{}{}/…",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "…".to_string(),
    }
}

async fn ready(State(producer): State<Producer>) -> Response {
    if producer.ready().await {
        Json(json!({"status": "ready"})).into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "redis unreachable", None)
    }
}
