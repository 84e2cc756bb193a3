//! Human-friendly durations in config: `"3s"`, `"1500ms"`, `"5m"`, `"24h"`, `"1d"`, or a plain
//! integer number of milliseconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// The text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a number with a unit (ms, s, m, h, d), e.g. \"3s\"")]
pub struct DurationParseError(pub String);

/// Parses `"<number><unit>"` (units `ms`, `s`, `m`, `h`, `d`; fractions allowed, e.g. `"1.5s"`)
/// or a bare integer of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationParseError> {
    let err = || DurationParseError(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit_millis: u64 = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(err()),
    };
    // Whole numbers are computed exactly: through f64, "16741045901ms" came back 1 ns long, so
    // a duration paywatch wrote (format_duration) did not always read back the same.
    if !number.contains('.') {
        let n: u64 = number.parse().map_err(|_| err())?;
        return n
            .checked_mul(unit_millis)
            .map(Duration::from_millis)
            .ok_or_else(err);
    }
    let number: f64 = number.parse().map_err(|_| err())?;
    // Fractions to the nearest nanosecond ("0.1s" is 100 ms, not 100 ms less a rounding error).
    let nanos = (number * unit_millis as f64 * 1e6).round();
    if nanos.is_finite() && nanos >= 0.0 && nanos < u64::MAX as f64 {
        return Ok(Duration::from_nanos(nanos as u64));
    }
    Duration::try_from_secs_f64(number * unit_millis as f64 / 1000.0).map_err(|_| err())
}

/// The shortest exact rendering: `"24h"`, `"5m"`, `"3s"`, `"1500ms"`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if millis != 0 && millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

/// Serde adapter for `Duration` fields: `#[serde(with = "paywatch_core::durations::serde_humane")]`.
pub mod serde_humane {
    use super::*;

    /// Writes the duration as [`format_duration`] text.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*duration))
    }

    /// Reads [`parse_duration`] text or an integer of milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// `duration × factor`, saturating instead of panicking on overflow, NaN or negatives.
pub fn scale(duration: Duration, factor: f64) -> Duration {
    if !factor.is_finite() || factor <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_millisecond_counts_read_back_exactly() {
        // Found by prop_durations: the f64 path returned 16741045.901000001s.
        assert_eq!(
            parse_duration("16741045901ms").unwrap(),
            Duration::from_millis(16_741_045_901)
        );
        assert_eq!(parse_duration("0.1s").unwrap(), Duration::from_millis(100));
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration(".").is_err());
    }

    #[test]
    fn parses_units_and_bare_millis() {
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1500").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(" 10 s ").unwrap(), Duration::from_secs(10));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "s", "3 parsecs", "-3s", "1e3s", "three"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(3)), "3s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        for d in [86_400_000u64, 1500, 3000, 1] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }

    #[test]
    fn scale_never_panics() {
        assert_eq!(scale(Duration::from_secs(10), 0.5), Duration::from_secs(5));
        assert_eq!(scale(Duration::from_secs(10), f64::NAN), Duration::ZERO);
        assert_eq!(scale(Duration::from_secs(10), -1.0), Duration::ZERO);
        assert_eq!(scale(Duration::MAX, 2.0), Duration::MAX);
    }
}
