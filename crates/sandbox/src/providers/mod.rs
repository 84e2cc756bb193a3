//! The four fake payment providers: shared request flow, identities and error shapes.

pub(crate) mod cashless;
pub(crate) mod foxreload;
pub(crate) mod handcash;
pub(crate) mod miraclecash;

use std::fmt;
use std::str::FromStr;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::Credentials;
use crate::error::SandboxError;
use crate::faults::{FaultOutcome, Terminal};
use crate::listener::Conn;
use crate::payment::{Generated, View};
use crate::state::{CallOutcome, SandboxState};

/// A fake payment provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Cashless bills (`/cashless/api/v3/bills/{id}`).
    Cashless,
    /// HandCash payment requests (`/handcash/v3/paymentRequests[/public]/{id}`).
    HandCash,
    /// MiracleCash payment prompts (`/miraclecash/external/payments/prompt/{id}`).
    MiracleCash,
    /// FoxReload orders (`/foxreload/api/orders/{id}`).
    FoxReload,
}

impl Provider {
    /// Every provider, in a stable order.
    pub const ALL: [Provider; 4] = [
        Provider::Cashless,
        Provider::HandCash,
        Provider::MiracleCash,
        Provider::FoxReload,
    ];

    /// The lowercase name used in URLs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cashless => "cashless",
            Provider::HandCash => "handcash",
            Provider::MiracleCash => "miraclecash",
            Provider::FoxReload => "foxreload",
        }
    }

    /// The raw status shown before the first timeline step takes effect.
    pub fn initial_status(self) -> &'static str {
        match self {
            Provider::Cashless => cashless::INITIAL_STATUS,
            Provider::HandCash => handcash::INITIAL_STATUS,
            Provider::MiracleCash => miraclecash::INITIAL_STATUS,
            Provider::FoxReload => foxreload::INITIAL_STATUS,
        }
    }

    /// The raw status whose arrival triggers a webhook, for providers that send webhooks.
    pub fn webhook_status(self) -> Option<&'static str> {
        match self {
            Provider::Cashless => Some(cashless::PAID_STATUS),
            Provider::HandCash => Some(handcash::PAID_STATUS),
            Provider::MiracleCash | Provider::FoxReload => None,
        }
    }

    pub(crate) fn has_webhooks(self) -> bool {
        self.webhook_status().is_some()
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn generate_id(self) -> String {
        match self {
            Provider::Cashless | Provider::MiracleCash => uuid::Uuid::new_v4().to_string(),
            Provider::HandCash => random_hex(16),
            Provider::FoxReload => format!("order_{}", random_ulid_like()),
        }
    }

    pub(crate) fn default_amount(self) -> f64 {
        match self {
            Provider::Cashless => 5000.0,
            Provider::HandCash => 1.0,
            Provider::MiracleCash => 10.0,
            Provider::FoxReload => 5.0,
        }
    }

    /// The provider's JSON error body: Cashless and FoxReload use `error`, the others `message`.
    pub(crate) fn error_body(self, message: &str) -> Value {
        match self {
            Provider::Cashless | Provider::FoxReload => json!({ "error": message }),
            Provider::HandCash | Provider::MiracleCash => json!({ "message": message }),
        }
    }

    fn unauthorized_message(self) -> &'static str {
        match self {
            Provider::Cashless | Provider::MiracleCash => "Unauthorized",
            Provider::HandCash => "Invalid app credentials",
            Provider::FoxReload => "Invalid API key",
        }
    }

    fn not_found_message(self, id: &str) -> String {
        match self {
            Provider::Cashless => format!("Bill with id {id} not found"),
            Provider::HandCash => "Payment request not found".to_string(),
            Provider::MiracleCash => "Payment prompt not found".to_string(),
            Provider::FoxReload => "Order not found".to_string(),
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = SandboxError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                SandboxError::InvalidRequest(format!(
                    "unknown provider {s:?}; expected cashless, handcash, miraclecash or foxreload"
                ))
            })
    }
}

/// The routes of all four providers, each under its own prefix.
pub(crate) fn routes() -> Router<SandboxState> {
    Router::new()
        .merge(cashless::routes())
        .merge(handcash::routes())
        .merge(miraclecash::routes())
        .merge(foxreload::routes())
}

pub(crate) fn generate(provider: Provider) -> Generated {
    match provider {
        Provider::Cashless => cashless::generate(),
        Provider::HandCash => handcash::generate(),
        Provider::MiracleCash => Generated::MiracleCash,
        Provider::FoxReload => foxreload::generate(),
    }
}

pub(crate) fn render(view: &View<'_>) -> Map<String, Value> {
    match view.record.provider {
        Provider::Cashless => cashless::render(view),
        Provider::HandCash => handcash::render(view),
        Provider::MiracleCash => miraclecash::render(view),
        Provider::FoxReload => foxreload::render(view),
    }
}

/// Checks one request's credentials against the configured ones.
pub(crate) type AuthCheck = fn(&HeaderMap, &Credentials) -> bool;

/// The flow every status endpoint shares.
///
/// Provider-wide faults come first because they model the provider's edge failing before it
/// even looks at the request; then authentication, then the id lookup, then the payment's own
/// faults, and finally the normal answer.
pub(crate) async fn serve_status(
    state: &SandboxState,
    provider: Provider,
    auth: AuthCheck,
    id: &str,
    headers: &HeaderMap,
    conn: &Conn,
) -> Response {
    if let Some(wait) = state.rate_limit(provider) {
        // Whole seconds, rounded up, as `Retry-After` carries them.
        let secs = wait.as_millis().div_ceil(1000).max(1) as u64;
        let body = provider.error_body("Too Many Requests");
        let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return response;
    }
    let outcome = state.begin_status_call(provider, id);
    if let Some(response) = apply_faults(state, provider, id, outcome, conn).await {
        state.finish_status_call(provider, CallOutcome::Faulted);
        return response;
    }
    if !auth(headers, &state.config().credentials) {
        state.finish_status_call(provider, CallOutcome::Unauthorized);
        let body = provider.error_body(provider.unauthorized_message());
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let Some(outcome) = state.take_payment_faults(provider, id) else {
        return not_found(state, provider, id);
    };
    if let Some(response) = apply_faults(state, provider, id, outcome, conn).await {
        state.finish_status_call(provider, CallOutcome::Faulted);
        return response;
    }
    match state.render_payment(provider, id) {
        Some(body) => {
            state.finish_status_call(provider, CallOutcome::Ok);
            axum::Json(body).into_response()
        }
        // The payment vanished while a latency fault was sleeping (an admin reset).
        None => not_found(state, provider, id),
    }
}

fn not_found(state: &SandboxState, provider: Provider, id: &str) -> Response {
    state.finish_status_call(provider, CallOutcome::NotFound);
    let body = provider.error_body(&provider.not_found_message(id));
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

async fn apply_faults(
    state: &SandboxState,
    provider: Provider,
    id: &str,
    outcome: FaultOutcome,
    conn: &Conn,
) -> Option<Response> {
    if !outcome.delay.is_zero() {
        tokio::time::sleep(outcome.delay).await;
    }
    let response = match outcome.terminal? {
        Terminal::Status {
            code,
            retry_after_s,
        } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = status.canonical_reason().unwrap_or("Error");
            let mut response = (status, axum::Json(provider.error_body(reason))).into_response();
            if let Some(secs) = retry_after(code, retry_after_s) {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Terminal::Malformed => {
            let body = state
                .render_payment(provider, id)
                .unwrap_or_else(|| json!({ "id": id, "status": provider.initial_status() }));
            malformed_json(&body)
        }
        Terminal::Drop => conn.drop_response(),
    };
    Some(response)
}

/// 429s always carry `Retry-After` (clients are expected to honour it); other codes only on request.
pub(crate) fn retry_after(code: u16, retry_after_s: Option<u64>) -> Option<u64> {
    match (code, retry_after_s) {
        (_, Some(secs)) => Some(secs),
        (429, None) => Some(1),
        _ => None,
    }
}

/// A 200 whose JSON body is cut in half, so it can never parse.
pub(crate) fn malformed_json(body: &Value) -> Response {
    let text = body.to_string();
    let mut cut = text.len() / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        text[..cut].to_string(),
    )
        .into_response()
}

pub(crate) fn random_hex(len: usize) -> String {
    const HEX: &[u8] = b"0123456789abcdef";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(HEX[rng.random_range(0..HEX.len())]))
        .collect()
}

pub(crate) fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// 26 lowercase Crockford base32 characters, the shape of the ULIDs FoxReload ids carry.
pub(crate) fn random_ulid_like() -> String {
    random_from(b"0123456789abcdefghjkmnpqrstvwxyz", 26)
}

/// The value of header `name`, if present and valid UTF-8.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>().ok(), Some(p));
            assert_eq!(serde_json::to_value(p).ok(), Some(Value::from(p.as_str())));
        }
        assert!("paypal".parse::<Provider>().is_err());
    }

    #[test]
    fn generated_ids_look_like_the_providers() {
        let handcash = Provider::HandCash.generate_id();
        assert_eq!(handcash.len(), 16);
        assert!(handcash.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(uuid::Uuid::parse_str(&Provider::MiracleCash.generate_id()).is_ok());
        assert!(uuid::Uuid::parse_str(&Provider::Cashless.generate_id()).is_ok());
        let fox = Provider::FoxReload.generate_id();
        assert!(fox.starts_with("order_") && fox.len() == 32);
    }

    #[test]
    fn malformed_bodies_never_parse() {
        for body in [
            json!({}),
            json!({"id": "é", "status": "x"}),
            json!({"a": [1, 2, 3]}),
        ] {
            let text = body.to_string();
            let cut = &text[..text.len() / 2];
            assert!(serde_json::from_str::<Value>(cut).is_err(), "{cut}");
        }
    }
}
