//! The admin HTTP API, under `/v1/admin/` and behind the API token like the rest of `/v1/*`:
//!
//! - `GET /v1/admin/queues`: every queue's counts per state.
//! - `GET /v1/admin/dead-letters?queue=&limit=`: dead letters, oldest first.
//! - `GET /v1/admin/queues/{queue}/dead-letters/{id}`: one, with its payload (secrets redacted).
//! - `POST /v1/admin/queues/{queue}/retry`, `POST /v1/admin/queues/{queue}/purge` with
//!   `{"ids": [...]}` or `{"all": true}`.
//! - `GET /v1/admin/orders/{order_id}`: an order's record, notifications and timeline.
//!
//! `check-payment` names every check shard (a check's id says its shard). Every parameter is
//! checked, and a bad one gets a 4xx naming it: unknown query parameters too.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::Value;

use super::model::{ActionReport, DeadLetterDetail, DeadLetterPage, OrderReport, QueuesReply};
use super::{Action, AdminError, Selection};
use crate::http::reply::{error, is_json};
use crate::http::state::Api;

/// The admin routes (the caller puts them behind the token).
pub fn routes() -> Router<Api> {
    use axum::routing::{get, post};
    Router::new()
        .route("/v1/admin/queues", get(queues))
        .route("/v1/admin/dead-letters", get(dead_letters))
        .route(
            "/v1/admin/queues/{queue}/dead-letters/{id}",
            get(dead_letter),
        )
        .route(
            "/v1/admin/queues/{queue}/retry",
            post(retry).layer(axum::extract::DefaultBodyLimit::max(MAX_ACTION_BODY)),
        )
        .route(
            "/v1/admin/queues/{queue}/purge",
            post(purge).layer(axum::extract::DefaultBodyLimit::max(MAX_ACTION_BODY)),
        )
        .route("/v1/admin/orders/{order_id}", get(order))
        .route("/v1/admin/health", get(health))
}

/// The largest retry or purge body: 1000 ids of up to 512 bytes, quoted, and some slack.
const MAX_ACTION_BODY: usize = 1024 * 1024;

/// The answer to an admin failure.
fn failure(e: &AdminError) -> Response {
    match e {
        AdminError::Invalid { field, .. } => {
            error(StatusCode::BAD_REQUEST, e.to_string(), Some(field))
        }
        AdminError::UnknownQueue { .. } => {
            error(StatusCode::NOT_FOUND, e.to_string(), Some("queue"))
        }
        AdminError::NoDeadLetter { .. } => error(StatusCode::NOT_FOUND, e.to_string(), Some("id")),
        AdminError::NoOrder(_) => error(StatusCode::NOT_FOUND, e.to_string(), Some("order_id")),
        _ if e.is_unavailable() => {
            tracing::warn!(error = %e, "redis unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry later",
                None,
            )
        }
        _ => {
            tracing::error!(error = %e, "admin request failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None)
        }
    }
}

fn bad_path(rejection: &PathRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("path: {}", rejection.body_text()),
        Some("path"),
    )
}

/// `GET /v1/admin/queues`.
#[utoipa::path(get, path = "/v1/admin/queues", tag = "admin",
    responses(
        (status = 200, description = "Every queue: check shards first, then the notifier queues", body = QueuesReply),
        (status = 401, description = "No valid API token", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable; retry", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn queues(State(api): State<Api>) -> Response {
    match api.admin.queues().await {
        Ok(queues) => Json(QueuesReply { queues }).into_response(),
        Err(e) => failure(&e),
    }
}

/// The query of a dead-letter listing.
struct ListQuery {
    queue: Option<String>,
    limit: usize,
}

fn list_query(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<ListQuery, AdminError> {
    let invalid = |field: &str, message: String| AdminError::Invalid {
        field: field.to_owned(),
        message,
    };
    let Query(pairs) = query.map_err(|e| invalid("query", e.body_text()))?;
    let mut queue = None;
    let mut limit = None;
    for (key, value) in pairs {
        let slot_taken = match key.as_str() {
            "queue" => queue.replace(value).is_some(),
            "limit" => {
                let n = value.parse::<usize>().map_err(|_| {
                    invalid(
                        "limit",
                        format!("must be an integer from 1 to {}", super::MAX_LIMIT),
                    )
                })?;
                limit.replace(n).is_some()
            }
            other => {
                let name: String = other.chars().take(64).collect();
                return Err(invalid(
                    &name,
                    "unknown parameter (known: queue, limit)".into(),
                ));
            }
        };
        if slot_taken {
            return Err(invalid(&key, "given twice".into()));
        }
    }
    Ok(ListQuery {
        queue,
        limit: super::limit(limit)?,
    })
}

/// `GET /v1/admin/dead-letters`.
#[utoipa::path(get, path = "/v1/admin/dead-letters", tag = "admin",
    params(
        ("queue" = Option<String>, Query, description = "One queue (`check-payment` for every check shard); all when absent"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many, oldest first (default 100)"),
    ),
    responses(
        (status = 200, description = "Dead letters, oldest first", body = DeadLetterPage),
        (status = 400, description = "A bad parameter; `field` names it", body = crate::openapi::ErrorBody),
        (status = 401, description = "No valid API token", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such queue", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable; retry", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn dead_letters(
    State(api): State<Api>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let query = match list_query(query) {
        Ok(q) => q,
        Err(e) => return failure(&e),
    };
    match api
        .admin
        .dead_letters(query.queue.as_deref(), query.limit)
        .await
    {
        Ok(page) => Json(page).into_response(),
        Err(e) => failure(&e),
    }
}

/// `GET /v1/admin/queues/{queue}/dead-letters/{id}`.
#[utoipa::path(get, path = "/v1/admin/queues/{queue}/dead-letters/{id}", tag = "admin",
    params(
        ("queue" = String, Path, description = "The queue (`check-payment` for the check shard the id belongs to)"),
        ("id" = String, Path, description = "The job id, percent-encoded"),
    ),
    responses(
        (status = 200, description = "The dead letter and its payload, secrets redacted", body = DeadLetterDetail),
        (status = 400, description = "Not a job id", body = crate::openapi::ErrorBody),
        (status = 401, description = "No valid API token", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such queue, or no such dead letter", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable; retry", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn dead_letter(
    State(api): State<Api>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Path((queue, id)) = match path {
        Ok(p) => p,
        Err(rejection) => return bad_path(&rejection),
    };
    match api.admin.dead_letter(&queue, &id).await {
        Ok(detail) => Json(detail).into_response(),
        Err(e) => failure(&e),
    }
}

/// Why a retry or purge body is refused: a status, the field at fault and what is wrong.
struct Refusal {
    status: StatusCode,
    field: String,
    message: String,
}

impl Refusal {
    fn unprocessable(field: &str, message: &str) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            field: field.to_owned(),
            message: format!("{field}: {message}"),
        }
    }

    fn response(&self) -> Response {
        error(self.status, self.message.clone(), Some(&self.field))
    }
}

/// The dead letters a retry or purge body names.
fn selection(headers: &HeaderMap, body: &[u8]) -> Result<Selection, Refusal> {
    if !is_json(headers) {
        return Err(Refusal {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            field: "content-type".into(),
            message: "send the request as JSON with Content-Type: application/json".into(),
        });
    }
    let unprocessable = Refusal::unprocessable;
    let value: Value = serde_json::from_slice(body).map_err(|e| Refusal {
        status: StatusCode::BAD_REQUEST,
        field: "body".into(),
        message: format!("body: not valid JSON: {e}"),
    })?;
    let Value::Object(fields) = value else {
        return Err(unprocessable(
            "body",
            r#"must be an object: {"ids": [...]} or {"all": true}"#,
        ));
    };
    if let Some(key) = fields.keys().find(|k| *k != "ids" && *k != "all") {
        let key: String = key.chars().take(64).collect();
        return Err(unprocessable(&key, "unknown field (known: ids, all)"));
    }
    match (fields.get("ids"), fields.get("all")) {
        (Some(_), Some(_)) => Err(unprocessable("all", "give either ids or all, not both")),
        (None, None) => Err(unprocessable(
            "ids",
            r#"name the dead letters: {"ids": [...]} or {"all": true}"#,
        )),
        (None, Some(all)) => match all {
            Value::Bool(true) => Ok(Selection::All),
            _ => Err(unprocessable("all", "must be true when given")),
        },
        (Some(ids), None) => {
            let Value::Array(ids) = ids else {
                return Err(unprocessable("ids", "must be an array of job ids"));
            };
            let mut texts = Vec::with_capacity(ids.len());
            for (i, id) in ids.iter().enumerate() {
                match id.as_str() {
                    Some(text) => texts.push(text),
                    None => return Err(unprocessable(&format!("ids[{i}]"), "must be a string")),
                }
            }
            Selection::ids(&texts, "ids").map_err(|e| match e {
                AdminError::Invalid { field, message } => unprocessable(&field, &message),
                other => unprocessable("ids", &other.to_string()),
            })
        }
    }
}

async fn act(
    api: Api,
    action: Action,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Path(queue) = match path {
        Ok(p) => p,
        Err(rejection) => return bad_path(&rejection),
    };
    let selection = match selection(&headers, &body) {
        Ok(s) => s,
        Err(refusal) => return refusal.response(),
    };
    match api.admin.act(action, &queue, &selection).await {
        Ok(report) => Json::<ActionReport>(report).into_response(),
        Err(e) => failure(&e),
    }
}

/// `POST /v1/admin/queues/{queue}/retry`.
#[utoipa::path(post, path = "/v1/admin/queues/{queue}/retry", tag = "admin",
    params(("queue" = String, Path, description = "The queue (`check-payment` for every check shard)")),
    request_body(content = super::model::ActionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Retried: the jobs are due now, with fresh attempts", body = ActionReport),
        (status = 400, description = "The body is not JSON", body = crate::openapi::ErrorBody),
        (status = 401, description = "No valid API token", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such queue, or none of the ids is a dead letter there", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is over 1 MiB"),
        (status = 415, description = "The body is not sent as application/json", body = crate::openapi::ErrorBody),
        (status = 422, description = "A field is invalid; `field` names it", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable; retry", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn retry(
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(api, Action::Retry, path, headers, body).await
}

/// `POST /v1/admin/queues/{queue}/purge`.
#[utoipa::path(post, path = "/v1/admin/queues/{queue}/purge", tag = "admin",
    params(("queue" = String, Path, description = "The queue (`check-payment` for every check shard)")),
    request_body(content = super::model::ActionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Purged: the dead letters are gone for good", body = ActionReport),
        (status = 400, description = "The body is not JSON", body = crate::openapi::ErrorBody),
        (status = 401, description = "No valid API token", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such queue, or none of the ids is a dead letter there", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is over 1 MiB"),
        (status = 415, description = "The body is not sent as application/json", body = crate::openapi::ErrorBody),
        (status = 422, description = "A field is invalid; `field` names it", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable; retry", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn purge(
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(api, Action::Purge, path, headers, body).await
}

/// `GET /v1/admin/orders/{order_id}`.
#[utoipa::path(get, path = "/v1/admin/orders/{order_id}", tag = "admin",
    params(("order_id" = String, Path, description = "The order id, percent-encoded")),
    responses(
        (status = 200, description = "The order, its check queue, its notifications and its timeline", body = OrderReport),
        (status = 400, description = "Not an order id", body = crate::openapi::ErrorBody),
        (status = 401, description = "No valid API token", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such order", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable; retry", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn order(State(api): State<Api>, path: Result<Path<String>, PathRejection>) -> Response {
    let Path(order_id) = match path {
        Ok(p) => p,
        Err(rejection) => return bad_path(&rejection),
    };
    match api.admin.order(&order_id).await {
        Ok(mut report) => {
            report.order["links"] = crate::views::links(&api.auth, &order_id);
            Json::<OrderReport>(report).into_response()
        }
        Err(e) => failure(&e),
    }
}

/// `GET /v1/admin/health`.
#[utoipa::path(get, path = "/v1/admin/health", tag = "admin",
    responses(
        (status = 200, description = "The health verdict: overall, per subsystem, each with its likely cause (200 whatever the verdict)", body = super::health::model::HealthReport),
        (status = 401, description = "No valid API token", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable; retry", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn health(State(api): State<Api>) -> Response {
    match api.admin.health().await {
        Ok(report) => Json(report).into_response(),
        Err(e) => failure(&e),
    }
}
