//! `GET /healthz` (the process is up) and `GET /readyz` (Redis answers).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::reply::error;
use super::state::Api;
use crate::openapi::HealthBody;

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Up", body = HealthBody)))]
pub async fn healthz() -> Response {
    Json(HealthBody {
        status: "ok".into(),
    })
    .into_response()
}

/// `GET /readyz`: Redis answers.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = HealthBody),
        (status = 503, description = "Redis is unreachable", body = crate::openapi::ErrorBody),
    ))]
pub async fn ready(State(api): State<Api>) -> Response {
    if api.producer.ready().await {
        Json(HealthBody {
            status: "ready".into(),
        })
        .into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "redis unreachable", None)
    }
}
