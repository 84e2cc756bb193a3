//! The admin API under `/_admin`: scripting payments, faults and inspecting what happened.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::SandboxError;
use crate::faults::{Fault, FaultScope};
use crate::payment::NewPayment;
use crate::providers::Provider;
use crate::state::SandboxState;

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new()
        .route("/_admin/health", get(health))
        .route("/_admin/payments", post(create_payment).get(list_payments))
        .route("/_admin/payments/{provider}/{id}", get(payment_stats))
        .route(
            "/_admin/payments/{provider}/{id}/clock",
            put(pin_clock).delete(unpin_clock),
        )
        .route(
            "/_admin/payments/{provider}/{id}/faults",
            post(add_payment_faults).delete(clear_payment_faults),
        )
        .route(
            "/_admin/providers/{provider}/faults",
            post(add_provider_faults).delete(clear_provider_faults),
        )
        .route(
            "/_admin/telegram/faults",
            post(add_telegram_faults).delete(clear_telegram_faults),
        )
        .route(
            "/_admin/telegram/messages",
            get(telegram_messages).delete(clear_telegram_messages),
        )
        .route("/_admin/stats", get(stats))
        .route("/_admin/webhooks", get(webhooks))
        .route("/_admin/reset", post(reset))
}

/// An admin failure, answered as `{"error": "..."}` with a fitting status.
#[derive(Debug)]
struct AdminError(SandboxError);

impl From<SandboxError> for AdminError {
    fn from(err: SandboxError) -> Self {
        Self(err)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            SandboxError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            SandboxError::DuplicatePayment { .. } => StatusCode::CONFLICT,
            SandboxError::UnknownPayment { .. } => StatusCode::NOT_FOUND,
            SandboxError::Bind { .. }
            | SandboxError::Server(_)
            | SandboxError::InvalidConfig(_)
            | SandboxError::NoRuntime => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

type AdminResult<T> = Result<T, AdminError>;

/// Parses a JSON body ourselves so errors come back as JSON 400s, not axum's plain-text 422s.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, SandboxError> {
    serde_json::from_slice(body)
        .map_err(|err| SandboxError::InvalidRequest(format!("invalid JSON body: {err}")))
}

/// Fault endpoints take one fault object or an array of them.
fn parse_faults(body: &Bytes) -> Result<Vec<Fault>, SandboxError> {
    let value: serde_json::Value = parse(body)?;
    let invalid =
        |err: serde_json::Error| SandboxError::InvalidRequest(format!("invalid fault: {err}"));
    if value.is_array() {
        serde_json::from_value(value).map_err(invalid)
    } else {
        serde_json::from_value(value)
            .map(|f| vec![f])
            .map_err(invalid)
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "ok": true }))
}

async fn create_payment(State(state): State<SandboxState>, body: Bytes) -> AdminResult<Response> {
    let created = state.create_payment(parse::<NewPayment>(&body)?)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_payments(State(state): State<SandboxState>) -> Response {
    Json(state.payments()).into_response()
}

async fn payment_stats(
    State(state): State<SandboxState>,
    Path((provider, id)): Path<(String, String)>,
) -> AdminResult<Response> {
    let provider: Provider = provider.parse()?;
    let stats = state
        .stats(provider, &id)
        .ok_or(SandboxError::UnknownPayment { provider, id })?;
    Ok(Json(stats).into_response())
}

/// `{"elapsed_ms": N}`: the payment's age, in unscaled milliseconds.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PinClock {
    elapsed_ms: u64,
}

async fn pin_clock(
    State(state): State<SandboxState>,
    Path((provider, id)): Path<(String, String)>,
    body: Bytes,
) -> AdminResult<StatusCode> {
    let provider = provider.parse()?;
    let pin: PinClock = parse(&body)?;
    state.set_payment_clock(provider, &id, Some(pin.elapsed_ms))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unpin_clock(
    State(state): State<SandboxState>,
    Path((provider, id)): Path<(String, String)>,
) -> AdminResult<StatusCode> {
    let provider = provider.parse()?;
    state.set_payment_clock(provider, &id, None)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_payment_faults(
    State(state): State<SandboxState>,
    Path((provider, id)): Path<(String, String)>,
    body: Bytes,
) -> AdminResult<StatusCode> {
    let provider = provider.parse()?;
    state.add_faults(FaultScope::Payment { provider, id }, parse_faults(&body)?)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_payment_faults(
    State(state): State<SandboxState>,
    Path((provider, id)): Path<(String, String)>,
) -> AdminResult<StatusCode> {
    let provider = provider.parse()?;
    state.clear_faults(FaultScope::Payment { provider, id })?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_provider_faults(
    State(state): State<SandboxState>,
    Path(provider): Path<String>,
    body: Bytes,
) -> AdminResult<StatusCode> {
    let scope = FaultScope::Provider(provider.parse()?);
    state.add_faults(scope, parse_faults(&body)?)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_provider_faults(
    State(state): State<SandboxState>,
    Path(provider): Path<String>,
) -> AdminResult<StatusCode> {
    state.clear_faults(FaultScope::Provider(provider.parse()?))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_telegram_faults(
    State(state): State<SandboxState>,
    body: Bytes,
) -> AdminResult<StatusCode> {
    state.add_faults(FaultScope::Telegram, parse_faults(&body)?)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_telegram_faults(State(state): State<SandboxState>) -> AdminResult<StatusCode> {
    state.clear_faults(FaultScope::Telegram)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn telegram_messages(State(state): State<SandboxState>) -> Response {
    Json(state.telegram_messages()).into_response()
}

async fn clear_telegram_messages(State(state): State<SandboxState>) -> StatusCode {
    state.clear_telegram_messages();
    StatusCode::NO_CONTENT
}

async fn stats(State(state): State<SandboxState>) -> Response {
    Json(state.request_stats()).into_response()
}

async fn webhooks(State(state): State<SandboxState>) -> Response {
    Json(state.webhook_deliveries()).into_response()
}

async fn reset(State(state): State<SandboxState>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}
