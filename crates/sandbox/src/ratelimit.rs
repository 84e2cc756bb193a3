//! A per-key request rate limit, as real providers enforce one (FoxReload: 100 requests per
//! minute per key), and the counters tests need to prove a client stays within it.
//!
//! Each provider accepts one key in the sandbox, so the limit applies per provider. Requests past
//! the limit in any sliding window are answered 429 with `Retry-After`; every request, answered
//! or refused, is counted in the window so `max_in_window` is the most a client ever sent in one.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::error::SandboxError;

/// At most `limit` status requests per provider key in any sliding `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed in any window.
    pub limit: u32,
    /// The sliding window.
    pub window: Duration,
}

impl FromStr for RateLimit {
    type Err = SandboxError;

    /// `"100/min"`, `"100/6s"`, `"10/s"`, `"5/500ms"`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            SandboxError::InvalidConfig(format!(
                "rate limit {text:?}: expected <count>/<window>, e.g. \"100/min\" or \"100/6s\""
            ))
        };
        let (count, per) = text.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = per.trim();
        let split = per
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(per.len());
        let (number, unit) = per.split_at(split);
        let number: f64 = if number.is_empty() {
            1.0
        } else {
            number.parse().map_err(|_| bad())?
        };
        let unit_secs = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        let window = Duration::try_from_secs_f64(number * unit_secs).map_err(|_| bad())?;
        if limit == 0 || window.is_zero() {
            return Err(bad());
        }
        Ok(Self { limit, window })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}ms", self.limit, self.window.as_millis())
    }
}

/// One key's recent requests.
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    /// Arrival times of the requests answered in the current window.
    admitted: VecDeque<Instant>,
    /// Arrival times of every request in the current window, refused ones included.
    seen: VecDeque<Instant>,
    /// The most requests seen in any one window so far.
    pub(crate) max_in_window: u64,
}

impl RateWindow {
    /// Counts a request arriving `now`; `Err(retry_after)` when it is past the limit.
    pub(crate) fn arrive(&mut self, limit: &RateLimit, now: Instant) -> Result<(), Duration> {
        let start = now.checked_sub(limit.window);
        let expired = |t: &Instant| start.is_some_and(|s| *t <= s);
        while self.seen.front().is_some_and(expired) {
            self.seen.pop_front();
        }
        while self.admitted.front().is_some_and(expired) {
            self.admitted.pop_front();
        }
        self.seen.push_back(now);
        self.max_in_window = self.max_in_window.max(self.seen.len() as u64);
        if self.admitted.len() >= limit.limit as usize {
            let oldest = self.admitted.front().copied().unwrap_or(now);
            return Err((oldest + limit.window).saturating_duration_since(now));
        }
        self.admitted.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_provider_style_limits() {
        let fox: RateLimit = "100/min".parse().expect("per minute");
        assert_eq!((fox.limit, fox.window), (100, Duration::from_secs(60)));
        let scaled: RateLimit = "100/6s".parse().expect("scaled");
        assert_eq!(scaled.window, Duration::from_secs(6));
        for bad in ["100", "0/s", "1/0s", "1/fortnight", "x/s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_past_the_limit_and_counts_the_busiest_window() {
        let limit: RateLimit = "2/1s".parse().expect("limit");
        let mut window = RateWindow::default();
        let t0 = Instant::now();
        assert!(window.arrive(&limit, t0).is_ok());
        assert!(
            window
                .arrive(&limit, t0 + Duration::from_millis(100))
                .is_ok()
        );
        let wait = window
            .arrive(&limit, t0 + Duration::from_millis(200))
            .expect_err("third in the window");
        assert_eq!(wait, Duration::from_millis(800));
        assert_eq!(window.max_in_window, 3);
        assert!(
            window
                .arrive(&limit, t0 + Duration::from_millis(1001))
                .is_ok()
        );
    }
}
