//! The Standard Webhooks / Svix retry schedule, extended to a full day.
//!
//! `RETRY_SCHEDULE[k]` is the wait before attempt `k + 1` (attempts are 1-based, like the
//! queue's `JobInfo::attempt`). Attempt 1 goes out immediately when the job is created; if
//! attempt `n` fails transiently the next one is due `RETRY_SCHEDULE[n]` later:
//!
//! | failed attempt | wait before the next |
//! |---|---|
//! | 1 | 5 s |
//! | 2 | 5 min |
//! | 3 | 30 min |
//! | 4 | 2 h |
//! | 5 | 5 h |
//! | 6 | 10 h |
//! | 7 | 14 h |
//! | 8 | 20 h |
//! | 9 | 24 h |
//! | 10 | none: give up (dead-letter) |
//!
//! Ten attempts over about 3.4 days in total, each wait spread by ±[`RETRY_JITTER`] so
//! endpoints that failed together are not retried in lockstep.

use std::time::Duration;

use rand::Rng as _;

const MIN: u64 = 60;
const HOUR: u64 = 60 * MIN;

/// Wait before each attempt: index `k` is the wait before attempt `k + 1`; index 0 is the
/// initial delivery ("immediately").
pub const RETRY_SCHEDULE: [Duration; 10] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * MIN),
    Duration::from_secs(30 * MIN),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(5 * HOUR),
    Duration::from_secs(10 * HOUR),
    Duration::from_secs(14 * HOUR),
    Duration::from_secs(20 * HOUR),
    Duration::from_secs(24 * HOUR),
];

/// Attempts per event before giving up (the initial delivery included).
pub const MAX_ATTEMPTS: u32 = RETRY_SCHEDULE.len() as u32;

/// Random spread applied to every wait, as a fraction (0.15 = ±15 %).
pub const RETRY_JITTER: f64 = 0.15;

/// The wait after `attempt` (1-based) failed, unjittered and unscaled; `None` once all
/// [`MAX_ATTEMPTS`] are spent. `attempt` 0 ("nothing tried yet") is the initial, immediate one.
pub fn base_delay(attempt: u32) -> Option<Duration> {
    RETRY_SCHEDULE.get(usize::try_from(attempt).ok()?).copied()
}

/// `base * scale * (1 + RETRY_JITTER * unit)` for `unit` in [-1, 1], saturating instead of
/// panicking on absurd scales.
pub(crate) fn jittered(base: Duration, scale: f64, unit: f64) -> Duration {
    let factor = scale * (1.0 + RETRY_JITTER * unit.clamp(-1.0, 1.0));
    Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(if factor > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

/// [`base_delay`] with jitter and `scale` applied.
pub(crate) fn retry_delay(attempt: u32, scale: f64) -> Option<Duration> {
    let base = base_delay(attempt)?;
    let unit = rand::rng().random_range(-1.0..=1.0);
    Some(jittered(base, scale, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_the_documented_one() {
        let expected_secs = [
            0, 5, 300, 1_800, 7_200, 18_000, 36_000, 50_400, 72_000, 86_400,
        ];
        for (attempt, secs) in expected_secs.into_iter().enumerate() {
            assert_eq!(
                base_delay(attempt as u32),
                Some(Duration::from_secs(secs)),
                "after attempt {attempt}"
            );
        }
        assert_eq!(base_delay(MAX_ATTEMPTS), None);
        assert_eq!(base_delay(u32::MAX), None);
        assert_eq!(MAX_ATTEMPTS, 10);
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let base = Duration::from_secs(100);
        assert_eq!(jittered(base, 1.0, -1.0), Duration::from_secs(85));
        assert_eq!(jittered(base, 1.0, 1.0), Duration::from_secs(115));
        assert_eq!(jittered(base, 1.0, 0.0), base);
        assert_eq!(
            jittered(base, 1.0, 7.0),
            Duration::from_secs(115),
            "clamped"
        );
        let samples: Vec<Duration> = (0..200).filter_map(|_| retry_delay(2, 1.0)).collect();
        assert_eq!(samples.len(), 200);
        for d in &samples {
            assert!(
                (255.0..=345.0).contains(&d.as_secs_f64()),
                "{d:?} outside 5 min ±15 %"
            );
        }
        assert!(samples.iter().any(|d| *d != samples[0]), "no jitter at all");
    }

    #[test]
    fn scale_shrinks_everything_and_immediate_stays_immediate() {
        assert_eq!(retry_delay(0, 1.0), Some(Duration::ZERO));
        let d = retry_delay(9, 0.001).unwrap();
        assert!((73.4..=99.4).contains(&d.as_secs_f64()), "{d:?}");
        assert_eq!(retry_delay(3, 0.0), Some(Duration::ZERO));
        assert_eq!(retry_delay(MAX_ATTEMPTS, 0.001), None);
        assert_eq!(
            jittered(Duration::from_secs(86_400), 1e300, 0.0),
            Duration::MAX
        );
    }
}
