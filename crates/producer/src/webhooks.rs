//! Inbound provider webhooks: a fast path, never a source of truth.
//!
//! A webhook only says "look at this payment now". paywatch finds the order watching the payment
//! and moves its one scheduled check to now; that check asks the provider's API, as the seeds
//! advise ("always verify via API"). Polling stays the fallback when webhooks never come.
//!
//! - `POST /webhooks/cashless` with `{"bill": {"id": …}}`.
//! - `POST /webhooks/handcash` with `{"appSecret", "paymentRequestId", …}`; the `appSecret` must
//!   match ours (HandCash's own advice), or the request is refused with 401.
//!
//! Both answer 200 once handled (also for payments no order watches, so the provider does not
//! retry forever), 400 for a body they cannot read, 503 when Redis is down (the provider retries).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use paywatch_core::{PaymentId, Provider, Secret};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tracing::Instrument as _;

use crate::Producer;

/// What the webhook endpoints need.
#[derive(Debug, Clone)]
pub struct WebhookState {
    /// The producer.
    pub producer: Producer,
    /// HandCash's app secret; HandCash webhooks are refused when unset.
    pub handcash_app_secret: Option<Secret>,
}

/// The webhook routes.
pub fn router(state: WebhookState) -> Router {
    let seen = crate::webhook_seen::Seen {
        conn: state.producer.connection(),
        prefix: state.producer.prefix().to_owned(),
    };
    Router::new()
        .route("/webhooks/cashless", post(cashless))
        .route("/webhooks/handcash", post(handcash))
        .with_state(state)
        // Last seen per provider, for the health verdict.
        .layer(axum::middleware::from_fn_with_state(
            seen,
            crate::webhook_seen::note,
        ))
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// `POST /webhooks/cashless`: Cashless says a bill changed.
#[utoipa::path(post, path = "/webhooks/cashless", tag = "provider webhooks",
    request_body(content = Object, description = "Cashless's bill notification: `{\"bill\": {\"id\": …}}`", content_type = "application/json"),
    responses(
        (status = 200, description = "Handled (also when no order watches the bill)", body = crate::openapi::WebhookReply),
        (status = 400, description = "Unreadable body", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable; the provider should retry", body = crate::openapi::ErrorBody),
    ))]
pub async fn cashless(State(state): State<WebhookState>, body: Bytes) -> Response {
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["bill"]["id"].as_str().map(str::to_string));
    let Some(id) = id else {
        return received(
            Provider::Cashless,
            "invalid",
            reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "expected {\"bill\": {\"id\": …}}"}),
            ),
        );
    };
    check_now(&state, Provider::Cashless, &id).await
}

/// `POST /webhooks/handcash`: HandCash says a payment request was paid.
#[utoipa::path(post, path = "/webhooks/handcash", tag = "provider webhooks",
    request_body(content = Object, description = "HandCash's notification: `appSecret`, `paymentRequestId`, …", content_type = "application/json"),
    responses(
        (status = 200, description = "Handled (also when no order watches the payment)", body = crate::openapi::WebhookReply),
        (status = 400, description = "Unreadable body", body = crate::openapi::ErrorBody),
        (status = 401, description = "Wrong appSecret", body = crate::openapi::ErrorBody),
        (status = 404, description = "HandCash webhooks are not enabled here (no HANDCASH_APP_SECRET)", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable; the provider should retry", body = crate::openapi::ErrorBody),
    ))]
pub async fn handcash(State(state): State<WebhookState>, body: Bytes) -> Response {
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return received(
            Provider::HandCash,
            "invalid",
            reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "body is not JSON"}),
            ),
        );
    };
    let Some(ours) = &state.handcash_app_secret else {
        return received(
            Provider::HandCash,
            "unconfigured",
            // Not a server fault a client should retry: the endpoint is simply not enabled.
            reply(
                StatusCode::NOT_FOUND,
                json!({"error": "HandCash webhooks are not enabled on this server"}),
            ),
        );
    };
    let theirs = value["appSecret"].as_str().unwrap_or("");
    if !bool::from(theirs.as_bytes().ct_eq(ours.expose().as_bytes())) {
        tracing::warn!("HandCash webhook with a wrong appSecret refused");
        return received(
            Provider::HandCash,
            "unauthorized",
            reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "appSecret does not match"}),
            ),
        );
    }
    let Some(id) = value["paymentRequestId"].as_str() else {
        return received(
            Provider::HandCash,
            "invalid",
            reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "paymentRequestId is required"}),
            ),
        );
    };
    check_now(&state, Provider::HandCash, id).await
}

/// Moves the check of the order watching `payment_id` to now (the declared webhooks too).
pub(crate) async fn check_now(
    state: &WebhookState,
    provider: Provider,
    payment_id: &str,
) -> Response {
    let Ok(payment_id) = payment_id.parse::<PaymentId>() else {
        return received(
            provider,
            "invalid",
            reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid payment id"}),
            ),
        );
    };
    // A wake is a trace of its own; the store links it to each order it wakes.
    let span = tracing::info_span!("webhook", otel.name = "provider webhook", otel.kind = "server", provider = %provider);
    paywatch_core::traces::link_order(&span, None);
    paywatch_core::traces::set_attributes(
        &span,
        [
            ("http.request.method", "POST".into()),
            ("paywatch.provider", provider.as_str().into()),
        ],
    );
    let woken = state
        .producer
        .check_now(provider, &payment_id)
        .instrument(span)
        .await;
    match woken {
        Ok(found) if !found.is_empty() => {
            for (order_id, promotion) in &found {
                tracing::info!(%provider, order = %order_id, ?promotion, "provider webhook: checking now");
            }
            let orders: Vec<_> = found
                .iter()
                .map(|(id, promotion)| json!({"order_id": id, "check": format!("{promotion:?}")}))
                .collect();
            received(
                provider,
                "promoted",
                reply(StatusCode::OK, json!({"orders": orders})),
            )
        }
        Ok(_) => received(
            provider,
            "unknown_payment",
            reply(
                StatusCode::OK,
                json!({"ignored": "no order watches this payment"}),
            ),
        ),
        Err(e) => {
            tracing::warn!(%provider, error = %e, "provider webhook could not be handled");
            received(
                provider,
                "error",
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "try again later"}),
                ),
            )
        }
    }
}

/// Counts a webhook by provider and outcome, and passes its answer on.
pub(crate) fn received(provider: Provider, outcome: &'static str, response: Response) -> Response {
    metrics::counter!(crate::metrics::PROVIDER_WEBHOOKS_TOTAL, "provider" => provider.to_string(), "outcome" => outcome).increment(1);
    response
}
