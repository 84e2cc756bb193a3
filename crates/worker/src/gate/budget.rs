//! Fleet-wide request budgets per provider credential: how many status calls the whole fleet
//! may make per window, configured per provider.
//!
//! The budget itself lives in Redis and is checked and taken in one script together with the
//! circuit breaker (see [`crate::gate`]); this module holds the settings: the limits, the share
//! reserved for young orders and the safety margin on the window.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use paywatch_core::Provider;
use paywatch_core::durations::parse_duration;
use serde::Deserialize;

/// A rate limit as providers state it: `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed in any window.
    pub limit: u32,
    /// The sliding window.
    pub window: Duration,
}

/// A rate limit that does not parse or cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid rate limit {text:?}: {problem} (expected e.g. \"100/min\", \"10/s\", \"100/6s\" or \"off\")"
)]
pub struct RateLimitError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl FromStr for RateLimit {
    type Err = RateLimitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |problem| RateLimitError {
            text: text.to_owned(),
            problem,
        };
        let (count, per) = text.trim().split_once('/').ok_or(err("no '/'"))?;
        let limit: u32 = count
            .trim()
            .parse()
            .map_err(|_| err("the count is not a whole number"))?;
        let per = per.trim();
        // "100/min" means one minute: a bare unit gets an implicit 1.
        let per = if per.starts_with(|c: char| c.is_ascii_alphabetic()) {
            format!("1{per}")
        } else {
            per.to_owned()
        };
        let window = parse_duration(&per).map_err(|_| err("the window is not a duration"))?;
        if limit == 0 {
            return Err(err("the count must be at least 1"));
        }
        if window < Duration::from_millis(100) {
            return Err(err("the window must be at least 100ms"));
        }
        Ok(Self { limit, window })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.limit,
            paywatch_core::durations::format_duration(self.window)
        )
    }
}

impl RateLimit {
    /// The window the fleet actually budgets over: a little longer than the provider's, so
    /// that network jitter between our grant and the provider's arrival time cannot put
    /// `limit + 1` requests into one of the provider's windows: 2% of the window, and at least
    /// 500 ms (a quarter of windows under 2 s).
    pub fn guarded_window(&self) -> Duration {
        let floor = Duration::from_millis(500).min(self.window / 4);
        self.window + (self.window / 50).max(floor)
    }

    /// The part of the budget only young orders may use, under `share` (0 to 1).
    pub fn reserved(&self, share: f64) -> u32 {
        let reserved = (f64::from(self.limit) * share).round() as u32;
        // Old orders always keep at least one request, or they would never be checked again.
        reserved.min(self.limit.saturating_sub(1))
    }
}

/// Each provider's budget; `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    limits: BTreeMap<Provider, Option<RateLimit>>,
}

impl Default for RateLimits {
    /// The providers' published limits: FoxReload allows 100 requests per minute per key; the
    /// others publish none, so they get no budget unless configured.
    fn default() -> Self {
        let mut limits = BTreeMap::new();
        limits.insert(
            Provider::FoxReload,
            Some(RateLimit {
                limit: 100,
                window: Duration::from_secs(60),
            }),
        );
        Self { limits }
    }
}

impl RateLimits {
    /// These limits with `provider`'s budget from its definition file, unless
    /// PAYWATCH_RATE_LIMITS names the provider already.
    pub fn with_declared(mut self, provider: Provider, limit: Option<(u32, Duration)>) -> Self {
        self.limits
            .entry(provider)
            .or_insert(limit.map(|(limit, window)| RateLimit { limit, window }));
        self
    }

    /// The budget of `provider`, if it has one.
    pub fn for_provider(&self, provider: Provider) -> Option<RateLimit> {
        self.limits.get(&provider).copied().flatten()
    }

    /// Parses `PAYWATCH_RATE_LIMITS`: a JSON object from provider to `"N/window"` or `"off"`,
    /// applied over the defaults (providers it does not name keep theirs).
    pub fn parse_overrides(text: &str) -> Result<Self, String> {
        let given: BTreeMap<Provider, String> = serde_json::from_str(text)
            .map_err(|e| format!("not a JSON object of provider to \"N/window\": {e}"))?;
        let mut limits = Self::default();
        for (provider, value) in given {
            let limit = match value.trim() {
                "off" | "none" => None,
                v => Some(
                    v.parse::<RateLimit>()
                        .map_err(|e| format!("{provider}: {e}"))?,
                ),
            };
            limits.limits.insert(provider, limit);
        }
        Ok(limits)
    }
}

/// Deserializes like [`RateLimits::parse_overrides`], for configuration files.
impl<'de> Deserialize<'de> for RateLimits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Self::parse_overrides(&value.to_string()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_providers_write_them() {
        let per_min: RateLimit = "100/min".parse().expect("per min");
        assert_eq!(per_min.limit, 100);
        assert_eq!(per_min.window, Duration::from_secs(60));
        let scaled: RateLimit = "100/6s".parse().expect("scaled");
        assert_eq!(scaled.window, Duration::from_secs(6));
        assert_eq!(
            "10/s".parse::<RateLimit>().map(|r| r.window),
            Ok(Duration::from_secs(1))
        );
        for bad in ["100", "0/min", "x/min", "100/parsec", "5/10ms"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let defaults = RateLimits::default();
        assert_eq!(
            defaults.for_provider(Provider::FoxReload).map(|r| r.limit),
            Some(100)
        );
        assert_eq!(defaults.for_provider(Provider::Cashless), None);
        let set = RateLimits::parse_overrides(r#"{"cashless":"600/min","foxreload":"off"}"#)
            .expect("overrides");
        assert_eq!(set.for_provider(Provider::FoxReload), None);
        assert_eq!(
            set.for_provider(Provider::Cashless).map(|r| r.limit),
            Some(600)
        );
        assert!(RateLimits::parse_overrides(r#"{"paypal":"1/s"}"#).is_err());
        assert!(RateLimits::parse_overrides(r#"{"cashless":"lots"}"#).is_err());
    }

    #[test]
    fn old_orders_always_keep_one_request() {
        let tiny = RateLimit {
            limit: 1,
            window: Duration::from_secs(1),
        };
        assert_eq!(tiny.reserved(0.5), 0);
        let fox: RateLimit = "100/min".parse().expect("fox");
        assert_eq!(fox.reserved(0.2), 20);
        assert_eq!(fox.guarded_window(), Duration::from_millis(61_200));
        let scaled: RateLimit = "100/6s".parse().expect("scaled");
        assert_eq!(scaled.guarded_window(), Duration::from_millis(6_500));
        let fast: RateLimit = "10/s".parse().expect("fast");
        assert_eq!(fast.guarded_window(), Duration::from_millis(1_250));
    }
}
