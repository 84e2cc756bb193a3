//! Fake Cashless bills API: `GET /cashless/api/v3/bills/{id}` with `Authorization: ApiKey KEY:SECRET`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::{Provider, header_str, random_from, serve_status};
use crate::config::Credentials;
use crate::listener::Conn;
use crate::payment::{Generated, View};
use crate::state::SandboxState;

pub(crate) const INITIAL_STATUS: &str = "NOT_PAID";
pub(crate) const PAID_STATUS: &str = "FULLY_PAID";

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new().route("/cashless/api/v3/bills/{id}", get(get_bill))
}

async fn get_bill(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    conn: Conn,
) -> Response {
    serve_status(&state, Provider::Cashless, authorized, &id, &headers, &conn).await
}

fn authorized(headers: &HeaderMap, creds: &Credentials) -> bool {
    header_str(headers, "authorization")
        .and_then(|v| v.strip_prefix("ApiKey "))
        .and_then(|pair| pair.split_once(':'))
        .is_some_and(|(key, secret)| {
            key == creds.cashless_api_key && secret == creds.cashless_api_secret
        })
}

pub(crate) fn generate() -> Generated {
    Generated::Cashless {
        mobile: format!("07{}", random_from(b"0123456789", 8)),
    }
}

/// A BillDto: amounts are TZS floats and `date` is the creation time in Unix milliseconds.
pub(crate) fn render(view: &View<'_>) -> Map<String, Value> {
    let p = view.record;
    let mobile = match &p.generated {
        Generated::Cashless { mobile } => mobile.as_str(),
        _ => "",
    };
    let reference = p
        .reference
        .clone()
        .unwrap_or_else(|| format!("SANDBOX-{}", p.id.chars().take(8).collect::<String>()));
    let mut body = Map::new();
    body.insert("id".into(), json!(p.id));
    body.insert("mobile".into(), json!(mobile));
    body.insert("amount".into(), json!(p.amount));
    body.insert("status".into(), json!(view.status));
    body.insert("reference".into(), json!(reference));
    body.insert(
        "webPayUrl".into(),
        json!(format!("https://webpay.cashless.co.tz?bill={}", p.id)),
    );
    body.insert("date".into(), json!(p.created_at.timestamp_millis()));
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_str(auth).expect("ascii"));
        h
    }

    #[test]
    fn accepts_only_the_configured_key_pair() {
        let creds = Credentials::default();
        assert!(authorized(
            &headers("ApiKey sandbox-cashless-key:sandbox-cashless-secret"),
            &creds
        ));
        assert!(!authorized(
            &headers("ApiKey sandbox-cashless-key:wrong"),
            &creds
        ));
        assert!(!authorized(
            &headers("Bearer sandbox-cashless-key:sandbox-cashless-secret"),
            &creds
        ));
        assert!(!authorized(&HeaderMap::new(), &creds));
    }
}
