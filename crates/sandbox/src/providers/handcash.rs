//! Fake HandCash payment requests API, public and private (`App-Id`/`App-Secret`) variants.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::{Provider, header_str, random_hex, serve_status};
use crate::config::Credentials;
use crate::listener::Conn;
use crate::payment::{Generated, View};
use crate::state::SandboxState;

pub(crate) const INITIAL_STATUS: &str = "pending";
pub(crate) const PAID_STATUS: &str = "paid";
const EXPIRED_STATUS: &str = "expired";

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new()
        .route("/handcash/v3/paymentRequests/public/{id}", get(get_public))
        .route("/handcash/v3/paymentRequests/{id}", get(get_private))
}

async fn get_private(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    conn: Conn,
) -> Response {
    serve_status(
        &state,
        Provider::HandCash,
        private_authorized,
        &id,
        &headers,
        &conn,
    )
    .await
}

async fn get_public(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    conn: Conn,
) -> Response {
    serve_status(
        &state,
        Provider::HandCash,
        public_authorized,
        &id,
        &headers,
        &conn,
    )
    .await
}

fn private_authorized(headers: &HeaderMap, creds: &Credentials) -> bool {
    header_str(headers, "app-id") == Some(creds.handcash_app_id.as_str())
        && header_str(headers, "app-secret") == Some(creds.handcash_app_secret.as_str())
}

/// The public endpoint needs no credentials, but rejects wrong ones a client chose to send.
fn public_authorized(headers: &HeaderMap, creds: &Credentials) -> bool {
    let ok = |name, expected: &str| {
        headers
            .get(name)
            .is_none_or(|v| v.as_bytes() == expected.as_bytes())
    };
    ok("app-id", &creds.handcash_app_id) && ok("app-secret", &creds.handcash_app_secret)
}

pub(crate) fn generate() -> Generated {
    Generated::HandCash {
        transaction_id: random_hex(64),
    }
}

/// A payment request; `paid` adds the transaction, `expired` moves `expiresAt` into the past.
pub(crate) fn render(view: &View<'_>) -> Map<String, Value> {
    let p = view.record;
    let paid = view.status == PAID_STATUS;
    let expires_at = if view.status == EXPIRED_STATUS {
        // It expired when its step was reached; a second earlier keeps it strictly in the past.
        let since_step = view
            .elapsed
            .saturating_sub(view.step.map_or(view.elapsed, |s| s.at));
        let now = Utc::now();
        now.checked_sub_signed(to_delta(since_step) + TimeDelta::seconds(1))
            .unwrap_or(now)
    } else {
        // Comfortably after the whole scripted timeline, like a real one-hour request window.
        let window = to_delta(p.timeline.end()) + TimeDelta::hours(1);
        p.created_at
            .checked_add_signed(window)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    let mut body = Map::new();
    body.insert("id".into(), json!(p.id));
    body.insert("status".into(), json!(view.status));
    body.insert(
        "expiresAt".into(),
        json!(expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    body.insert(
        "amount".into(),
        json!({ "currencyCode": "USD", "value": p.amount }),
    );
    body.insert("paymentsCount".into(), json!(u8::from(paid)));
    if paid && let Generated::HandCash { transaction_id } = &p.generated {
        body.insert("transactionId".into(), json!(transaction_id));
    }
    if let Some(reference) = &p.reference {
        body.insert("customParameters".into(), json!({ "reference": reference }));
    }
    body
}

fn to_delta(d: std::time::Duration) -> TimeDelta {
    // Saturate: a timeline longer than TimeDelta can hold only needs "very far away".
    TimeDelta::from_std(d).unwrap_or(TimeDelta::days(365 * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("ascii"));
        }
        h
    }

    #[test]
    fn private_needs_both_headers() {
        let c = Credentials::default();
        let good = headers(&[
            ("app-id", "sandbox-handcash-app"),
            ("app-secret", "sandbox-handcash-secret"),
        ]);
        assert!(private_authorized(&good, &c));
        assert!(!private_authorized(
            &headers(&[("app-id", "sandbox-handcash-app")]),
            &c
        ));
        assert!(!private_authorized(&HeaderMap::new(), &c));
    }

    #[test]
    fn public_checks_only_what_is_sent() {
        let c = Credentials::default();
        assert!(public_authorized(&HeaderMap::new(), &c));
        assert!(public_authorized(
            &headers(&[("app-id", "sandbox-handcash-app")]),
            &c
        ));
        assert!(!public_authorized(&headers(&[("app-secret", "nope")]), &c));
    }
}
