//! The generic adapter: one status call to a provider declared in a file
//! ([`crate::declared`]), read by its definition, failing with the same [`CheckError`]
//! classes as the built-in adapters.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use url::Url;

use super::{ClientBuildError, sensitive_header};
use crate::declared::Resolved;
use crate::declared::auth::{Auth, encode, mac};
use crate::declared::template::{Escape, Vars};
use crate::ids::PaymentId;
use crate::provider::Provider;
use crate::secret::Secret;

/// A status request ready to send (the sandbox builds the same one to check what it gets).
#[derive(Debug)]
pub struct Prepared {
    /// GET or POST.
    pub method: reqwest::Method,
    /// The URL, query included.
    pub url: Url,
    /// Every header, authentication included (credential-bearing ones marked sensitive).
    pub headers: HeaderMap,
    /// The body, for POST.
    pub body: Option<String>,
}

/// Checks what can be checked before any request: the base URL, and that every header the
/// credentials go into can carry them.
pub(crate) fn validate(resolved: &Resolved) -> Result<(), ClientBuildError> {
    let provider = resolved.definition.provider;
    let base = &resolved.base_url;
    if !(matches!(base.scheme(), "http" | "https") && base.host_str().is_some())
        || base.cannot_be_a_base()
    {
        return Err(ClientBuildError::BadBaseUrl {
            provider,
            url: crate::secret::redact_url(base.as_str()),
        });
    }
    let probe = PaymentId::new("probe").map_err(|_| ClientBuildError::EmptyCredential {
        provider,
        field: "payment_id",
    })?;
    prepare(resolved, &probe, Utc::now()).map(drop)
}

/// Builds the status request for `payment_id`, signed (if it is) at `now`.
pub fn prepare(
    resolved: &Resolved,
    payment_id: &PaymentId,
    now: DateTime<Utc>,
) -> Result<Prepared, ClientBuildError> {
    let definition = &resolved.definition;
    let provider = definition.provider;
    let request = &definition.request;
    let timestamp = now.timestamp().to_string();
    let creds = &resolved.credentials;
    let fill =
        |template: &crate::declared::template::Template, escape: Escape, path: &str, body: &str| {
            template.render(
                &Vars {
                    payment_id: payment_id.as_str(),
                    credentials: creds,
                    timestamp: &timestamp,
                    method: request.method.as_str(),
                    path,
                    body,
                },
                escape,
            )
        };
    let mut url = resolved.base_url.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let Ok(mut segments) = url.path_segments_mut() else {
            return Err(ClientBuildError::BadBaseUrl {
                provider,
                url: crate::secret::redact_url(resolved.base_url.as_str()),
            });
        };
        segments.pop_if_empty();
        for segment in &request.path {
            segments.push(&fill(segment, Escape::None, "", ""));
        }
    }
    let mut query: Vec<(String, String)> = request
        .query
        .iter()
        .map(|(name, value)| (name.clone(), fill(value, Escape::None, "", "")))
        .collect();
    if let Auth::Query { param, value } = &definition.auth {
        query.push((param.clone(), fill(value, Escape::None, "", "")));
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    let body = request.body.as_ref().map(|b| fill(b, Escape::Json, "", ""));
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if body.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in &request.headers {
        let text = fill(value, Escape::None, "", "");
        let header = if value.uses_credentials() {
            sensitive_header(provider, "request.headers", &text)?
        } else {
            HeaderValue::from_str(&text).map_err(|_| ClientBuildError::InvalidCredential {
                provider,
                field: "request.headers",
            })?
        };
        headers.insert(name.clone(), header);
    }
    let secret = |name: &str| -> Result<&str, ClientBuildError> {
        creds
            .get(name)
            .map(Secret::expose)
            .filter(|s| !s.trim().is_empty())
            .ok_or(ClientBuildError::EmptyCredential {
                provider,
                field: "credentials",
            })
    };
    match &definition.auth {
        Auth::None | Auth::Query { .. } => {}
        Auth::Bearer { token } => {
            let value = format!("Bearer {}", secret(token)?);
            headers.insert(
                AUTHORIZATION,
                sensitive_header(provider, "auth.token", &value)?,
            );
        }
        Auth::Basic { username, password } => {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                secret(username)?,
                secret(password)?
            ));
            headers.insert(
                AUTHORIZATION,
                sensitive_header(
                    provider,
                    "auth.username/auth.password",
                    &format!("Basic {encoded}"),
                )?,
            );
        }
        Auth::Header { name, value } => {
            let text = fill(value, Escape::None, "", "");
            headers.insert(
                name.clone(),
                sensitive_header(provider, "auth.value", &text)?,
            );
        }
        Auth::Hmac {
            header,
            secret: key,
            algorithm,
            encoding,
            message,
            timestamp_header,
            prefix,
        } => {
            let path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            let signed = fill(message, Escape::None, &path, body.as_deref().unwrap_or(""));
            let signature = encode(
                *encoding,
                &mac(*algorithm, secret(key)?.as_bytes(), signed.as_bytes()),
            );
            headers.insert(
                header.clone(),
                sensitive_header(provider, "auth.secret", &format!("{prefix}{signature}"))?,
            );
            if let Some(name) = timestamp_header {
                headers.insert(
                    name.clone(),
                    HeaderValue::from_str(&timestamp).map_err(|_| {
                        ClientBuildError::InvalidCredential {
                            provider,
                            field: "auth.timestamp_header",
                        }
                    })?,
                );
            }
        }
    }
    Ok(Prepared {
        method: request.method.clone(),
        url,
        headers,
        body,
    })
}

/// The declared providers of a client, by provider.
pub(crate) type Declared = BTreeMap<Provider, Resolved>;
