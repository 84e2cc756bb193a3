//! How every handler refuses: `{"error": …, "field": …}` JSON, and the one mapping of a store
//! failure to a status (503 to retry, 500 otherwise). Imports nothing of the API but its errors,
//! so any handler may use it.

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ProducerError;
use crate::openapi::ErrorBody;

/// A refusal: `status` with `{"error": message}`, and `"field"` when one field is at fault.
pub(crate) fn error(
    status: StatusCode,
    message: impl Into<String>,
    field: Option<&str>,
) -> Response {
    let body = ErrorBody {
        error: message.into(),
        field: field.map(str::to_owned),
    };
    (status, Json(body)).into_response()
}

/// A store failure as the client sees it: 503 (retry) when Redis is away or the write is not yet
/// durable, 500 otherwise; logged, never quoted to the client.
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
