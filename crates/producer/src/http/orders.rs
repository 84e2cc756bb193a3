//! `POST /v1/orders` and `GET /v1/orders/{order_id}`: submit an order, read it back. Both answer
//! with the typed views of [`crate::openapi`], the schemas the document shows.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use paywatch_core::store::Phase;
use paywatch_core::{OrderId, PaymentStatus, traceparent, traces};
use tracing::Instrument as _;

use super::reply::{error, internal, is_json};
use super::state::Api;
use crate::openapi::{ProviderName, SubmitReply};
use crate::views::{order_answer, order_links};
use crate::{ProducerError, Submitted};

/// What the function said of an order id taken with another body (the submit function's words).
pub const CONFLICT: &str = "an order with this id already exists with a different body";

/// The fields of an order its answer repeats, read once (see [`create_order`]).
#[derive(serde::Deserialize)]
struct Accepted {
    order_id: String,
    provider: ProviderName,
    payment_id: String,
}

/// `POST /v1/orders`: submit an order (through the `paywatch_submit` Redis Function).
#[utoipa::path(post, path = "/v1/orders", tag = "orders",
    request_body(content = crate::openapi::OrderRequest, content_type = "application/json"),
    params(("traceparent" = Option<String>, Header, description = "The caller's W3C trace context (`00-<32 hex>-<16 hex>-<2 hex>`, lowercase, neither id all zeros): the order's trace continues it. A malformed one is refused with 422 naming `traceparent`.")),
    responses(
        (status = 202, description = "A new order; its first check is due now", body = SubmitReply),
        (status = 200, description = "The same order was already accepted", body = SubmitReply),
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
    // The one read of the body in this process, for the fields the answer repeats (metadata,
    // any number even one no f64 holds, is skipped unread) and the shard. The function stays the
    // judge: a body this read fails is submitted as it is, for its verdict.
    let order = serde_json::from_slice::<Accepted>(&body);
    let (incoming, spans) = match traced(&headers) {
        Ok(traced) => traced,
        Err(refused) => return refused,
    };
    let order_id = order.as_ref().ok().map(|o| o.order_id.as_str());
    if let Some(id) = order_id {
        spans.server.record("order", id);
        spans.send.record("order", id);
    }
    // The check continues the send span's trace; with tracing off, the client's context.
    let stored = traces::traceparent_of(&spans.send).or(incoming);
    let submitted = api
        .producer
        .submit_json_traced(order_id, &body, stored.as_deref())
        .instrument(spans.redis)
        .instrument(spans.send)
        .instrument(spans.server)
        .await;
    let (submitted, receipt) = match submitted {
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
    // Accepted by the function, so its fields were there; a read that failed all the same is a
    // disagreement between the two parsers, never the client's fault.
    let order = match order {
        Ok(order) => order,
        Err(e) => {
            tracing::error!(error = %e, "an accepted order could not be read back");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None);
        }
    };
    let (code, status, phase, created) = match submitted {
        Submitted::Created => (
            StatusCode::ACCEPTED,
            PaymentStatus::Pending,
            Phase::Watching,
            true,
        ),
        Submitted::Existing { status, phase } => (StatusCode::OK, status, phase, false),
    };
    let links = order_links(&api.auth, &order.order_id);
    let reply = SubmitReply {
        order_id: order.order_id,
        provider: order.provider,
        payment_id: order.payment_id,
        status: status.into(),
        phase: phase.into(),
        created,
        links,
        receipt: receipt.into(),
    };
    (code, Json(reply)).into_response()
}

/// The spans of one submit: the HTTP request, the enqueue of the order's check (whose context
/// the order keeps) and its Redis call.
struct SubmitSpans {
    server: tracing::Span,
    send: tracing::Span,
    redis: tracing::Span,
}

/// The client's `traceparent` header, checked with the submit function's rules (a bad one is
/// refused naming the field, as the function refuses a bad body field), and the submit's spans,
/// children of the client's context when it sent one.
#[allow(clippy::result_large_err)]
fn traced(headers: &HeaderMap) -> Result<(Option<String>, SubmitSpans), Response> {
    let incoming = match headers.get(traceparent::FIELD) {
        None => None,
        Some(value) => {
            let read = value
                .to_str()
                .map_err(|_| traceparent::TraceParentError(traceparent::FORMAT_PROBLEM))
                .and_then(traceparent::TraceParent::parse);
            match read {
                Ok(tp) => Some(tp.to_string()),
                Err(e) => {
                    return Err(error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        e.to_string(),
                        Some(traceparent::FIELD),
                    ));
                }
            }
        }
    };
    let server = tracing::info_span!(
        "submit",
        otel.name = "POST /v1/orders",
        otel.kind = "server",
        order = tracing::field::Empty
    );
    traces::continue_order(&server, incoming.as_deref());
    traces::set_attributes(
        &server,
        [
            ("http.request.method", "POST".into()),
            ("http.route", "/v1/orders".into()),
            ("url.scheme", "http".into()),
        ],
    );
    let send = tracing::info_span!(parent: &server, "send", otel.name = "send check-payment", otel.kind = "producer", order = tracing::field::Empty);
    traces::set_attributes(
        &send,
        [
            ("messaging.system", "redis".into()),
            ("messaging.operation.type", "send".into()),
            ("messaging.operation.name", "send".into()),
            ("messaging.destination.name", "check-payment".into()),
        ],
    );
    let redis = tracing::info_span!(parent: &send, "redis", otel.name = "FCALL paywatch_submit", otel.kind = "client");
    traces::set_attributes(
        &redis,
        [
            ("db.system.name", "redis".into()),
            ("db.operation.name", "FCALL".into()),
            ("db.stored_procedure.name", "paywatch_submit".into()),
        ],
    );
    Ok((
        incoming,
        SubmitSpans {
            server,
            send,
            redis,
        },
    ))
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
            let links = order_links(&api.auth, id.as_str());
            Json(order_answer(&view, links)).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no order {id}"), None),
        Err(e) => internal(&e),
    }
}
