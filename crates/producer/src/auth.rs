//! Who may use the API: bearer tokens for `/v1/*`, and signed links for a browser's live status.
//!
//! Several tokens may be configured at once so they can be rotated without downtime (add the new
//! one, move clients over, remove the old one). Tokens are compared in constant time, every one of
//! them, so the time taken says nothing about which prefix matched. A browser cannot send an
//! `Authorization` header with `EventSource` and must never hold the shop's API token, so the
//! events stream also accepts a per-order link (HMAC-SHA256 of the order id and the link's expiry
//! under `PAYWATCH_EVENTS_SECRET`) that the shop's backend hands to its front end; see
//! [`crate::events`] for what such a link may see and for how long.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use paywatch_core::Secret;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The shortest token accepted: long enough that guessing is hopeless.
pub const MIN_TOKEN_LEN: usize = 24;

/// A token or secret that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct AuthConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong (never the value).
    pub problem: String,
}

/// How long a signed events link works by default (`PAYWATCH_EVENTS_LINK_TTL`).
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(3600);

/// The longest lifetime a link may be given: links that never expire are what this replaces.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(30 * 86_400);

/// Streams of one order open at once on one producer, by default
/// (`PAYWATCH_EVENTS_STREAMS_PER_ORDER`).
pub const DEFAULT_STREAMS_PER_ORDER: usize = 5;

/// The most `PAYWATCH_EVENTS_STREAMS_PER_ORDER` may allow.
pub const MAX_STREAMS_PER_ORDER: usize = 100;

/// How signed events links behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkRules {
    /// How long a link works after the API hands it out.
    pub ttl: Duration,
    /// Streams of one order open at once on one producer (token or link alike).
    pub streams_per_order: usize,
}

impl Default for LinkRules {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_LINK_TTL,
            streams_per_order: DEFAULT_STREAMS_PER_ORDER,
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The API's credentials.
#[derive(Debug, Clone)]
pub struct ApiAuth {
    tokens: Vec<Secret>,
    events_secret: Option<Secret>,
    link_rules: LinkRules,
}

fn check(variable: &'static str, value: &str) -> Result<(), AuthConfigError> {
    if value.len() < MIN_TOKEN_LEN {
        return Err(AuthConfigError {
            variable,
            problem: format!("each value must be at least {MIN_TOKEN_LEN} characters long"),
        });
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthConfigError {
            variable,
            problem: "values may only contain printable ASCII without spaces".into(),
        });
    }
    Ok(())
}

impl ApiAuth {
    /// Tokens accepted on `/v1/*` (at least one), and the secret that signs events links.
    pub fn new(
        tokens: impl IntoIterator<Item = String>,
        events_secret: Option<String>,
    ) -> Result<Self, AuthConfigError> {
        let tokens: Vec<String> = tokens.into_iter().filter(|t| !t.is_empty()).collect();
        if tokens.is_empty() {
            return Err(AuthConfigError {
                variable: "PAYWATCH_API_TOKENS",
                problem: "set at least one API token (comma-separated for rotation)".into(),
            });
        }
        for token in &tokens {
            check("PAYWATCH_API_TOKENS", token)?;
        }
        if let Some(secret) = &events_secret {
            check("PAYWATCH_EVENTS_SECRET", secret)?;
        }
        Ok(Self {
            tokens: tokens.into_iter().map(Secret::new).collect(),
            events_secret: events_secret.map(Secret::new),
            link_rules: LinkRules::default(),
        })
    }

    /// The same credentials, with signed events links following `rules`.
    pub fn with_link_rules(mut self, rules: LinkRules) -> Self {
        self.link_rules = rules;
        self
    }

    /// How signed events links behave.
    pub fn link_rules(&self) -> LinkRules {
        self.link_rules
    }

    /// Whether the request carries one of the tokens: exactly one `Authorization` header, scheme
    /// `Bearer` in any case (RFC 9110 §11.1: schemes are case-insensitive).
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        // Two headers are ambiguous (which one did a proxy check?): refused, never "first wins".
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let Some(presented) = value.to_str().ok().and_then(bearer_token) else {
            return false;
        };
        // Compare against every token, always, so timing tells nothing.
        self.tokens.iter().fold(false, |found, token| {
            found | bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes()))
        })
    }

    /// The query of an order's signed events link, `exp=<unix seconds>&sig=<signature>`, valid
    /// for the configured lifetime from now; `None` when no `PAYWATCH_EVENTS_SECRET` is set.
    pub fn link_query(&self, order_id: &str) -> Option<String> {
        let exp = unix_now().saturating_add(self.link_rules.ttl.as_secs());
        let sig = self.events_signature(order_id, exp)?;
        Some(format!("exp={exp}&sig={sig}"))
    }

    /// The signature that lets a browser follow one order's events until `exp` (Unix seconds),
    /// when a secret is set. The expiry is inside it, so a link's `exp` cannot be moved.
    pub fn events_signature(&self, order_id: &str, exp: u64) -> Option<String> {
        let secret = self.events_secret.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).ok()?;
        mac.update(b"paywatch events v2\0");
        mac.update(order_id.as_bytes());
        mac.update(b"\0");
        mac.update(exp.to_string().as_bytes());
        Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// Whether `signature` is the events signature of `order_id` until `exp` (expired or not).
    pub fn verifies(&self, order_id: &str, exp: u64, signature: &str) -> bool {
        self.events_signature(order_id, exp)
            .is_some_and(|expected| bool::from(expected.as_bytes().ct_eq(signature.as_bytes())))
    }
}

/// The token of `Bearer <token>` (the scheme in any case, one or more spaces after it).
fn bearer_token(credentials: &str) -> Option<&str> {
    let (scheme, token) = credentials.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The 401 every unauthenticated request gets.
pub fn unauthorized() -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({
            "error": "send an API token: Authorization: Bearer <token>",
            "field": "authorization",
        })),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"paywatch\""),
    );
    response
}

/// Middleware: the request must carry a token.
pub async fn require_token(State(auth): State<ApiAuth>, request: Request, next: Next) -> Response {
    if auth.allows(request.headers()) {
        next.run(request).await
    } else {
        unauthorized()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "token-aaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "token-bbbbbbbbbbbbbbbbbbbbbbbb";

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        headers
    }

    #[test]
    fn every_configured_token_works_and_nothing_else() {
        let auth = ApiAuth::new([A.to_string(), B.to_string()], None).expect("valid");
        assert!(auth.allows(&bearer(A)) && auth.allows(&bearer(B)));
        assert!(!auth.allows(&bearer("token-aaaaaaaaaaaaaaaaaaaaaaab")));
        assert!(!auth.allows(&bearer(&A[..A.len() - 1])));
        assert!(!auth.allows(&HeaderMap::new()));
        let mut basic = HeaderMap::new();
        basic.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        assert!(!auth.allows(&basic));
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_one_header_only() {
        let auth = ApiAuth::new([A.to_string()], None).expect("valid");
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let mut headers = HeaderMap::new();
            let value = HeaderValue::from_str(&format!("{scheme} {A}")).expect("header");
            headers.insert(header::AUTHORIZATION, value);
            assert!(auth.allows(&headers), "{scheme}");
        }
        // Two Authorization headers, even both valid: ambiguous, refused.
        for second in [A, B] {
            let mut headers = bearer(A);
            let value = HeaderValue::from_str(&format!("Bearer {second}")).expect("header");
            headers.append(header::AUTHORIZATION, value);
            assert!(!auth.allows(&headers), "{second}");
        }
        for not_bearer in [
            format!("Bearerx {A}"),
            format!("Bearer{A}"),
            "Bearer ".into(),
        ] {
            let mut headers = HeaderMap::new();
            let value = HeaderValue::from_str(&not_bearer).expect("header");
            headers.insert(header::AUTHORIZATION, value);
            assert!(!auth.allows(&headers), "{not_bearer}");
        }
    }

    #[test]
    fn bad_configuration_names_the_variable_and_never_the_value() {
        let e = ApiAuth::new(Vec::<String>::new(), None).expect_err("none");
        assert_eq!(e.variable, "PAYWATCH_API_TOKENS");
        let e = ApiAuth::new(["short-secret".to_string()], None).expect_err("short");
        assert!(!e.to_string().contains("short-secret"), "{e}");
        let e = ApiAuth::new([A.to_string()], Some("tiny".into())).expect_err("tiny");
        assert_eq!(e.variable, "PAYWATCH_EVENTS_SECRET");
        let debug = format!("{:?}", ApiAuth::new([A.to_string()], None).expect("ok"));
        assert!(!debug.contains(A), "{debug}");
    }

    #[test]
    fn events_signatures_are_per_order() {
        let auth = ApiAuth::new([A.to_string()], Some(B.to_string())).expect("valid");
        let sig = auth.events_signature("o-1", 1_900_000_000).expect("signed");
        assert!(auth.verifies("o-1", 1_900_000_000, &sig));
        assert!(!auth.verifies("o-2", 1_900_000_000, &sig));
        assert!(!auth.verifies("o-1", 1_900_000_001, &sig));
        assert!(!auth.verifies("o-1", 1_900_000_000, "x"));
        let unsigned = ApiAuth::new([A.to_string()], None).expect("valid");
        assert_eq!(unsigned.events_signature("o-1", 1_900_000_000), None);
        assert!(!unsigned.verifies("o-1", 1_900_000_000, &sig));
    }
}
