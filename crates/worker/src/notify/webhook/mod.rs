//! The signed outbound webhook channel, following [Standard Webhooks].
//!
//! Every delivery is a `POST` of a JSON event ([`event_body`]) with three headers:
//! `webhook-id` (stable across retries of one event, see [`webhook_id`]), `webhook-timestamp`
//! (Unix seconds at send time) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, one per configured key, space-separated, for key rotation).
//!
//! Outcomes: any 2xx is delivered; 429/503 with `Retry-After` ask to wait
//! ([`DeliveryError::RetryAfter`]); 410 Gone and other 4xx are permanent; 5xx, 408, 429/503
//! without `Retry-After`, timeouts and connection failures are transient — the caller then
//! waits [`WebhookSender::retry_delay`] (see [`RETRY_SCHEDULE`]).
//!
//! Webhook URLs come from shops and often carry tokens in their path or query, so errors and
//! logs show only `scheme://host[:port]/…`. Targets are checked by an SSRF guard (see the
//! `ssrf` module) that refuses loopback, private, link-local and similar addresses unless the
//! operator allow-lists them.
//!
//! [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md

mod event;
mod schedule;
mod signing;
mod ssrf;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use paywatch_core::adapters::parse_retry_after;
use paywatch_core::secret::{REDACTED, redacted_snippet};
use paywatch_core::{Channel, Notification, Secret};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use self::signing::SigningKeys;
use self::ssrf::{AllowList, GuardedResolver, SsrfRefused};
use super::DeliveryError;

pub use self::event::{event_body, webhook_id};
pub use self::schedule::{MAX_ATTEMPTS, RETRY_JITTER, RETRY_SCHEDULE, base_delay};
pub use self::signing::{MIN_KEY_BYTES, SECRET_PREFIX, SignError, UnsignableBody, sign};

/// The message id header.
pub const HEADER_ID: &str = "webhook-id";
/// The send-time Unix timestamp header.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The signature header.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Default whole-request timeout (connect, send, response headers, error body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Default `User-Agent`.
pub const DEFAULT_USER_AGENT: &str = concat!("paywatch-webhook/", env!("CARGO_PKG_VERSION"));

/// Longest `Retry-After` honoured: a receiver asking for more is retried after this long (the
/// longest step of the schedule) rather than parking the job for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// How much of an error response is read, for the redacted snippet; the rest is discarded so a
/// hostile endpoint cannot make the worker buffer an unbounded body.
const ERROR_BODY_PREFIX: usize = 2048;

/// How the webhook channel is set up.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The key every message is signed with: `whsec_<base64>`, at least 24 bytes decoded.
    pub signing_secret: Secret,
    /// More keys that also sign every message, for rotation (receivers accept any one).
    pub extra_secrets: Vec<Secret>,
    /// Exceptions to the SSRF guard: host names, IP addresses or CIDRs ("127.0.0.1", "::1",
    /// "10.0.0.0/8", "hooks.internal").
    pub allow_hosts: Vec<String>,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Multiplies every retry delay (tests use tiny values); 1.0 is the real schedule.
    pub schedule_scale: f64,
}

impl WebhookConfig {
    /// A config with the given signing secret and defaults for everything else.
    pub fn new(signing_secret: impl Into<Secret>) -> Self {
        Self {
            signing_secret: signing_secret.into(),
            extra_secrets: Vec::new(),
            allow_hosts: Vec::new(),
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            schedule_scale: 1.0,
        }
    }
}

/// A [`WebhookConfig`] that cannot be used; each variant names the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebhookConfigError {
    /// A secret does not start with `whsec_`.
    #[error("{field}: webhook signing secrets must look like \"whsec_<base64>\"")]
    SecretPrefix {
        /// `signing_secret` or `extra_secrets[i]`.
        field: String,
    },
    /// The part after `whsec_` is not standard base64.
    #[error("{field}: the part after \"whsec_\" is not valid base64")]
    SecretBase64 {
        /// `signing_secret` or `extra_secrets[i]`.
        field: String,
    },
    /// The decoded key is too short to be a real secret.
    #[error("{field}: the key is {len} bytes; at least {MIN_KEY_BYTES} are required")]
    SecretTooShort {
        /// `signing_secret` or `extra_secrets[i]`.
        field: String,
        /// Decoded length in bytes.
        len: usize,
    },
    /// An allow-list entry is not a host name, IP address or CIDR.
    #[error("allow_hosts[{index}] ({entry:?}): {reason}")]
    AllowHost {
        /// Position in `allow_hosts`.
        index: usize,
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `timeout` is zero.
    #[error("timeout must be greater than zero")]
    Timeout,
    /// `schedule_scale` is negative, NaN or infinite.
    #[error("schedule_scale must be a finite number >= 0 (got {0})")]
    ScheduleScale(f64),
    /// `user_agent` cannot be sent as a header.
    #[error("user_agent is not a valid HTTP header value")]
    UserAgent,
    /// reqwest could not build the client (TLS backend initialisation).
    #[error("could not build the webhook HTTP client: {0}")]
    Client(String),
}

/// Delivers signed webhooks. Cheap to clone: clones share one pooled HTTP client.
#[derive(Clone)]
pub struct WebhookSender {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    keys: SigningKeys,
    allow: Arc<AllowList>,
    timeout: Duration,
    schedule_scale: f64,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("keys", &self.inner.keys.len())
            .field("allow", &self.inner.allow)
            .field("timeout", &self.inner.timeout)
            .field("schedule_scale", &self.inner.schedule_scale)
            .finish_non_exhaustive()
    }
}

impl WebhookSender {
    /// Validates `config` and builds the shared client.
    pub fn new(config: WebhookConfig) -> Result<Self, WebhookConfigError> {
        let keys = SigningKeys::new(&config.signing_secret, &config.extra_secrets)?;
        let allow = Arc::new(AllowList::parse(&config.allow_hosts)?);
        if config.timeout.is_zero() {
            return Err(WebhookConfigError::Timeout);
        }
        if !(config.schedule_scale.is_finite() && config.schedule_scale >= 0.0) {
            return Err(WebhookConfigError::ScheduleScale(config.schedule_scale));
        }
        let user_agent =
            HeaderValue::from_str(&config.user_agent).map_err(|_| WebhookConfigError::UserAgent)?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            // A redirect would be a second, unchecked target (and would re-send the signed
            // body elsewhere); receivers must be configured with their final URL.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy resolves names itself, which would bypass the SSRF resolver.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&allow))))
            .user_agent(user_agent)
            .build()
            .map_err(|e| WebhookConfigError::Client(e.without_url().to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                keys,
                allow,
                timeout: config.timeout,
                schedule_scale: config.schedule_scale,
            }),
        })
    }

    /// Delivers `n` to its webhook URL as message `webhook_id`; `attempt` (1-based) is for logs.
    pub async fn send(
        &self,
        n: &Notification,
        webhook_id: &str,
        attempt: u32,
    ) -> Result<(), DeliveryError> {
        if n.channel != Channel::Webhook {
            return Err(DeliveryError::Permanent(format!(
                "a {} notification was handed to the webhook sender",
                n.channel
            )));
        }
        let target = Target::parse(&n.target)?;
        let result = self.deliver(n, &target, webhook_id).await;
        match &result {
            Ok(()) => tracing::debug!(
                endpoint = %target.endpoint, webhook_id, attempt, "webhook delivered"
            ),
            Err(error) => tracing::debug!(
                endpoint = %target.endpoint, webhook_id, attempt, %error, "webhook not delivered"
            ),
        }
        result
    }

    async fn deliver(
        &self,
        n: &Notification,
        target: &Target,
        webhook_id: &str,
    ) -> Result<(), DeliveryError> {
        let body = event_body(n).map_err(|e| {
            DeliveryError::Permanent(format!("could not serialize the webhook event: {e}"))
        })?;
        let redact = self.redactions(&n.delivered_codes, target);
        self.post(target, webhook_id, body, &redact).await
    }

    /// Posts an already-built JSON event (the ops channel's digests) to `url` as message
    /// `webhook_id`, signed and guarded like every notification.
    pub async fn send_event(
        &self,
        url: &str,
        webhook_id: &str,
        body: Vec<u8>,
    ) -> Result<(), DeliveryError> {
        let target = Target::parse(url)?;
        let redact = self.redactions(&[], &target);
        self.post(&target, webhook_id, body, &redact).await
    }

    /// Why this sender would refuse to post to `url` before resolving any name, in the door's
    /// words ([`paywatch_core::targets`]): a malformed URL, or an IP-literal host in a blocked
    /// range that the allow-list does not cover. `None` when it would try.
    pub fn url_problem(&self, url: &str) -> Option<String> {
        if let Some(problem) = paywatch_core::targets::webhook_url_problem(url) {
            return Some(problem.to_owned());
        }
        let ip = paywatch_core::targets::webhook_ip_literal(url)?;
        self.inner.allow.check(&ip.to_string(), [ip]).err()?;
        paywatch_core::ip_ranges::classify(ip).map(paywatch_core::targets::blocked_webhook_problem)
    }

    async fn post(
        &self,
        target: &Target,
        webhook_id: &str,
        body: Vec<u8>,
        redact: &[Secret],
    ) -> Result<(), DeliveryError> {
        // IP literals never reach the guarded resolver, so they are checked here.
        if let Some(ip) = target.ip_literal {
            self.inner
                .allow
                .check(&ip.to_string(), [ip])
                .map_err(|refused| DeliveryError::Permanent(refused.to_string()))?;
        }
        let id = HeaderValue::from_str(webhook_id)
            .ok()
            .filter(|_| !webhook_id.is_empty() && webhook_id.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                DeliveryError::Permanent(
                    "webhook id must be non-empty printable ASCII without spaces".into(),
                )
            })?;
        let timestamp = Utc::now().timestamp();
        let signature = self
            .inner
            .keys
            .header(webhook_id, timestamp, &body)
            .map_err(|e| DeliveryError::Permanent(e.to_string()))?;

        let response = self
            .inner
            .client
            .post(target.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(HEADER_ID, id)
            .header(HEADER_TIMESTAMP, timestamp)
            .header(HEADER_SIGNATURE, signature)
            .body(body)
            .send()
            .await;
        let mut response = match response {
            Ok(response) => response,
            Err(err) => return Err(transport_error(err, target, self.inner.timeout, redact)),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = std::mem::take(response.headers_mut());
        let prefix = read_prefix(response, ERROR_BODY_PREFIX).await;
        classify_status(status, &headers, &prefix, &target.endpoint, redact)
    }

    /// How long to wait after `attempt` (1-based) failed with [`DeliveryError::Transient`]
    /// before the next one, jittered by ±[`RETRY_JITTER`] and multiplied by `schedule_scale`;
    /// `None` once [`MAX_ATTEMPTS`] have been made. See [`RETRY_SCHEDULE`].
    pub fn retry_delay(&self, attempt: u32) -> Option<Duration> {
        schedule::retry_delay(attempt, self.inner.schedule_scale)
    }

    /// Everything a response snippet or error text must not repeat, longest first so a
    /// shorter piece never leaves part of a longer one visible.
    fn redactions(&self, codes: &[String], target: &Target) -> Vec<Secret> {
        let mut all: Vec<Secret> = self
            .inner
            .keys
            .redactions()
            .iter()
            .chain(&target.redact)
            .cloned()
            .chain(codes.iter().map(|c| Secret::new(c.as_str())))
            .collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        all
    }
}

/// A parsed, checked webhook URL.
struct Target {
    url: Url,
    /// `scheme://host[:port]/…`: all errors and logs may show.
    endpoint: String,
    ip_literal: Option<IpAddr>,
    /// Path segments, query and fragment: where URL tokens live.
    redact: Vec<Secret>,
}

impl Target {
    fn parse(raw: &str) -> Result<Self, DeliveryError> {
        let permanent = |msg: String| DeliveryError::Permanent(msg);
        // The same rule the submit function applied; neither quotes the input.
        if let Some(problem) = paywatch_core::targets::webhook_url_problem(raw) {
            return Err(permanent(format!("webhook URL {problem}")));
        }
        // url's errors describe the problem ("invalid port number"), never quote the input.
        let url = Url::parse(raw)
            .map_err(|e| permanent(format!("webhook target is not a valid URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(permanent(format!(
                "webhook URL scheme {:?} is not allowed; only http and https are",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(permanent(
                "webhook URL must not contain credentials (user:password@host)".into(),
            ));
        }
        let (host, ip_literal) = match url.host() {
            Some(url::Host::Domain(d)) => (d.to_owned(), None),
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => (format!("[{ip}]"), Some(IpAddr::V6(ip))),
            None => return Err(permanent("webhook URL has no host".into())),
        };
        let endpoint = match url.port() {
            Some(port) => format!("{}://{host}:{port}/…", url.scheme()),
            None => format!("{}://{host}/…", url.scheme()),
        };
        let mut redact: Vec<Secret> = Vec::new();
        if let Some(query) = url.query() {
            redact.push(Secret::new(query));
            for (key, value) in url.query_pairs() {
                redact.push(Secret::new(format!("{key}={value}")));
                redact.push(Secret::new(value.into_owned()));
            }
        }
        if url.path() != "/" {
            redact.push(Secret::new(url.path()));
            for segment in url.path_segments().into_iter().flatten() {
                redact.push(Secret::new(segment));
            }
        }
        if let Some(fragment) = url.fragment() {
            redact.push(Secret::new(fragment));
        }
        Ok(Self {
            url,
            endpoint,
            ip_literal,
            redact,
        })
    }
}

/// `allow_hosts` (`PAYWATCH_WEBHOOK_ALLOW_HOSTS`) in the form a notifier publishes it to the
/// submit function ([`paywatch_core::ip_ranges::publish_text`]): its addresses and networks.
pub fn published_allow_list(allow_hosts: &[String]) -> Result<String, WebhookConfigError> {
    Ok(AllowList::parse(allow_hosts)?.published())
}

/// Reads at most `limit` bytes of the body; errors just end the read (the status is what
/// matters, the body is only for the error message).
async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while buf.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    buf.truncate(limit);
    buf
}

/// Turns a non-2xx response into the error the queue acts on.
fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: &str,
    redact: &[Secret],
) -> Result<(), DeliveryError> {
    if status.is_success() {
        return Ok(());
    }
    if status == StatusCode::GONE {
        // Standard Webhooks: 410 means "this endpoint is gone, stop sending".
        return Err(DeliveryError::Permanent(
            "endpoint answered 410 Gone; no more retries".into(),
        ));
    }
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    if let (StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE, Some(after)) =
        (status, retry_after)
    {
        return Err(DeliveryError::RetryAfter {
            after: after.min(MAX_RETRY_AFTER),
            reason: format!("{endpoint} answered HTTP {status}"),
        });
    }
    if status.is_redirection() {
        // No body and no Location: the new URL may carry a token too.
        return Err(DeliveryError::Permanent(format!(
            "{endpoint} answered HTTP {status}; webhooks do not follow redirects, so the \
             endpoint must be configured with its final URL"
        )));
    }
    let refs: Vec<&Secret> = redact.iter().collect();
    let snippet = redacted_snippet(body, &refs);
    let detail = if snippet.trim().is_empty() {
        format!("{endpoint} answered HTTP {status}")
    } else {
        format!("{endpoint} answered HTTP {status}: {}", snippet.trim())
    };
    // 408 and 429 are the 4xx that say "try again later" rather than "this request is wrong".
    let retryable_4xx = matches!(
        status,
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
    );
    if status.is_client_error() && !retryable_4xx {
        Err(DeliveryError::Permanent(detail))
    } else {
        Err(DeliveryError::Transient(detail))
    }
}

/// Classifies a request that got no response. The message is built from the error chain
/// without the URL (reqwest's own message would include it, query string and all).
fn transport_error(
    err: reqwest::Error,
    target: &Target,
    timeout: Duration,
    redact: &[Secret],
) -> DeliveryError {
    let err = err.without_url();
    let endpoint = &target.endpoint;
    let mut refused = None;
    let mut chain: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(r) = e.downcast_ref::<SsrfRefused>() {
            refused = Some(r.clone());
        }
        let text = e.to_string();
        if !chain.iter().any(|c| c.contains(&text)) {
            chain.push(text);
        }
        source = e.source();
    }
    if let Some(refused) = refused {
        return DeliveryError::Permanent(refused.to_string());
    }
    let chain = scrub(chain.join(": "), redact);
    if err.is_timeout() {
        DeliveryError::Transient(format!("{endpoint} did not answer within {timeout:?}"))
    } else if err.is_connect() {
        DeliveryError::Transient(format!("could not connect to {endpoint}: {chain}"))
    } else {
        DeliveryError::Transient(format!("request to {endpoint} failed: {chain}"))
    }
}

/// Replaces every known secret in `text` (belt and braces: transport errors should not
/// contain URL parts, but hyper's messages are not ours to guarantee).
fn scrub(mut text: String, redact: &[Secret]) -> String {
    for secret in redact {
        let value = secret.expose();
        if value.len() >= 4 && text.contains(value) {
            text = text.replace(value, REDACTED);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn permanent(result: Result<(), DeliveryError>) -> String {
        match result {
            Err(DeliveryError::Permanent(msg)) => msg,
            other => panic!("expected Permanent, got {other:?}"),
        }
    }

    fn transient(result: Result<(), DeliveryError>) -> String {
        match result {
            Err(DeliveryError::Transient(msg)) => msg,
            other => panic!("expected Transient, got {other:?}"),
        }
    }

    fn classify(status: u16, retry_after: Option<&str>, body: &str) -> Result<(), DeliveryError> {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        }
        let target =
            Target::parse("https://hooks.example/p/tok3n-in-path?token=s3cr3t-query").unwrap();
        classify_status(
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.as_bytes(),
            &target.endpoint,
            &target.redact,
        )
    }

    #[test]
    fn config_validation_names_the_field() {
        let ok = WebhookConfig::new(SECRET);
        assert!(WebhookSender::new(ok.clone()).is_ok());

        let mut c = ok.clone();
        c.timeout = Duration::ZERO;
        assert_eq!(
            WebhookSender::new(c).unwrap_err(),
            WebhookConfigError::Timeout
        );

        for scale in [-1.0, f64::NAN, f64::INFINITY] {
            let mut c = ok.clone();
            c.schedule_scale = scale;
            let err = WebhookSender::new(c).unwrap_err();
            assert!(err.to_string().contains("schedule_scale"), "{err}");
        }

        let mut c = ok.clone();
        c.user_agent = "bad\nagent".into();
        assert_eq!(
            WebhookSender::new(c).unwrap_err(),
            WebhookConfigError::UserAgent
        );

        let mut c = ok.clone();
        c.signing_secret = Secret::new("sk_live_nope");
        let err = WebhookSender::new(c).unwrap_err();
        assert!(err.to_string().starts_with("signing_secret:"), "{err}");
        assert!(!err.to_string().contains("sk_live_nope"), "{err}");

        let mut c = ok;
        c.allow_hosts = vec!["10.0.0.0/99".into()];
        assert!(matches!(
            WebhookSender::new(c).unwrap_err(),
            WebhookConfigError::AllowHost { index: 0, .. }
        ));
    }

    #[test]
    fn sender_debug_hides_secrets() {
        let sender = WebhookSender::new(WebhookConfig::new(SECRET)).unwrap();
        let debug = format!("{sender:?}");
        assert!(!debug.contains("C2FV"), "{debug}");
        let config = format!("{:?}", WebhookConfig::new(SECRET));
        assert!(!config.contains("C2FV"), "{config}");
    }

    #[test]
    fn retry_delay_follows_the_scaled_schedule() {
        let mut config = WebhookConfig::new(SECRET);
        config.schedule_scale = 0.01;
        let sender = WebhookSender::new(config).unwrap();
        let d = sender.retry_delay(1).unwrap().as_secs_f64();
        assert!((0.0425..=0.0575).contains(&d), "{d}");
        assert!(sender.retry_delay(9).is_some());
        assert_eq!(sender.retry_delay(10), None);
    }

    #[test]
    fn target_parsing_refuses_bad_urls_without_echoing_them() {
        for (url, needle) in [
            ("ftp://files.example/x?token=s3cr3t", "http:// or https://"),
            ("file:///etc/passwd", "http:// or https://"),
            ("https://user:s3cr3t@hooks.example/x", "credentials"),
            ("https://user@hooks.example/x", "credentials"),
            ("not a url s3cr3t", "printable ASCII"),
            ("https://hooks.example/x#s3cr3t", "fragment"),
        ] {
            let Err(DeliveryError::Permanent(msg)) = Target::parse(url) else {
                panic!("{url} was accepted");
            };
            assert!(msg.contains(needle), "{url}: {msg}");
            assert!(!msg.contains("s3cr3t"), "{url}: {msg}");
        }
    }

    #[test]
    fn endpoint_shows_only_scheme_host_and_port() {
        let t = Target::parse("https://Hooks.Example:8443/a/b?token=x").unwrap();
        assert_eq!(t.endpoint, "https://hooks.example:8443/…");
        assert_eq!(t.ip_literal, None);
        let t = Target::parse("http://[::1]/hook").unwrap();
        assert_eq!(t.endpoint, "http://[::1]/…");
        assert_eq!(t.ip_literal, Some("::1".parse().unwrap()));
        // WHATWG parsing normalises odd IPv4 spellings, so they are caught as literals.
        let t = Target::parse("http://0x7f.1/").unwrap();
        assert_eq!(t.ip_literal, Some("127.0.0.1".parse().unwrap()));
        let t = Target::parse("https://hooks.example").unwrap();
        assert_eq!(t.endpoint, "https://hooks.example/…");
    }

    #[test]
    fn status_classification() {
        assert!(classify(200, None, "").is_ok());
        assert!(classify(204, None, "").is_ok());
        assert_eq!(
            permanent(classify(410, None, "bye")),
            "endpoint answered 410 Gone; no more retries"
        );
        let msg = permanent(classify(404, None, "no such hook"));
        assert!(msg.contains("404") && msg.contains("no such hook"), "{msg}");
        let msg = permanent(classify(401, None, ""));
        assert_eq!(
            msg,
            "https://hooks.example/… answered HTTP 401 Unauthorized"
        );
        assert!(permanent(classify(302, None, "")).contains("redirect"));
        assert!(transient(classify(500, None, "oops")).contains("500"));
        assert!(transient(classify(502, None, "")).contains("502"));
        assert!(transient(classify(503, None, "")).contains("503"));
        assert!(transient(classify(429, None, "")).contains("429"));
        assert!(transient(classify(408, None, "")).contains("408"));
        // Retry-After only counts on 429/503.
        assert!(transient(classify(500, Some("5"), "")).contains("500"));
        assert!(transient(classify(429, Some("soon"), "")).contains("429"));
    }

    #[test]
    fn retry_after_seconds_dates_and_cap() {
        let Err(DeliveryError::RetryAfter { after, reason }) = classify(429, Some("7"), "") else {
            panic!("not RetryAfter");
        };
        assert_eq!(after, Duration::from_secs(7));
        assert!(
            reason.contains("429") && reason.contains("hooks.example"),
            "{reason}"
        );

        let at = Utc::now() + chrono::Duration::seconds(120);
        let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let Err(DeliveryError::RetryAfter { after, .. }) = classify(503, Some(&date), "") else {
            panic!("not RetryAfter");
        };
        assert!((115..=120).contains(&after.as_secs()), "{after:?}");

        let Err(DeliveryError::RetryAfter { after, .. }) = classify(429, Some("9999999"), "")
        else {
            panic!("not RetryAfter");
        };
        assert_eq!(after, MAX_RETRY_AFTER);
    }

    #[test]
    fn error_snippets_never_repeat_url_tokens() {
        let body = "rejected https://hooks.example/p/tok3n-in-path?token=s3cr3t-query because \
                    token s3cr3t-query is wrong";
        let msg = permanent(classify(403, None, body));
        assert!(!msg.contains("s3cr3t-query"), "{msg}");
        assert!(!msg.contains("tok3n-in-path"), "{msg}");
        assert!(msg.contains("403") && msg.contains("rejected"), "{msg}");
    }

    #[test]
    fn scrub_replaces_known_values() {
        let redact = vec![Secret::new("abcd1234"), Secret::new("xy")];
        assert_eq!(
            scrub("got abcd1234 and xy".into(), &redact),
            "got [redacted] and xy"
        );
    }
}
