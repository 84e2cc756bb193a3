//! Fake FoxReload orders API (`X-API-Key`); codes appear only once an order is completed.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::{Provider, header_str, random_from, random_ulid_like, serve_status};
use crate::config::Credentials;
use crate::listener::Conn;
use crate::payment::{Generated, View};
use crate::state::SandboxState;

pub(crate) const INITIAL_STATUS: &str = "active";

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new().route("/foxreload/api/orders/{id}", get(get_order))
}

async fn get_order(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    conn: Conn,
) -> Response {
    serve_status(
        &state,
        Provider::FoxReload,
        authorized,
        &id,
        &headers,
        &conn,
    )
    .await
}

fn authorized(headers: &HeaderMap, creds: &Credentials) -> bool {
    header_str(headers, "x-api-key") == Some(creds.foxreload_api_key.as_str())
}

pub(crate) fn generate() -> Generated {
    // Unambiguous characters only, so a code read off a screen can be typed back.
    const CODE: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    Generated::FoxReload {
        item_id: format!("product_{}", random_ulid_like()),
        codes: vec![format!(
            "FOX-{}-{}",
            random_from(CODE, 4),
            random_from(CODE, 4)
        )],
    }
}

/// An order with one item; `cancelled` and `failed` explain themselves like the real API does.
pub(crate) fn render(view: &View<'_>) -> Map<String, Value> {
    let p = view.record;
    let (item_id, codes) = match &p.generated {
        Generated::FoxReload { item_id, codes } => (item_id.as_str(), codes.as_slice()),
        _ => ("", &[][..]),
    };
    let external: &[String] = if view.status == "completed" {
        codes
    } else {
        &[]
    };
    let item_error = (view.status == "failed").then_some("Item is out of stock");
    let cancel_reason = (view.status == "cancelled").then_some("payment_expiration");
    let mut body = Map::new();
    body.insert("id".into(), json!(p.id));
    body.insert("status".into(), json!(view.status));
    body.insert(
        "items".into(),
        json!([{
            "itemId": item_id,
            "quantity": codes.len(),
            "externalData": external,
            "error": item_error,
        }]),
    );
    body.insert("cancelReason".into(), json!(cancel_reason));
    body.insert(
        "createdAt".into(),
        json!(
            p.created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
    );
    body
}
