//! Sandbox configuration: credentials the fake providers accept, webhook target and time scale.

use std::fmt;

use crate::error::SandboxError;
use crate::ratelimit::RateLimit;

/// How the sandbox behaves: which credentials it accepts, where webhooks go, how fast time runs.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Credentials every fake provider (and the fake Telegram bot) accepts.
    pub credentials: Credentials,
    /// Base URL provider webhooks are POSTed to (`{target}/webhooks/{provider}`); `None` disables them.
    pub webhook_target: Option<String>,
    /// Multiplier applied to every timeline offset: 1.0 is real time, 0.01 runs 100 times faster.
    pub time_scale: f64,
    /// Each provider key's request limit (429 with `Retry-After` past it); `None` is unlimited.
    pub rate_limit: Option<RateLimit>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            credentials: Credentials::default(),
            webhook_target: None,
            time_scale: 1.0,
            rate_limit: None,
        }
    }
}

impl SandboxConfig {
    /// Checks the values a caller could get wrong (a time scale that is not a positive number,
    /// a bad URL).
    pub fn validate(&self) -> Result<(), SandboxError> {
        // 0 would make every timeline instant (a payment settles before it was ever pending).
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return Err(SandboxError::InvalidConfig(format!(
                "time_scale must be a positive number, got {}",
                self.time_scale
            )));
        }
        if let Some(target) = &self.webhook_target
            && !(target.starts_with("http://") || target.starts_with("https://"))
        {
            return Err(SandboxError::InvalidConfig(
                "webhook_target must be an http:// or https:// URL".to_string(),
            ));
        }
        Ok(())
    }
}

/// The API keys and secrets the fake providers check, one set per provider.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Cashless API key (first half of `Authorization: ApiKey KEY:SECRET`).
    pub cashless_api_key: String,
    /// Cashless API secret (second half of `Authorization: ApiKey KEY:SECRET`).
    pub cashless_api_secret: String,
    /// HandCash `App-Id` header value.
    pub handcash_app_id: String,
    /// HandCash `App-Secret` header value; also sent as `appSecret` in HandCash webhooks.
    pub handcash_app_secret: String,
    /// MiracleCash client id (user part of HTTP Basic auth).
    pub miraclecash_client_id: String,
    /// MiracleCash API key (password part of HTTP Basic auth).
    pub miraclecash_api_key: String,
    /// FoxReload `X-API-Key` header value.
    pub foxreload_api_key: String,
    /// Telegram bot token, the `{token}` in `/telegram/bot{token}/sendMessage`.
    pub telegram_bot_token: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            cashless_api_key: "sandbox-cashless-key".to_string(),
            cashless_api_secret: "sandbox-cashless-secret".to_string(),
            handcash_app_id: "sandbox-handcash-app".to_string(),
            handcash_app_secret: "sandbox-handcash-secret".to_string(),
            miraclecash_client_id: "sandbox-miracle-client".to_string(),
            miraclecash_api_key: "sandbox-miracle-key".to_string(),
            foxreload_api_key: "sandbox-foxreload-key".to_string(),
            telegram_bot_token: "123456:sandbox-bot-token".to_string(),
        }
    }
}

// Secrets stay out of Debug output so a config that ends up in a log line does not leak them.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HIDDEN: &str = "<redacted>";
        // Ids count as credentials too (paywatch's own configs treat them as secrets).
        f.debug_struct("Credentials")
            .field("cashless_api_key", &HIDDEN)
            .field("cashless_api_secret", &HIDDEN)
            .field("handcash_app_id", &HIDDEN)
            .field("handcash_app_secret", &HIDDEN)
            .field("miraclecash_client_id", &HIDDEN)
            .field("miraclecash_api_key", &HIDDEN)
            .field("foxreload_api_key", &HIDDEN)
            .field("telegram_bot_token", &HIDDEN)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_credential() {
        let credentials = Credentials {
            cashless_api_key: "c-key-9187".into(),
            cashless_api_secret: "c-secret-2231".into(),
            handcash_app_id: "h-app-5521".into(),
            handcash_app_secret: "h-secret-8812".into(),
            miraclecash_client_id: "m-client-1176".into(),
            miraclecash_api_key: "m-key-6654".into(),
            foxreload_api_key: "f-key-3390".into(),
            telegram_bot_token: "777:t-token-4402".into(),
        };
        let config = SandboxConfig {
            credentials: credentials.clone(),
            ..SandboxConfig::default()
        };
        let text = format!("{config:?} {config:#?} {credentials:?}");
        for secret in [
            "c-key-9187",
            "c-secret-2231",
            "h-app-5521",
            "h-secret-8812",
            "m-client-1176",
            "m-key-6654",
            "f-key-3390",
            "t-token-4402",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
