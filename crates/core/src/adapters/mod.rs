//! Provider adapters: one status call per provider, normalized into an [`Observation`] or a
//! classified [`CheckError`].
//!
//! All providers share one pooled `reqwest::Client` inside [`ProviderClient`]; each adapter
//! module knows its URL path, its authentication headers and how to read its body.

pub mod cashless;
pub(crate) mod declared;
mod error;
pub mod foxreload;
pub mod handcash;
pub(crate) mod http;
pub mod miraclecash;
#[cfg(test)]
mod proptests;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde::Deserialize;
use url::Url;

pub use cashless::CashlessConfig;
pub use error::CheckError;
pub use foxreload::FoxReloadConfig;
pub use handcash::HandCashConfig;
pub use http::parse_retry_after;
pub use miraclecash::MiracleCashConfig;

use crate::durations::serde_humane;
use crate::ids::PaymentId;
use crate::observation::Observation;
use crate::provider::Provider;
use crate::secret::{Secret, redacted_snippet};

/// Name of the counter incremented for every status string paywatch does not recognise.
pub const UNKNOWN_STATUS_METRIC: &str = crate::metrics::PROVIDER_UNKNOWN_STATUS_TOTAL;

/// Largest success body read; a status document is a few hundred bytes.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest error body read; only a snippet of it is ever quoted.
const MAX_ERROR_BODY_BYTES: usize = 8 * 1024;
/// Distinct unknown statuses remembered for log de-duplication.
const MAX_REMEMBERED_UNKNOWN: usize = 64;
/// Longest provider string kept verbatim in an observation.
const MAX_RAW_LEN: usize = 128;

/// Base URLs, credentials and HTTP timeouts for every provider this worker talks to.
///
/// A provider left `None` is not configured: checks for it fail with
/// [`CheckError::NotConfigured`].
#[derive(Debug, Clone, Deserialize)]
pub struct ProvidersConfig {
    /// Cashless settings.
    #[serde(default)]
    pub cashless: Option<CashlessConfig>,
    /// HandCash settings.
    #[serde(default)]
    pub handcash: Option<HandCashConfig>,
    /// MiracleCash settings.
    #[serde(default)]
    pub miraclecash: Option<MiracleCashConfig>,
    /// FoxReload settings.
    #[serde(default)]
    pub foxreload: Option<FoxReloadConfig>,
    /// Providers declared in files, resolved (never deserialized: they come from
    /// `PAYWATCH_PROVIDERS_DIR` and their environment variables).
    #[serde(skip)]
    pub declared: Vec<crate::declared::Resolved>,
    /// Time allowed to establish a TCP/TLS connection.
    #[serde(default = "default_connect_timeout", with = "serde_humane")]
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, body included.
    #[serde(default = "default_request_timeout", with = "serde_humane")]
    pub request_timeout: Duration,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(15)
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        Self {
            cashless: None,
            handcash: None,
            miraclecash: None,
            foxreload: None,
            declared: Vec::new(),
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
        }
    }
}

/// `base` with one more path segment, keeping whatever path `base` already has.
fn sub_url(base: &Url, segment: &str) -> Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(segment);
    }
    url
}

impl ProvidersConfig {
    /// Every provider pointed at a `paywatch-sandbox` at `base` (`{base}/cashless`, ...),
    /// with the sandbox's default credentials.
    pub fn sandbox(base: &Url) -> Self {
        Self {
            cashless: Some(CashlessConfig {
                base_url: sub_url(base, "cashless"),
                api_key: "sandbox-cashless-key".into(),
                api_secret: "sandbox-cashless-secret".into(),
            }),
            handcash: Some(HandCashConfig {
                base_url: sub_url(base, "handcash"),
                app_id: "sandbox-handcash-app".into(),
                app_secret: "sandbox-handcash-secret".into(),
            }),
            miraclecash: Some(MiracleCashConfig {
                base_url: sub_url(base, "miraclecash"),
                client_id: "sandbox-miracle-client".into(),
                api_key: "sandbox-miracle-key".into(),
            }),
            foxreload: Some(FoxReloadConfig {
                base_url: sub_url(base, "foxreload"),
                api_key: "sandbox-foxreload-key".into(),
            }),
            ..Self::default()
        }
    }
}

/// The configuration cannot produce a working client.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The base URL is not an absolute http(s) URL with a host.
    #[error(
        "{}_BASE_URL: {url} must be an absolute http(s) URL with a host",
        .provider.as_str().to_ascii_uppercase()
    )]
    BadBaseUrl {
        /// Which provider.
        provider: Provider,
        /// The URL with any userinfo, query and fragment removed.
        url: String,
    },
    /// A credential is empty (typically an unset environment variable).
    #[error("{provider}: credential {field} is empty")]
    EmptyCredential {
        /// Which provider.
        provider: Provider,
        /// Which config field.
        field: &'static str,
    },
    /// A credential contains characters that cannot go into an HTTP header.
    #[error("{provider}: credential {field} contains characters not allowed in an HTTP header")]
    InvalidCredential {
        /// Which provider.
        provider: Provider,
        /// Which config field.
        field: &'static str,
    },
    /// The underlying HTTP client could not be built (e.g. TLS backend failure).
    #[error("could not build the HTTP client")]
    Http(#[source] reqwest::Error),
}

pub(crate) fn nonempty<'a>(
    provider: Provider,
    field: &'static str,
    secret: &'a Secret,
) -> Result<&'a str, ClientBuildError> {
    if secret.expose().trim().is_empty() {
        return Err(ClientBuildError::EmptyCredential { provider, field });
    }
    Ok(secret.expose())
}

/// A header value marked sensitive, so HTTP-stack debug output prints `Sensitive`.
pub(crate) fn sensitive_header(
    provider: Provider,
    field: &'static str,
    value: &str,
) -> Result<HeaderValue, ClientBuildError> {
    let mut header = HeaderValue::from_str(value)
        .map_err(|_| ClientBuildError::InvalidCredential { provider, field })?;
    header.set_sensitive(true);
    Ok(header)
}

/// A provider string made safe to keep and log: bounded, control characters replaced.
pub(crate) fn bounded_raw(raw: &str) -> String {
    raw.chars()
        .take(MAX_RAW_LEN)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// An adapter's reading of a success body.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) observation: Observation,
    /// False when the status string was not one paywatch knows (mapped to `Pending`).
    pub(crate) recognised: bool,
}

/// Why a success body could not be read; only logged at debug, the snippet is what surfaces.
#[derive(Debug)]
pub(crate) struct BodyError(String);

impl BodyError {
    pub(crate) fn new(reason: &str) -> Self {
        Self(reason.to_owned())
    }

    pub(crate) fn json(error: serde_json::Error) -> Self {
        // serde_json's message can quote input (e.g. "unknown variant `...`"), so only the
        // category and position are kept.
        Self(format!(
            "{:?} error at line {} column {}",
            error.classify(),
            error.line(),
            error.column()
        ))
    }
}

/// One configured provider: where to send requests and how to authenticate.
struct Endpoint {
    provider: Provider,
    base: Url,
    path: &'static [&'static str],
    headers: HeaderMap,
    /// Every credential, so error snippets can be scrubbed of them.
    secrets: Vec<Secret>,
}

impl Endpoint {
    fn new(
        provider: Provider,
        base: &Url,
        path: &'static [&'static str],
        headers: HeaderMap,
        secrets: Vec<Secret>,
    ) -> Result<Self, ClientBuildError> {
        let usable = matches!(base.scheme(), "http" | "https")
            && base.host_str().is_some()
            && !base.cannot_be_a_base();
        if !usable {
            let mut shown = base.clone();
            // Userinfo may be a credential; query and fragment are noise here.
            let _ = shown.set_username("");
            let _ = shown.set_password(None);
            shown.set_query(None);
            shown.set_fragment(None);
            return Err(ClientBuildError::BadBaseUrl {
                provider,
                url: shown.to_string(),
            });
        }
        let mut base = base.clone();
        base.set_query(None);
        base.set_fragment(None);
        Ok(Self {
            provider,
            base,
            path,
            headers,
            secrets,
        })
    }

    /// `{base}/{path...}/{id}`, with the id percent-encoded as a single segment.
    fn url_for(&self, payment_id: &PaymentId) -> Option<Url> {
        // URL parsing collapses "." and ".." segments (even percent-encoded), which would
        // turn a status call into a different endpoint.
        if matches!(payment_id.as_str(), "." | "..") {
            return None;
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .ok()?
            .pop_if_empty()
            .extend(self.path)
            .push(payment_id.as_str());
        Some(url)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("provider", &self.provider)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Remembers which unknown statuses were already logged, so each is logged once.
#[derive(Debug, Default)]
struct UnknownStatuses {
    seen: Mutex<HashSet<(Provider, String)>>,
}

impl UnknownStatuses {
    fn record(&self, provider: Provider, raw: &str) {
        metrics::counter!(UNKNOWN_STATUS_METRIC, "provider" => provider.as_str()).increment(1);
        let first_time = {
            // A panic elsewhere while holding the lock leaves the set usable; keep going.
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let key = (provider, raw.to_owned());
            if seen.contains(&key) {
                false
            } else if seen.len() < MAX_REMEMBERED_UNKNOWN {
                seen.insert(key);
                true
            } else {
                // Full: cannot tell new from old, so stay quiet rather than flood the log.
                tracing::debug!(%provider, raw_status = raw, "unknown payment status (log set full)");
                false
            }
        };
        if first_time {
            tracing::warn!(
                %provider,
                raw_status = raw,
                "unknown payment status; treating it as pending (logged once per value)"
            );
        }
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

struct Inner {
    http: reqwest::Client,
    endpoints: Vec<Endpoint>,
    declared: declared::Declared,
    unknown: UnknownStatuses,
}

/// Checks payment status at any configured provider. Cheap to clone; clones share the
/// connection pool.
#[derive(Clone)]
pub struct ProviderClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderClient")
            .field("endpoints", &self.inner.endpoints)
            .finish_non_exhaustive()
    }
}

impl ProviderClient {
    /// Validates `config` and builds the shared HTTP client.
    pub fn new(config: &ProvidersConfig) -> Result<Self, ClientBuildError> {
        let mut endpoints = Vec::new();
        if let Some(c) = &config.cashless {
            endpoints.push(Endpoint::new(
                Provider::Cashless,
                &c.base_url,
                cashless::PATH,
                cashless::auth_headers(c)?,
                vec![c.api_key.clone(), c.api_secret.clone()],
            )?);
        }
        if let Some(c) = &config.handcash {
            endpoints.push(Endpoint::new(
                Provider::HandCash,
                &c.base_url,
                handcash::PATH,
                handcash::auth_headers(c)?,
                vec![c.app_id.clone(), c.app_secret.clone()],
            )?);
        }
        if let Some(c) = &config.miraclecash {
            endpoints.push(Endpoint::new(
                Provider::MiracleCash,
                &c.base_url,
                miraclecash::PATH,
                miraclecash::auth_headers(c)?,
                vec![c.client_id.clone(), c.api_key.clone()],
            )?);
        }
        if let Some(c) = &config.foxreload {
            endpoints.push(Endpoint::new(
                Provider::FoxReload,
                &c.base_url,
                foxreload::PATH,
                foxreload::auth_headers(c)?,
                vec![c.api_key.clone()],
            )?);
        }
        let mut declared = declared::Declared::new();
        for resolved in &config.declared {
            declared::validate(resolved)?;
            declared.insert(resolved.definition.provider, resolved.clone());
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            // A redirect from a status endpoint means a misconfigured base URL; following it
            // could also carry the auth headers to another host.
            .redirect(reqwest::redirect::Policy::none())
            // A status check is retried by its job's next run, never inside one call: no retry
            // policy, and no retries allowed, so no request is copied in case it is retried.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .user_agent(concat!("paywatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientBuildError::Http)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                endpoints,
                declared,
                unknown: UnknownStatuses::default(),
            }),
        })
    }

    /// Whether `provider` has configuration in this client.
    pub fn is_configured(&self, provider: Provider) -> bool {
        self.endpoint(provider).is_some() || self.inner.declared.contains_key(&provider)
    }

    /// The providers this client can check, built-ins first.
    pub fn configured(&self) -> Vec<Provider> {
        let mut all: Vec<Provider> = self.inner.endpoints.iter().map(|e| e.provider).collect();
        all.extend(self.inner.declared.keys().copied());
        all
    }

    fn endpoint(&self, provider: Provider) -> Option<&Endpoint> {
        self.inner
            .endpoints
            .iter()
            .find(|endpoint| endpoint.provider == provider)
    }

    /// Asks `provider` for the status of `payment_id`, once.
    pub async fn check(
        &self,
        provider: Provider,
        payment_id: &PaymentId,
    ) -> Result<Observation, CheckError> {
        if provider.is_declared() {
            return self.check_declared(provider, payment_id).await;
        }
        let endpoint = self
            .endpoint(provider)
            .ok_or(CheckError::NotConfigured(provider))?;
        let url = endpoint.url_for(payment_id).ok_or_else(|| {
            CheckError::NotFound(format!(
                "{provider}: payment id {payment_id:?} cannot be expressed as a URL path segment"
            ))
        })?;
        let started = std::time::Instant::now();
        let response = self
            .inner
            .http
            .get(url)
            .headers(endpoint.headers.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                crate::metrics::provider_request(
                    provider,
                    crate::metrics::transport_outcome(&e),
                    started.elapsed(),
                );
                http::transport_error(provider, &e)
            })?;
        // Time to the response head: the body is a few hundred bytes read right after.
        crate::metrics::provider_request(
            provider,
            crate::metrics::http_outcome(response.status().as_u16()),
            started.elapsed(),
        );

        let status = response.status();
        let headers = response.headers().clone();
        let secrets: Vec<&Secret> = endpoint.secrets.iter().collect();
        if !status.is_success() {
            // The body only decorates the error, so failing to read it changes nothing.
            let body = read_capped(response, MAX_ERROR_BODY_BYTES)
                .await
                .map(|(body, _)| body)
                .unwrap_or_default();
            let error = http::classify_status(
                provider,
                status,
                &headers,
                &body,
                payment_id,
                &secrets,
                Utc::now(),
            );
            // classify_status only returns None for 2xx, which this branch excludes.
            return Err(error.unwrap_or_else(|| {
                CheckError::Transient(format!("{provider}: unexpected HTTP {status}"))
            }));
        }

        let (body, truncated) = read_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|e| http::transport_error(provider, &e))?;
        let now = Utc::now();
        let parsed = if truncated {
            Err(BodyError::new("body larger than the limit"))
        } else {
            match provider {
                Provider::Cashless => cashless::parse(&body, now),
                Provider::HandCash => handcash::parse(&body, now),
                Provider::MiracleCash => miraclecash::parse(&body, now),
                Provider::FoxReload => foxreload::parse(&body, now),
                // check() sent declared providers to check_declared.
                Provider::Declared(_) => Err(BodyError::new("declared provider")),
            }
        };
        match parsed {
            Ok(parsed) => {
                if !parsed.recognised {
                    self.inner
                        .unknown
                        .record(provider, &parsed.observation.raw_status);
                }
                Ok(parsed.observation)
            }
            Err(reason) => {
                tracing::debug!(%provider, reason = %reason.0, "provider body did not parse");
                Err(CheckError::Malformed {
                    snippet: redacted_snippet(&body, &secrets),
                })
            }
        }
    }
}

impl ProviderClient {
    /// [`ProviderClient::check`] for a provider declared in a file: the request its definition
    /// describes, the answer read by its pointers and tables, errors by its HTTP classes.
    async fn check_declared(
        &self,
        provider: Provider,
        payment_id: &PaymentId,
    ) -> Result<Observation, CheckError> {
        let resolved = self
            .inner
            .declared
            .get(&provider)
            .ok_or(CheckError::NotConfigured(provider))?;
        let definition = &resolved.definition;
        // URL parsing collapses "." and ".." segments, which would turn a status call into a
        // different endpoint.
        if matches!(payment_id.as_str(), "." | "..") {
            return Err(CheckError::NotFound(format!(
                "{provider}: payment id {payment_id:?} cannot be expressed as a URL path segment"
            )));
        }
        let prepared = declared::prepare(resolved, payment_id, Utc::now()).map_err(|e| {
            CheckError::Rejected {
                status: 0,
                message: format!("{provider}: the request cannot be built: {e}"),
            }
        })?;
        let mut request = self
            .inner
            .http
            .request(prepared.method, prepared.url)
            .headers(prepared.headers);
        if let Some(body) = prepared.body {
            request = request.body(body);
        }
        let started = std::time::Instant::now();
        let response = request.send().await.map_err(|e| {
            crate::metrics::provider_request(
                provider,
                crate::metrics::transport_outcome(&e),
                started.elapsed(),
            );
            http::transport_error(provider, &e.without_url())
        })?;
        crate::metrics::provider_request(
            provider,
            crate::metrics::http_outcome(response.status().as_u16()),
            started.elapsed(),
        );
        let status = response.status();
        let headers = response.headers().clone();
        let secrets_owned = resolved.secrets();
        let secrets: Vec<&Secret> = secrets_owned.iter().collect();
        if !status.is_success() {
            let body = read_capped(response, MAX_ERROR_BODY_BYTES)
                .await
                .map(|(body, _)| body)
                .unwrap_or_default();
            return Err(definition.http.classify(
                provider,
                status,
                &headers,
                &body,
                payment_id,
                &secrets,
                Utc::now(),
            ));
        }
        let (body, truncated) = read_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|e| http::transport_error(provider, &e.without_url()))?;
        let reading = if truncated {
            Err("body larger than the limit".to_owned())
        } else {
            definition.answer.read(&body, Utc::now())
        };
        match reading {
            Ok(crate::declared::answer::Reading::Observed {
                observation,
                recognised,
            }) => {
                if !recognised {
                    self.inner.unknown.record(provider, &observation.raw_status);
                }
                Ok(observation)
            }
            Ok(crate::declared::answer::Reading::Unmapped(raw)) => {
                metrics::counter!(UNKNOWN_STATUS_METRIC, "provider" => provider.as_str())
                    .increment(1);
                Err(CheckError::UnknownStatus { provider, raw })
            }
            Err(reason) => {
                tracing::debug!(%provider, %reason, "provider body did not parse");
                Err(CheckError::Malformed {
                    snippet: redacted_snippet(&body, &secrets),
                })
            }
        }
    }
}

/// Reads at most `cap` bytes of the body; the flag says whether more was left unread.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> Url {
        Url::parse(url).unwrap()
    }

    #[test]
    fn urls_append_the_provider_path_and_encode_the_id() {
        for (configured, expected) in [
            (
                "http://h:1/cashless",
                "http://h:1/cashless/api/v3/bills/b-1",
            ),
            (
                "http://h:1/cashless/",
                "http://h:1/cashless/api/v3/bills/b-1",
            ),
            (
                "https://api.example.com",
                "https://api.example.com/api/v3/bills/b-1",
            ),
            (
                "https://api.example.com/?x=1#f",
                "https://api.example.com/api/v3/bills/b-1",
            ),
        ] {
            let endpoint = Endpoint::new(
                Provider::Cashless,
                &base(configured),
                cashless::PATH,
                HeaderMap::new(),
                vec![],
            )
            .unwrap();
            let url = endpoint.url_for(&PaymentId::new("b-1").unwrap()).unwrap();
            assert_eq!(url.as_str(), expected, "{configured}");
        }
        let endpoint = Endpoint::new(
            Provider::FoxReload,
            &base("http://h/foxreload"),
            foxreload::PATH,
            HeaderMap::new(),
            vec![],
        )
        .unwrap();
        let url = endpoint
            .url_for(&PaymentId::new("a/b?c#d%e").unwrap())
            .unwrap();
        assert_eq!(url.path(), "/foxreload/api/orders/a%2Fb%3Fc%23d%25e");
        assert_eq!(url.query(), None);
        assert!(endpoint.url_for(&PaymentId::new("..").unwrap()).is_none());
        assert!(endpoint.url_for(&PaymentId::new(".").unwrap()).is_none());
    }

    #[test]
    fn every_provider_path_matches_its_api() {
        let config = ProvidersConfig::sandbox(&base("http://127.0.0.1:9"));
        let client = ProviderClient::new(&config).unwrap();
        let id = PaymentId::new("ID").unwrap();
        let paths: Vec<_> = Provider::ALL
            .iter()
            .map(|p| {
                let url = client.endpoint(*p).unwrap().url_for(&id).unwrap();
                url.path().to_owned()
            })
            .collect();
        assert_eq!(
            paths,
            [
                "/cashless/api/v3/bills/ID",
                "/handcash/v3/paymentRequests/public/ID",
                "/miraclecash/external/payments/prompt/ID",
                "/foxreload/api/orders/ID",
            ]
        );
    }

    #[test]
    fn bad_base_urls_are_rejected_without_leaking_userinfo() {
        for bad in ["mailto:a@b.c", "ftp://h/x", "data:text/plain,hi"] {
            let mut config = ProvidersConfig::sandbox(&base("http://h"));
            config.foxreload.as_mut().unwrap().base_url = base(bad);
            assert!(
                matches!(
                    ProviderClient::new(&config),
                    Err(ClientBuildError::BadBaseUrl { .. })
                ),
                "{bad}"
            );
        }
        let mut config = ProvidersConfig::sandbox(&base("http://h"));
        config.cashless.as_mut().unwrap().base_url = base("ftp://user:hunter2@h/x");
        let message = ProviderClient::new(&config).unwrap_err().to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(
            message.starts_with("CASHLESS_BASE_URL: "),
            "names the variable: {message}"
        );
    }

    #[test]
    fn empty_or_unprintable_credentials_are_rejected() {
        let mut config = ProvidersConfig::sandbox(&base("http://h"));
        config.handcash.as_mut().unwrap().app_secret = "".into();
        assert!(matches!(
            ProviderClient::new(&config),
            Err(ClientBuildError::EmptyCredential {
                provider: Provider::HandCash,
                field: "app_secret"
            })
        ));
        let mut config = ProvidersConfig::sandbox(&base("http://h"));
        config.foxreload.as_mut().unwrap().api_key = "line\nbreak".into();
        let error = ProviderClient::new(&config).unwrap_err();
        assert!(matches!(error, ClientBuildError::InvalidCredential { .. }));
        assert!(!error.to_string().contains("break"));
    }

    #[test]
    fn debug_output_never_shows_credentials() {
        let config = ProvidersConfig::sandbox(&base("http://h"));
        let client = ProviderClient::new(&config).unwrap();
        for text in [
            format!("{config:?}"),
            format!("{client:?}"),
            format!("{config:#?}"),
        ] {
            for secret in [
                "sandbox-cashless-key",
                "sandbox-cashless-secret",
                "sandbox-handcash-app",
                "sandbox-handcash-secret",
                "sandbox-miracle-client",
                "sandbox-miracle-key",
                "sandbox-foxreload-key",
            ] {
                assert!(!text.contains(secret), "{secret} leaked in {text}");
            }
        }
    }

    #[test]
    fn config_deserializes_with_humane_timeouts() {
        let config: ProvidersConfig = serde_json::from_value(serde_json::json!({
            "foxreload": {"base_url": "https://public-api.foxreload.com", "api_key": "k"},
            "request_timeout": "20s",
            "connect_timeout": 1500
        }))
        .unwrap();
        assert!(config.cashless.is_none());
        assert_eq!(config.request_timeout, Duration::from_secs(20));
        assert_eq!(config.connect_timeout, Duration::from_millis(1500));
        let client = ProviderClient::new(&config).unwrap();
        assert!(client.is_configured(Provider::FoxReload));
        assert!(!client.is_configured(Provider::Cashless));
    }

    #[tokio::test]
    async fn unconfigured_provider_is_a_permanent_error() {
        let client = ProviderClient::new(&ProvidersConfig::default()).unwrap();
        let error = client
            .check(Provider::Cashless, &PaymentId::new("b").unwrap())
            .await
            .unwrap_err();
        assert_eq!(error, CheckError::NotConfigured(Provider::Cashless));
        assert!(error.is_permanent());
    }

    #[test]
    fn unknown_statuses_are_remembered_once_and_bounded() {
        let unknown = UnknownStatuses::default();
        unknown.record(Provider::Cashless, "REFUNDED");
        unknown.record(Provider::Cashless, "REFUNDED");
        unknown.record(Provider::FoxReload, "REFUNDED");
        assert_eq!(unknown.remembered(), 2);
        for i in 0..(MAX_REMEMBERED_UNKNOWN * 2) {
            unknown.record(Provider::HandCash, &format!("weird-{i}"));
        }
        assert_eq!(unknown.remembered(), MAX_REMEMBERED_UNKNOWN);
    }

    /// Counts counter increments by `name{label=value,...}`; enough to assert on metrics.
    #[derive(Default)]
    struct CountingRecorder {
        counts: Arc<Mutex<std::collections::HashMap<String, u64>>>,
    }

    struct CountingHandle {
        key: String,
        counts: Arc<Mutex<std::collections::HashMap<String, u64>>>,
    }

    impl metrics::CounterFn for CountingHandle {
        fn increment(&self, value: u64) {
            *self
                .counts
                .lock()
                .unwrap()
                .entry(self.key.clone())
                .or_default() += value;
        }

        fn absolute(&self, value: u64) {
            self.counts.lock().unwrap().insert(self.key.clone(), value);
        }
    }

    impl metrics::Recorder for CountingRecorder {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }

        fn register_counter(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Counter {
            let labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            metrics::Counter::from_arc(Arc::new(CountingHandle {
                key: format!("{}{{{}}}", key.name(), labels.join(",")),
                counts: Arc::clone(&self.counts),
            }))
        }

        fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }

        fn register_histogram(
            &self,
            _: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }

    #[test]
    fn unknown_statuses_are_counted_per_provider_every_time() {
        let recorder = CountingRecorder::default();
        let unknown = UnknownStatuses::default();
        metrics::with_local_recorder(&recorder, || {
            unknown.record(Provider::Cashless, "REFUNDED");
            unknown.record(Provider::Cashless, "REFUNDED");
            unknown.record(Provider::FoxReload, "refunding");
        });
        let counts = recorder.counts.lock().unwrap();
        assert_eq!(
            counts.get("paywatch_provider_unknown_status_total{provider=cashless}"),
            Some(&2),
            "{counts:?}"
        );
        assert_eq!(
            counts.get("paywatch_provider_unknown_status_total{provider=foxreload}"),
            Some(&1),
            "{counts:?}"
        );
    }

    #[test]
    fn raw_strings_are_bounded_and_printable() {
        assert_eq!(bounded_raw("ok"), "ok");
        assert_eq!(bounded_raw("a\nb\x1b"), "a?b?");
        assert_eq!(bounded_raw(&"x".repeat(1000)).len(), MAX_RAW_LEN);
    }
}
