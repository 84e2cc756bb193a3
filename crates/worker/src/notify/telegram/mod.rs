//! The Telegram channel: one Bot API `sendMessage` per notification, paced fleet-wide in Redis.
//!
//! Before each send one Lua script checks both of Telegram's budgets for the whole fleet (one
//! message per chat per `per_chat_interval`, `per_bot_per_second` per bot) and reserves a slot,
//! or the send returns [`DeliveryError::Paced`] and the job is rescheduled without spending an
//! attempt; nothing sleeps here.
//!
//! The bot token is part of every request URL, so no error from here quotes a URL: transport
//! errors are stripped of theirs and every message is scrubbed of the token.

mod pacing;
mod text;

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use paywatch_core::secret::{REDACTED, redacted_snippet};
use paywatch_core::{Notification, Secret};
use paywatch_queue::RedisConn;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde::Deserialize;
use url::Url;

use self::pacing::{Budget, Pace, Pacer};
use super::DeliveryError;
use super::email::templates::{escape_html, one_line};

/// The real Bot API.
pub const DEFAULT_API_BASE: &str = "https://api.telegram.org";
/// Telegram's documented limit for one chat: about one message per second.
pub const DEFAULT_PER_CHAT_INTERVAL: Duration = Duration::from_secs(1);
/// Telegram's documented limit for one bot: about 30 messages per second.
pub const DEFAULT_PER_BOT_PER_SECOND: u32 = 30;
/// The default limit for one Bot API request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest accepted `per_bot_per_second` (Telegram's paid broadcast ceiling).
pub const MAX_PER_BOT_PER_SECOND: u32 = 1_000;
/// The longest accepted `per_chat_interval`.
pub const MAX_PER_CHAT_INTERVAL: Duration = Duration::from_secs(3_600);

/// How to reach the Bot API and how fast to go.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    /// The bot's token, `<bot id>:<secret>`.
    pub bot_token: Secret,
    /// The Bot API base URL (`TELEGRAM_API_BASE`); the sandbox's fake is `{sandbox}/telegram`.
    pub api_base: Url,
    /// Limit for one Bot API request, connecting included.
    pub timeout: Duration,
    /// At most one message per chat per this long, across the fleet.
    pub per_chat_interval: Duration,
    /// At most this many messages per bot in any one second, across the fleet.
    pub per_bot_per_second: u32,
}

impl TelegramConfig {
    /// The defaults (the real Bot API, Telegram's documented limits) for `bot_token`.
    pub fn new(bot_token: Secret) -> Self {
        Self {
            bot_token,
            api_base: default_api_base(),
            timeout: DEFAULT_TIMEOUT,
            per_chat_interval: DEFAULT_PER_CHAT_INTERVAL,
            per_bot_per_second: DEFAULT_PER_BOT_PER_SECOND,
        }
    }

    /// Checks everything that needs no Redis (the token's shape, the API base, the limits), so
    /// a process can refuse a bad setting before it connects; returns the `sendMessage` URL
    /// and the bot's id.
    pub fn check(&self) -> Result<(Url, String), TelegramConfigError> {
        let bot_id = bot_id(&self.bot_token)
            .ok_or(TelegramConfigError::MalformedToken)?
            .to_owned();
        let api_base = &self.api_base;
        let base_ok = matches!(api_base.scheme(), "http" | "https")
            && api_base.host_str().is_some()
            && api_base.username().is_empty()
            && api_base.password().is_none()
            && api_base.query().is_none()
            && api_base.fragment().is_none();
        if !base_ok {
            return Err(TelegramConfigError::InvalidApiBase(redacted_base(api_base)));
        }
        // String building rather than `Url::join`, which would drop a base path such as
        // `/telegram`; the token's characters were checked above, so nothing needs escaping.
        let send_url = Url::parse(&format!(
            "{}/bot{}/sendMessage",
            api_base.as_str().trim_end_matches('/'),
            self.bot_token.expose()
        ))
        .map_err(|_| TelegramConfigError::InvalidApiBase(redacted_base(api_base)))?;
        let interval = self.per_chat_interval;
        if interval < Duration::from_millis(1) || interval > MAX_PER_CHAT_INTERVAL {
            return Err(TelegramConfigError::InvalidChatInterval(interval));
        }
        let rate = self.per_bot_per_second;
        if rate == 0 || rate > MAX_PER_BOT_PER_SECOND {
            return Err(TelegramConfigError::InvalidBotRate(rate));
        }
        Ok((send_url, bot_id))
    }
}

/// [`DEFAULT_API_BASE`] as a URL.
pub fn default_api_base() -> Url {
    Url::parse(DEFAULT_API_BASE).expect("DEFAULT_API_BASE is a valid URL")
}

/// Why a [`TelegramSender`] could not be built. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelegramConfigError {
    /// The token is not `<digits>:<letters, digits, '_' or '-'>`.
    #[error(
        "the Telegram bot token is malformed (expected <bot id>:<secret>, as BotFather gives it)"
    )]
    MalformedToken,
    /// The API base is not a plain http(s) URL.
    #[error("TELEGRAM_API_BASE {0} must be an http(s) URL without credentials, query or fragment")]
    InvalidApiBase(String),
    /// `per_chat_interval` is zero or too long.
    #[error("per_chat_interval must be between 1 ms and {MAX_PER_CHAT_INTERVAL:?}, got {0:?}")]
    InvalidChatInterval(Duration),
    /// `per_bot_per_second` is zero or too large.
    #[error("per_bot_per_second must be between 1 and {MAX_PER_BOT_PER_SECOND}, got {0}")]
    InvalidBotRate(u32),
    /// The pacing key prefix is empty.
    #[error("the pacing key prefix must not be empty")]
    EmptyKeyPrefix,
    /// reqwest could not build its client (TLS backend initialisation).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
}

/// Sends notification messages through one Telegram bot.
#[derive(Clone)]
pub struct TelegramSender {
    http: reqwest::Client,
    /// `{api_base}/bot{token}/sendMessage`: holds the token, never printed.
    send_url: Url,
    token: Secret,
    api_base: Url,
    pacer: Pacer,
}

impl fmt::Debug for TelegramSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramSender")
            .field("api_base", &self.api_base.as_str())
            .field("pacer", &self.pacer)
            .finish_non_exhaustive()
    }
}

impl TelegramSender {
    /// Validates `config`; pacing keys go under `key_prefix` in the Redis behind `redis`.
    pub fn new(
        config: TelegramConfig,
        redis: RedisConn,
        key_prefix: impl Into<String>,
    ) -> Result<Self, TelegramConfigError> {
        let key_prefix = key_prefix.into();
        if key_prefix.is_empty() {
            return Err(TelegramConfigError::EmptyKeyPrefix);
        }
        let (send_url, bot_id) = config.check()?;
        let interval = config.per_chat_interval;
        let rate = config.per_bot_per_second;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // The Bot API never redirects; following one would hand the token to another URL.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TelegramConfigError::HttpClient(e.without_url().to_string()))?;
        Ok(Self {
            http,
            send_url,
            token: config.bot_token,
            api_base: config.api_base,
            pacer: Pacer::new(redis, &key_prefix, &bot_id, interval, rate),
        })
    }

    /// Sends the message announcing `n` to the chat `n.target` (a numeric chat id or a
    /// `@channelusername`).
    ///
    /// Reserves a pacing slot first; when the chat or the bot is over budget nothing is sent
    /// and the answer is [`DeliveryError::Paced`].
    pub async fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let chat = ChatTarget::parse_or_permanent(&n.target)?;
        let Some(message) = text::render(n) else {
            return Err(DeliveryError::Permanent(format!(
                "no Telegram message announces the non-final status {}",
                n.status
            )));
        };
        self.deliver(&chat, message).await?;
        tracing::debug!(order_id = %n.order_id, status = %n.status, "telegram message sent");
        Ok(())
    }

    /// Sends plain `text` to the chat `target` (the ops digest), escaped for the HTML parse mode
    /// and cut to Telegram's length limit; paced and classified like [`send`](Self::send).
    pub async fn send_text(&self, target: &str, text: &str) -> Result<(), DeliveryError> {
        let chat = ChatTarget::parse_or_permanent(target)?;
        self.deliver(&chat, escape_html(&text::truncate(text)))
            .await?;
        tracing::debug!("telegram text message sent");
        Ok(())
    }

    /// Reserves a pacing slot, then calls `sendMessage` with `message` (HTML parse mode).
    async fn deliver(&self, chat: &ChatTarget, message: String) -> Result<(), DeliveryError> {
        match self.pacer.reserve(chat.key()).await {
            Ok(Pace::Go) => {}
            Ok(Pace::Wait { after, budget }) => {
                let budget = match budget {
                    Budget::Chat => "chat",
                    Budget::Bot => "bot",
                };
                tracing::debug!(budget, ?after, "telegram send paced");
                return Err(DeliveryError::Paced { after });
            }
            // Sending unpaced could get the bot throttled for everyone; wait for Redis instead.
            Err(err) => {
                return Err(DeliveryError::Transient(format!(
                    "Telegram pacing in Redis failed: {err}"
                )));
            }
        }
        let body = serde_json::json!({
            "chat_id": chat.json(),
            "text": message,
            "parse_mode": "HTML",
            "disable_web_page_preview": true,
        });
        let response = match self
            .http
            .post(self.send_url.clone())
            .json(&body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) => return Err(self.transport_error(err)),
        };
        let status = response.status();
        let retry_after_header = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(err) => return Err(self.transport_error(err)),
        };
        self.classify(status, retry_after_header, &bytes)
    }

    /// Turns the Bot API's answer into the delivery outcome.
    fn classify(
        &self,
        status: StatusCode,
        retry_after_header: Option<u64>,
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let answer: Option<ApiAnswer> = serde_json::from_slice(body).ok();
        if status.is_success() && answer.as_ref().is_some_and(|a| a.ok) {
            return Ok(());
        }
        let code = status.as_u16();
        let description = match answer.as_ref().and_then(|a| a.description.as_deref()) {
            Some(description) => self.quote(description.as_bytes()),
            None => self.quote(body),
        };
        let parameters = answer.as_ref().and_then(|a| a.parameters.as_ref());
        match status {
            // A 200 that is not `{"ok": true}` (cut off, or a proxy's page): the message may or
            // may not have gone out; retrying risks a duplicate, which beats losing it.
            s if s.is_success() => Err(DeliveryError::Transient(format!(
                "Telegram answered {code} with no readable `ok: true` answer: {description}"
            ))),
            StatusCode::TOO_MANY_REQUESTS => {
                match parameters
                    .and_then(|p| p.retry_after)
                    .or(retry_after_header)
                {
                    Some(secs) => Err(DeliveryError::RetryAfter {
                        after: Duration::from_secs(secs),
                        reason: format!("Telegram rate limit: {description}"),
                    }),
                    None => Err(DeliveryError::Transient(format!(
                        "Telegram answered 429 without retry_after: {description}"
                    ))),
                }
            }
            StatusCode::UNAUTHORIZED => Err(DeliveryError::Permanent(
                "Telegram rejected the bot token (401 Unauthorized); check TELEGRAM_BOT_TOKEN"
                    .to_owned(),
            )),
            s if s.is_client_error() => {
                let migrated = parameters
                    .and_then(|p| p.migrate_to_chat_id)
                    .map(|id| format!(" (the chat is now {id})"))
                    .unwrap_or_default();
                Err(DeliveryError::Permanent(format!(
                    "Telegram answered {code}: {description}{migrated}"
                )))
            }
            _ => Err(DeliveryError::Transient(format!(
                "Telegram answered {code}: {description}"
            ))),
        }
    }

    /// A transport failure: always transient, described without the URL (it holds the token).
    fn transport_error(&self, err: reqwest::Error) -> DeliveryError {
        let what = if err.is_timeout() {
            "request timed out"
        } else if err.is_connect() {
            "connection failed"
        } else if err.is_body() || err.is_decode() {
            "response broke off"
        } else {
            "request failed"
        };
        let err = err.without_url();
        let mut chain = String::new();
        let mut source = err.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        let message = format!("Telegram {}: {what}{chain}", self.api_base.as_str());
        // Belt and braces: no layer below is known to print the URL, but none may.
        DeliveryError::Transient(message.replace(self.token.expose(), REDACTED))
    }

    /// A short, redacted quote of something Telegram said.
    fn quote(&self, text: &[u8]) -> String {
        redacted_snippet(text, &[&self.token])
    }
}

/// The part of a Bot API answer that matters here.
#[derive(Debug, Deserialize)]
struct ApiAnswer {
    ok: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ApiParameters>,
}

/// Telegram's `ResponseParameters`.
#[derive(Debug, Deserialize)]
struct ApiParameters {
    #[serde(default)]
    retry_after: Option<u64>,
    #[serde(default)]
    migrate_to_chat_id: Option<i64>,
}

/// A validated chat: what `sendMessage` takes as `chat_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChatTarget {
    /// A numeric chat id (negative for groups and channels).
    Id(i64, String),
    /// A public channel's `@username`, as given and lowercased (Telegram ignores case, so the
    /// lowercased form is the pacing key).
    Username(String, String),
}

impl ChatTarget {
    fn parse_or_permanent(target: &str) -> Result<Self, DeliveryError> {
        Self::parse(target).ok_or_else(|| {
            DeliveryError::Permanent(format!(
                "invalid Telegram chat id {:?} (expected a number or @channelusername)",
                one_line(target).chars().take(64).collect::<String>()
            ))
        })
    }

    fn parse(target: &str) -> Option<Self> {
        let target = target.trim();
        if let Ok(id) = target.parse::<i64>() {
            return Some(Self::Id(id, id.to_string()));
        }
        // Telegram usernames: 5 to 32 of [A-Za-z0-9_].
        let name = target.strip_prefix('@')?;
        let valid = (5..=32).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        valid.then(|| Self::Username(target.to_owned(), target.to_ascii_lowercase()))
    }

    /// The pacing key component: the canonical id or the username.
    fn key(&self) -> &str {
        match self {
            Self::Id(_, key) | Self::Username(_, key) => key,
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Self::Id(id, _) => serde_json::Value::from(*id),
            Self::Username(name, _) => serde_json::Value::from(name.as_str()),
        }
    }
}

/// The bot id: the digits before the token's colon (public: `getMe` reports it).
fn bot_id(token: &Secret) -> Option<&str> {
    let (id, secret) = token.expose().split_once(':')?;
    let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    let secret_ok = !secret.is_empty()
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (id_ok && secret_ok).then_some(id)
}

/// The API base for an error message, without anything that could be a credential.
fn redacted_base(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_targets() {
        assert_eq!(
            ChatTarget::parse(" -1001234 "),
            Some(ChatTarget::Id(-1001234, "-1001234".into()))
        );
        assert_eq!(
            ChatTarget::parse("@PayWatch_Ops"),
            Some(ChatTarget::Username(
                "@PayWatch_Ops".into(),
                "@paywatch_ops".into()
            ))
        );
        for bad in ["", "@", "@abc", "hello", "@bad-name", "12ab", "@x:y"] {
            assert_eq!(ChatTarget::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bot_ids() {
        assert_eq!(bot_id(&Secret::new("123456:AAH-x_y")), Some("123456"));
        for bad in [
            "", "123456", ":abc", "12a:abc", "123:", "123:a/b", "123:a b",
        ] {
            assert_eq!(bot_id(&Secret::new(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn redacted_base_drops_credentials() {
        let url = Url::parse("https://user:pw@example.com/tg?x=1#f").unwrap();
        assert_eq!(redacted_base(&url), "https://example.com/tg");
    }
}
