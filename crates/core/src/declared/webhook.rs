//! Verifying a declared provider's webhook: an HMAC of the raw body (optionally with a
//! timestamp) in a header, or a shared secret in a body field, compared in constant time.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::auth::{Algorithm, Encoding, decode, mac};
use super::template::{Escape, Template, Vars};
use crate::secret::Secret;

/// How a webhook proves it comes from the provider.
#[derive(Debug, Clone)]
pub enum Verify {
    /// Not at all (the webhook only triggers a check of the provider's API, which stays the
    /// truth, as for Cashless).
    None,
    /// An HMAC in a header.
    Hmac {
        /// The credential keying it.
        secret: String,
        /// The header carrying it.
        header: HeaderName,
        /// SHA-256 or SHA-512.
        algorithm: Algorithm,
        /// Hex or base64.
        encoding: Encoding,
        /// Text before the signature in the header (`"sha256="`).
        prefix: String,
        /// A header with the unix time the provider signed at, when it sends one.
        timestamp_header: Option<HeaderName>,
        /// How far that time may be from ours.
        tolerance: Duration,
        /// What is signed: `{body}` (the raw body) by default, e.g. `{timestamp}.{body}`.
        signed: Template,
    },
    /// A body field holding a shared secret.
    BodySecret {
        /// The credential it must equal.
        secret: String,
        /// Where it is in the body.
        pointer: String,
    },
}

/// A provider's webhook, served by the producer at `path`.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// `/webhooks/<name>`.
    pub path: String,
    /// Where the payment id is in the body.
    pub payment_id: String,
    /// How it is verified.
    pub verify: Verify,
}

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// It does not prove it comes from the provider (answered 401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// It cannot be read (answered 400).
    #[error("{0}")]
    Invalid(&'static str),
}

impl Webhook {
    /// The credentials verification needs (the producer resolves only these).
    pub fn credentials(&self) -> Vec<&str> {
        match &self.verify {
            Verify::None => Vec::new(),
            Verify::Hmac { secret, .. } | Verify::BodySecret { secret, .. } => vec![secret],
        }
    }

    /// Verifies a delivery; on success, the payment id it names.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        credentials: &BTreeMap<String, Secret>,
        now: DateTime<Utc>,
    ) -> Result<String, Refused> {
        let json = serde_json::from_slice::<Value>(body);
        match &self.verify {
            Verify::None => {}
            Verify::Hmac {
                secret,
                header,
                algorithm,
                encoding,
                prefix,
                timestamp_header,
                tolerance,
                signed,
            } => {
                let key = credentials.get(secret).ok_or(Refused::Unauthorized(
                    "webhook verification is not configured",
                ))?;
                let timestamp = match timestamp_header {
                    None => String::new(),
                    Some(name) => {
                        let text = headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .ok_or(Refused::Unauthorized("the timestamp header is missing"))?;
                        let at: i64 = text.trim().parse().map_err(|_| {
                            Refused::Unauthorized("the timestamp is not unix seconds")
                        })?;
                        let skew = now.timestamp().abs_diff(at);
                        if skew > tolerance.as_secs() {
                            return Err(Refused::Unauthorized(
                                "the timestamp is outside the tolerance (a replay?)",
                            ));
                        }
                        text.trim().to_owned()
                    }
                };
                let given = headers
                    .get(header)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(Refused::Unauthorized("the signature header is missing"))?;
                let given = given.trim().strip_prefix(prefix.as_str()).unwrap_or(given);
                let given = decode(*encoding, given).ok_or(Refused::Unauthorized(
                    "the signature is not encoded as declared",
                ))?;
                // The raw body is signed; a body that is not UTF-8 cannot match a template.
                let body_text = std::str::from_utf8(body)
                    .map_err(|_| Refused::Invalid("the body is not UTF-8"))?;
                let none = BTreeMap::new();
                let message = signed.render(
                    &Vars {
                        payment_id: "",
                        credentials: &none,
                        timestamp: &timestamp,
                        method: "POST",
                        path: &self.path,
                        body: body_text,
                    },
                    Escape::None,
                );
                let expected = mac(*algorithm, key.expose().as_bytes(), message.as_bytes());
                if !bool::from(expected.ct_eq(&given)) {
                    return Err(Refused::Unauthorized("the signature does not match"));
                }
            }
            Verify::BodySecret { secret, pointer } => {
                let key = credentials.get(secret).ok_or(Refused::Unauthorized(
                    "webhook verification is not configured",
                ))?;
                let json = json
                    .as_ref()
                    .map_err(|_| Refused::Invalid("the body is not JSON"))?;
                let theirs = json.pointer(pointer).and_then(Value::as_str).unwrap_or("");
                if !bool::from(theirs.as_bytes().ct_eq(key.expose().as_bytes())) {
                    return Err(Refused::Unauthorized("the shared secret does not match"));
                }
            }
        }
        let json = json.map_err(|_| Refused::Invalid("the body is not JSON"))?;
        match json.pointer(&self.payment_id) {
            Some(Value::String(id)) => Ok(id.clone()),
            Some(Value::Number(id)) => Ok(id.to_string()),
            _ => Err(Refused::Invalid(
                "the body names no payment id where the definition says",
            )),
        }
    }

    /// Signs `body` as the provider would (for the sandbox and tests): the headers to send.
    pub fn sign(
        &self,
        body: &[u8],
        credentials: &BTreeMap<String, Secret>,
        now: DateTime<Utc>,
    ) -> Vec<(HeaderName, String)> {
        let Verify::Hmac {
            secret,
            header,
            algorithm,
            encoding,
            prefix,
            timestamp_header,
            signed,
            ..
        } = &self.verify
        else {
            return Vec::new();
        };
        let timestamp = now.timestamp().to_string();
        let none = BTreeMap::new();
        let message = signed.render(
            &Vars {
                payment_id: "",
                credentials: &none,
                timestamp: &timestamp,
                method: "POST",
                path: &self.path,
                body: &String::from_utf8_lossy(body),
            },
            Escape::None,
        );
        let key = credentials.get(secret).map(Secret::expose).unwrap_or("");
        let signature = super::auth::encode(
            *encoding,
            &mac(*algorithm, key.as_bytes(), message.as_bytes()),
        );
        let mut headers = vec![(header.clone(), format!("{prefix}{signature}"))];
        if let Some(name) = timestamp_header {
            headers.push((name.clone(), timestamp));
        }
        headers
    }
}
