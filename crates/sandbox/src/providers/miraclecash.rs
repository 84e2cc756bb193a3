//! Fake MiracleCash payment prompts API, authenticated with HTTP Basic `clientId:apiKey`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use serde_json::{Map, Value, json};

use super::{Provider, header_str, serve_status};
use crate::config::Credentials;
use crate::listener::Conn;
use crate::payment::View;
use crate::state::SandboxState;

pub(crate) const INITIAL_STATUS: &str = "pending";
const SUCCESS_STATUS: &str = "successful";

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new().route(
        "/miraclecash/external/payments/prompt/{id}",
        get(get_prompt),
    )
}

async fn get_prompt(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    conn: Conn,
) -> Response {
    serve_status(
        &state,
        Provider::MiracleCash,
        authorized,
        &id,
        &headers,
        &conn,
    )
    .await
}

fn authorized(headers: &HeaderMap, creds: &Credentials) -> bool {
    let Some(encoded) = header_str(headers, "authorization").and_then(|v| {
        v.split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, rest)| rest.trim())
    }) else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    let expected = format!(
        "{}:{}",
        creds.miraclecash_client_id, creds.miraclecash_api_key
    );
    decoded == expected.as_bytes()
}

/// A payment prompt; the chain is only known once the payment succeeded.
pub(crate) fn render(view: &View<'_>) -> Map<String, Value> {
    let p = view.record;
    let blockchain = (view.status == SUCCESS_STATUS).then_some("eth");
    let mut body = Map::new();
    body.insert("id".into(), json!(p.id));
    body.insert("blockchainId".into(), json!(blockchain));
    body.insert("status".into(), json!(view.status));
    body.insert(
        "createdAt".into(),
        json!(
            p.created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
    );
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn basic(user_pass: &str) -> HeaderMap {
        let token = base64::engine::general_purpose::STANDARD.encode(user_pass);
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Basic {token}")).expect("ascii"),
        );
        h
    }

    #[test]
    fn basic_auth_must_match() {
        let c = Credentials::default();
        assert!(authorized(
            &basic("sandbox-miracle-client:sandbox-miracle-key"),
            &c
        ));
        assert!(!authorized(&basic("sandbox-miracle-client:wrong"), &c));
        assert!(!authorized(&HeaderMap::new(), &c));
    }
}
