//! [`FinalTimes`]: how long a provider's orders took to become final, as a log-spaced histogram
//! of counts per outcome. Bounded (a fixed number of bins per outcome, whatever the traffic) and
//! mergeable (counts add), so the whole fleet can feed one Redis hash with `HINCRBY` and every
//! worker can read it back with one `HGETALL`.

use std::time::Duration;

use crate::status::PaymentStatus;

/// Bins per octave: each bin is 2^(1/8) ≈ 9 % wider than the one before it.
pub const BINS_PER_OCTAVE: u32 = 8;

/// Number of bins: bin 0 is [0, 1 s); bin i ≥ 1 is [2^((i−1)/8), 2^(i/8)) s; the last bin also
/// holds everything longer (2^20 s is 12 days, past any deadline).
pub const BINS: usize = 161;

/// The outcomes the histogram separates: each final status, and `unresolved` (still open when
/// paywatch stopped looking), which is what tells the planner how many orders never settle.
pub const OUTCOMES: [PaymentStatus; 5] = [
    PaymentStatus::Paid,
    PaymentStatus::Failed,
    PaymentStatus::Expired,
    PaymentStatus::Cancelled,
    PaymentStatus::Unresolved,
];

/// The bin holding a time-to-final of `secs` seconds.
pub fn bin_of(secs: f64) -> usize {
    if !secs.is_finite() || secs >= bin_bounds(BINS - 1).0 {
        return BINS - 1;
    }
    if secs < 1.0 {
        return 0;
    }
    let index = (secs.log2() * f64::from(BINS_PER_OCTAVE)).floor() as usize + 1;
    index.min(BINS - 1)
}

/// The bounds of bin `i` in seconds, `[low, high)`.
pub fn bin_bounds(i: usize) -> (f64, f64) {
    if i == 0 {
        return (0.0, 1.0);
    }
    let octave = |j: usize| (j as f64 / f64::from(BINS_PER_OCTAVE)).exp2();
    (octave(i - 1), octave(i))
}

/// A histogram field name: `<outcome>:<bin>`, e.g. `paid:37`.
pub fn field(outcome: PaymentStatus, secs: f64) -> String {
    format!("{outcome}:{}", bin_of(secs))
}

/// Times to final of one provider's orders, per outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalTimes {
    /// `counts[o][b]`: orders with outcome `OUTCOMES[o]` whose time to final fell in bin `b`.
    counts: Vec<[u64; BINS]>,
}

impl Default for FinalTimes {
    fn default() -> Self {
        Self {
            counts: vec![[0; BINS]; OUTCOMES.len()],
        }
    }
}

impl FinalTimes {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one order that reached `outcome` after `took` (unscaled time).
    pub fn record(&mut self, outcome: PaymentStatus, took: Duration) {
        self.add(outcome, bin_of(took.as_secs_f64()), 1);
    }

    fn add(&mut self, outcome: PaymentStatus, bin: usize, count: u64) {
        if let Some(o) = OUTCOMES.iter().position(|x| *x == outcome)
            && let Some(slot) = self.counts[o].get_mut(bin)
        {
            *slot = slot.saturating_add(count);
        }
    }

    /// Reads the fields of a Redis hash (`HGETALL`); fields it does not know are skipped, so an
    /// older worker reads what a newer one wrote.
    pub fn from_fields<I, K>(fields: I) -> Self
    where
        I: IntoIterator<Item = (K, i64)>,
        K: AsRef<str>,
    {
        let mut times = Self::new();
        for (name, count) in fields {
            let Some((outcome, bin)) = name.as_ref().split_once(':') else {
                continue;
            };
            let (Ok(outcome), Ok(bin)) = (outcome.parse::<PaymentStatus>(), bin.parse::<usize>())
            else {
                continue;
            };
            times.add(outcome, bin, u64::try_from(count).unwrap_or(0));
        }
        times
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a = a.saturating_add(*b);
            }
        }
    }

    /// Orders counted, every outcome.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Orders that reached a final status (every outcome but `unresolved`), per bin.
    pub fn finals(&self) -> [u64; BINS] {
        let mut sum = [0u64; BINS];
        for (o, counts) in OUTCOMES.iter().zip(&self.counts) {
            if *o == PaymentStatus::Unresolved {
                continue;
            }
            for (s, c) in sum.iter_mut().zip(counts) {
                *s += c;
            }
        }
        sum
    }

    /// Orders paywatch stopped watching before they settled.
    pub fn unresolved(&self) -> u64 {
        let o = OUTCOMES
            .iter()
            .position(|x| *x == PaymentStatus::Unresolved)
            .unwrap_or(OUTCOMES.len() - 1);
        self.counts[o].iter().sum()
    }

    /// The non-zero fields, as written to Redis.
    pub fn fields(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (o, counts) in OUTCOMES.iter().zip(&self.counts) {
            for (b, c) in counts.iter().enumerate() {
                if *c > 0 {
                    out.push((format!("{o}:{b}"), *c));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_log_spaced_and_cover_everything() {
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(0.99), 0);
        assert_eq!(bin_of(1.0), 1);
        assert_eq!(bin_of(2.0), 9);
        assert_eq!(bin_of(f64::INFINITY), BINS - 1);
        assert_eq!(bin_of(1e12), BINS - 1);
        for secs in [0.5, 1.0, 3.3, 17.0, 600.0, 86_400.0] {
            let (lo, hi) = bin_bounds(bin_of(secs));
            assert!(lo <= secs && secs < hi, "{secs} not in [{lo}, {hi})");
        }
        assert!(bin_bounds(BINS - 1).0 > 86_400.0 * 7.0);
    }

    #[test]
    fn fields_round_trip_and_merge() {
        let mut a = FinalTimes::new();
        a.record(PaymentStatus::Paid, Duration::from_secs(20));
        a.record(PaymentStatus::Paid, Duration::from_secs(20));
        a.record(PaymentStatus::Unresolved, Duration::from_secs(86_400));
        let fields: Vec<(String, i64)> = a
            .fields()
            .into_iter()
            .map(|(k, v)| (k, v as i64))
            .chain([("bogus".to_owned(), 5), ("paid:x".to_owned(), 1)])
            .collect();
        let b = FinalTimes::from_fields(fields);
        assert_eq!(a, b);
        let mut c = a.clone();
        c.merge(&b);
        assert_eq!(c.total(), 6);
        assert_eq!(c.unresolved(), 2);
        assert_eq!(c.finals()[bin_of(20.0)], 4);
        assert_eq!(
            field(PaymentStatus::Paid, 20.0),
            format!("paid:{}", bin_of(20.0))
        );
    }
}
