//! [`Plan`]: where to put one provider's checks, learned from its [`FinalTimes`].
//!
//! The model: an order's time to final `T` has the empirical distribution `F` of the provider's
//! history (plus a little pseudo-mass for "never", so the tail is never free). Checks at ages
//! `0 = t₀ < t₁ < … < t_m = D` (D the deadline, or the provider's own expiry) detect an order
//! final in `(t_{i−1}, t_i]` at `t_i`, a lag of `t_i − T`, and the check at `t_i` is only made if
//! the order was still open at `t_{i−1}`. So, over all orders,
//!
//! - expected calls per order `= 1 + Σ S(t_{i−1})` (S = 1 − F, the share still open), and
//! - expected total lag `= Σ ∫_{t_{i−1}}^{t_i} (t_i − t) dF(t)`.
//!
//! Both are sums over consecutive pairs, so minimising `lag + λ·calls` is a shortest path over a
//! grid of candidate ages (1 s apart at first, then 2 % apart, never more than a quarter of the
//! longest allowed interval), solved backwards from D by dynamic programming. λ (seconds of lag
//! one call is worth) is found by bisection so the plan spends the budget; a larger λ never
//! buys more calls, so the plan's lag only falls as the budget grows. Because the recursion is
//! solved for every grid age, an order checked off-schedule (jitter, a deferral, a reset after
//! progress) gets the best next check *given that it is still open at its age*.

use std::time::Duration;

use crate::policy::{PollPolicy, PollState};
use crate::schedule::histogram::{BINS, FinalTimes, bin_bounds};

/// Pseudo-orders that never settle, added to every history, so that the tail of the schedule is
/// never believed to be empty (and free) just because no unresolved order was seen yet.
const PRIOR_NEVER: f64 = 1.0;

/// Pseudo-orders spread log-uniformly from 1 s to a day, so that an age where no payment was
/// seen yet is improbable, not impossible: with little history no stretch of time goes unwatched
/// for free; with a few hundred orders they no longer matter.
const PRIOR_SPREAD: f64 = 2.0;

/// Finest spacing of the grid at young ages, seconds.
const FINE_STEP: f64 = 1.0;

/// Relative spacing of the grid at older ages.
const GROWTH: f64 = 0.02;

/// The most grid points a p90 target's fine stretch may add, and the most candidates after a
/// check the recursion weighs: they bound a plan's cost to well under a second of arithmetic
/// (a jump longer than that many fine steps is made in two).
const MAX_FINE_POINTS: f64 = 2_000.0;
const MAX_CANDIDATES: usize = 400;

/// What the plan should spend, or achieve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// This share of the expected calls per order the fixed policy would make on this history
    /// (1.0: the same cost, for lower lag).
    FixedShare(f64),
    /// At most this many expected provider calls per order.
    Calls(f64),
    /// The fewest calls whose predicted p90 detection lag is at most this many seconds.
    P90Lag(f64),
}

/// How to build a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanConfig {
    /// The spending target.
    pub budget: Budget,
    /// The last age worth checking (unscaled): the policy's deadline, or the provider's own
    /// expiry when that comes first.
    pub deadline: Duration,
    /// The longest wait between two checks (unscaled), whatever the history says: a safety net
    /// for payments later than anything seen so far.
    pub max_interval: Duration,
    /// The shortest wait between two checks (unscaled).
    pub min_interval: Duration,
}

/// The empirical distribution of time to final, as F (share final by age t) and
/// G (∫₀ᵗ s dF(s)), both piecewise from the histogram (uniform density within a bin).
#[derive(Debug, Clone)]
pub struct Distribution {
    /// Bin edges in seconds, `BINS + 1` of them (the last bin ends at its upper bound).
    edges: Vec<f64>,
    /// F at each edge.
    cdf: Vec<f64>,
    /// G at each edge.
    partial: Vec<f64>,
    /// Orders counted (plus the prior).
    samples: f64,
}

impl Distribution {
    /// The distribution of `times`' final outcomes; unresolved orders (and the prior) are the
    /// mass that never settles.
    pub fn new(times: &FinalTimes) -> Self {
        let mut finals = smooth(&times.finals());
        let spread_bins = 1..=crate::schedule::histogram::bin_of(86_400.0);
        let per_bin = PRIOR_SPREAD / spread_bins.clone().count() as f64;
        for bin in spread_bins {
            finals[bin] += per_bin;
        }
        let samples = times.total() as f64 + PRIOR_NEVER + PRIOR_SPREAD;
        let mut edges = Vec::with_capacity(BINS + 1);
        let mut cdf = Vec::with_capacity(BINS + 1);
        let mut partial = Vec::with_capacity(BINS + 1);
        let (mut f, mut g) = (0.0, 0.0);
        edges.push(0.0);
        cdf.push(0.0);
        partial.push(0.0);
        for (bin, count) in finals.iter().enumerate() {
            let (lo, hi) = bin_bounds(bin);
            let mass = *count / samples;
            f += mass;
            g += mass * (lo + hi) / 2.0;
            edges.push(hi);
            cdf.push(f);
            partial.push(g);
        }
        Self {
            edges,
            cdf,
            partial,
            samples,
        }
    }

    /// Orders the distribution was learned from.
    pub fn samples(&self) -> f64 {
        self.samples
    }

    fn locate(&self, t: f64) -> Option<usize> {
        if t.is_nan() || t <= 0.0 {
            return None;
        }
        // The bin whose [edges[i], edges[i+1]) holds t.
        let i = self.edges.partition_point(|e| *e <= t);
        Some(i.saturating_sub(1).min(self.edges.len() - 2))
    }

    /// F(t): the share of orders final by age `t` seconds.
    pub fn cdf(&self, t: f64) -> f64 {
        let Some(i) = self.locate(t) else { return 0.0 };
        let (lo, hi) = (self.edges[i], self.edges[i + 1]);
        let x = ((t - lo) / (hi - lo)).clamp(0.0, 1.0);
        self.cdf[i] + x * (self.cdf[i + 1] - self.cdf[i])
    }

    /// G(t) = ∫₀ᵗ s dF(s).
    pub fn partial_mean(&self, t: f64) -> f64 {
        let Some(i) = self.locate(t) else { return 0.0 };
        let (lo, hi) = (self.edges[i], self.edges[i + 1]);
        let density = (self.cdf[i + 1] - self.cdf[i]) / (hi - lo);
        let t = t.min(hi);
        self.partial[i] + density * (t * t - lo * lo) / 2.0
    }

    /// S(t) = 1 − F(t): the share still open at age `t`.
    pub fn survival(&self, t: f64) -> f64 {
        (1.0 - self.cdf(t)).max(0.0)
    }

    /// Expected lag of orders final in `(a, b]` when checked at `a` and `b`, times their share.
    fn lag(&self, a: f64, b: f64) -> f64 {
        let (fa, fb) = (self.cdf(a), self.cdf(b));
        (b * (fb - fa) - (self.partial_mean(b) - self.partial_mean(a))).max(0.0)
    }

    /// What a schedule of check ages (ascending, starting at 0) costs and delivers on this
    /// distribution.
    pub fn evaluate(&self, ages: &[f64]) -> Prediction {
        let mut calls = if ages.is_empty() { 0.0 } else { 1.0 };
        let mut lag = 0.0;
        for pair in ages.windows(2) {
            calls += self.survival(pair[0]);
            lag += self.lag(pair[0], pair[1]);
        }
        let last = ages.last().copied().unwrap_or(0.0);
        let detected = self.cdf(last);
        let mean_lag = if detected > 0.0 { lag / detected } else { 0.0 };
        let p90_lag = self.lag_quantile(ages, 0.9);
        Prediction {
            calls_per_order: calls,
            mean_lag,
            p90_lag,
            checks: ages.len(),
        }
    }

    /// The `q` quantile of the detection lag of orders final within the schedule.
    fn lag_quantile(&self, ages: &[f64], q: f64) -> f64 {
        let Some(&last) = ages.last() else { return 0.0 };
        let detected = self.cdf(last);
        if detected <= 0.0 {
            return 0.0;
        }
        // Share of detected orders whose lag exceeds x.
        let over = |x: f64| {
            ages.windows(2)
                .map(|p| {
                    let cut = p[1] - x;
                    if cut > p[0] {
                        self.cdf(cut) - self.cdf(p[0])
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
                / detected
        };
        let longest = ages.windows(2).map(|p| p[1] - p[0]).fold(0.0_f64, f64::max);
        let (mut lo, mut hi) = (0.0, longest);
        for _ in 0..50 {
            let mid = (lo + hi) / 2.0;
            if over(mid) > 1.0 - q {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }
}

/// Bins on each side a count is spread over: ±3 bins is ±30 % in time.
const SMOOTHING: usize = 3;

/// Spreads each bin's count over its neighbours with triangular weights (total preserved), so
/// that a history with few orders has no holes a plan would leap across: a payment at 40 s says
/// payments happen around 40 s, not at exactly 37–40 s and never at 41.
fn smooth(counts: &[u64; BINS]) -> Vec<f64> {
    let mut out = vec![0.0; BINS];
    let k = SMOOTHING as i64;
    for (bin, count) in counts.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let weights: Vec<(usize, f64)> = (-k..=k)
            .filter_map(|d| {
                let at = bin as i64 + d;
                (0..BINS as i64)
                    .contains(&at)
                    .then(|| (at as usize, (k + 1 - d.abs()) as f64))
            })
            .collect();
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        for (at, w) in weights {
            out[at] += *count as f64 * w / total;
        }
    }
    out
}

/// What a schedule is expected to do on the history it was planned from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Expected provider calls per order.
    pub calls_per_order: f64,
    /// Mean detection lag of orders that settle within the schedule, seconds.
    pub mean_lag: f64,
    /// p90 detection lag, seconds.
    pub p90_lag: f64,
    /// Checks an order that never settles gets.
    pub checks: usize,
}

/// A learned schedule for one provider: for any age at which an order is still open, when to
/// check it next. Ages are unscaled seconds since the order was created.
#[derive(Debug, Clone)]
pub struct Plan {
    dist: Distribution,
    grid: Vec<f64>,
    /// Optimal cost-to-go after a check at `grid[j]`.
    value: Vec<f64>,
    /// The optimal next grid index after a check at `grid[j]`.
    next: Vec<usize>,
    lambda: f64,
    objective: Objective,
    min_interval: f64,
    max_interval: f64,
    prediction: Prediction,
}

impl Plan {
    /// Plans checks for `times` under `config`; `fixed` is the policy the plan replaces (used by
    /// [`Budget::FixedShare`]).
    pub fn build(times: &FinalTimes, config: &PlanConfig, fixed: &PollPolicy) -> Self {
        let dist = Distribution::new(times);
        let deadline = config.deadline.as_secs_f64().max(FINE_STEP);
        let max_interval = config.max_interval.as_secs_f64().max(FINE_STEP);
        let min_interval = config.min_interval.as_secs_f64().clamp(0.001, max_interval);
        let fine = match config.budget {
            // Fine up to where 97 % of the orders that settle in time have settled.
            Budget::P90Lag(target) => {
                let settled = dist.cdf(deadline);
                let until = bisect_first(0.0, deadline, |t| dist.cdf(t) >= 0.97 * settled);
                let step = (target / 2.0).max(min_interval);
                Some((step, until.min(step * MAX_FINE_POINTS)))
            }
            Budget::FixedShare(_) | Budget::Calls(_) => None,
        };
        let grid = grid(deadline, min_interval, max_interval, fine);
        let objective = match config.budget {
            Budget::P90Lag(threshold) => Objective::LateShare { threshold },
            Budget::FixedShare(_) | Budget::Calls(_) => Objective::MeanLag,
        };
        let solve = |lambda: f64| Solution::solve(&dist, &grid, lambda, max_interval, objective);
        // λ from 1e-9 (calls nearly free) to 1e9 (calls priceless): seconds of lag, or shares
        // of orders seen late, one call is worth.
        let (lo, hi) = (1e-9_f64.ln(), 1e9_f64.ln());
        let feasible: Box<dyn Fn(&Solution) -> bool> = match config.budget {
            Budget::Calls(calls) => {
                Box::new(move |s: &Solution| s.prediction.calls_per_order <= calls)
            }
            Budget::FixedShare(share) => {
                let calls = share * dist.evaluate(&fixed_ages(fixed, deadline)).calls_per_order;
                Box::new(move |s: &Solution| s.prediction.calls_per_order <= calls)
            }
            Budget::P90Lag(target) => {
                // Fewest calls: the largest λ (price of a call, in shares of orders seen late)
                // still meeting the target.
                let best = bisect(lo, hi, |l| {
                    dist.lag_quantile(&solve(l.exp()).ages, P90_PLANNED) > target
                });
                let sol = solve(best.exp());
                return Self::from_solution(dist, grid, sol, objective, min_interval, max_interval);
            }
        };
        let best = bisect_first(lo, hi, |l| feasible(&solve(l.exp())));
        let sol = solve(best.exp());
        Self::from_solution(dist, grid, sol, objective, min_interval, max_interval)
    }

    fn from_solution(
        dist: Distribution,
        grid: Vec<f64>,
        sol: Solution,
        objective: Objective,
        min_interval: f64,
        max_interval: f64,
    ) -> Self {
        Self {
            dist,
            grid,
            value: sol.value,
            next: sol.next,
            lambda: sol.lambda,
            objective,
            min_interval,
            max_interval,
            prediction: sol.prediction,
        }
    }

    /// What the plan is expected to cost and deliver on its own history.
    pub fn prediction(&self) -> Prediction {
        self.prediction
    }

    /// The price of one call in seconds of lag the plan settled on.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// The distribution the plan was made from.
    pub fn distribution(&self) -> &Distribution {
        &self.dist
    }

    /// The last age the plan checks at.
    pub fn deadline(&self) -> f64 {
        self.grid.last().copied().unwrap_or(0.0)
    }

    /// The check ages of an order that never settles and is always checked on time.
    pub fn ages(&self) -> Vec<f64> {
        let mut ages = vec![0.0];
        let mut j = 0;
        while j + 1 < self.grid.len() {
            j = self.next[j];
            ages.push(self.grid[j]);
        }
        ages
    }

    /// The age at which to check an order last checked at `age` seconds and still open, or
    /// `None` past the plan's deadline.
    pub fn next_check_after(&self, age: f64) -> Option<f64> {
        let deadline = self.deadline();
        if !age.is_finite() || age >= deadline {
            return None;
        }
        let age = age.max(0.0);
        let earliest = age + self.min_interval;
        if earliest >= deadline {
            return Some(deadline);
        }
        let first = self.grid.partition_point(|g| *g < earliest);
        let calls = self.lambda * self.dist.survival(age);
        let mut best = (f64::INFINITY, deadline);
        for k in first..self.grid.len().min(first + MAX_CANDIDATES) {
            let at = self.grid[k];
            if k > first && at - age > self.max_interval {
                break;
            }
            let lag = self.dist.lag(age, at);
            let cost = calls + self.objective.cost(&self.dist, age, at, lag) + self.value[k];
            if cost < best.0 {
                best = (cost, at);
            }
        }
        Some(best.1)
    }
}

/// What the plan minimises besides calls: the expected lag, or (for a p90 target) the share of
/// orders seen later than the target, with the lag as a small tie-breaker.
#[derive(Debug, Clone, Copy)]
enum Objective {
    MeanLag,
    LateShare { threshold: f64 },
}

/// The lag quantile a p90 target is planned for. The history is an estimate (times to final are
/// only known to within the interval between two checks, and smoothed), and a plan that sacrifices
/// exactly 10 % of orders to save calls falls off a cliff when the estimate is a little off: one
/// order in a hundred more seen late and the realised p90 jumps from the target to the lag of
/// the sacrificed orders. Planning for p92 keeps two orders in a hundred in reserve.
const P90_PLANNED: f64 = 0.92;

/// Weight of the mean lag when the late share is what counts: small, but enough to prefer the
/// nearer of two checks that miss the target equally.
const TIE_BREAK: f64 = 1e-4;

impl Objective {
    /// The cost of checking at `a` then at `b`, whose (unconditional) lag is `lag`.
    fn cost(self, dist: &Distribution, a: f64, b: f64, lag: f64) -> f64 {
        match self {
            Self::MeanLag => lag,
            Self::LateShare { threshold } => {
                let cut = b - threshold;
                let late = if cut > a {
                    dist.cdf(cut) - dist.cdf(a)
                } else {
                    0.0
                };
                late + TIE_BREAK * lag
            }
        }
    }
}

/// One solution of the dynamic programme for a given λ.
struct Solution {
    /// The check ages of an order that never settles.
    ages: Vec<f64>,
    value: Vec<f64>,
    next: Vec<usize>,
    lambda: f64,
    prediction: Prediction,
}

impl Solution {
    fn solve(
        dist: &Distribution,
        grid: &[f64],
        lambda: f64,
        max_interval: f64,
        objective: Objective,
    ) -> Self {
        let m = grid.len();
        let cdf: Vec<f64> = grid.iter().map(|g| dist.cdf(*g)).collect();
        let partial: Vec<f64> = grid.iter().map(|g| dist.partial_mean(*g)).collect();
        let mut value = vec![0.0; m];
        let mut next = vec![m - 1; m];
        for j in (0..m.saturating_sub(1)).rev() {
            let calls = lambda * (1.0 - cdf[j]).max(0.0);
            let mut best = f64::INFINITY;
            for k in j + 1..m.min(j + 1 + MAX_CANDIDATES) {
                if k > j + 1 && grid[k] - grid[j] > max_interval {
                    break;
                }
                let lag = (grid[k] * (cdf[k] - cdf[j]) - (partial[k] - partial[j])).max(0.0);
                let cost = calls + objective.cost(dist, grid[j], grid[k], lag) + value[k];
                // Strictly better only: ties go to the nearer check, the same way every time.
                if cost < best {
                    best = cost;
                    next[j] = k;
                }
            }
            value[j] = best;
        }
        let mut ages = vec![grid[0]];
        let mut j = 0;
        while j + 1 < m {
            j = next[j];
            ages.push(grid[j]);
        }
        Self {
            prediction: dist.evaluate(&ages),
            ages,
            value,
            next,
            lambda,
        }
    }
}

/// The smallest x in [lo, hi] with `ok(x)` (assumed monotone: false … false true … true); `hi`
/// when none is.
fn bisect_first(mut lo: f64, mut hi: f64, ok: impl Fn(f64) -> bool) -> f64 {
    if ok(lo) {
        return lo;
    }
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// The largest x in [lo, hi] with `!too_far(x)` (monotone); `lo` when none is.
fn bisect(mut lo: f64, mut hi: f64, too_far: impl Fn(f64) -> bool) -> f64 {
    if !too_far(hi) {
        return hi;
    }
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        if too_far(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    lo
}

/// Candidate check ages: 0, then `min_interval` apart, then 2 % apart, never more than a
/// quarter of `max_interval` apart, ending exactly at `deadline`.
///
/// With `fine = Some((step, until))` the spacing stays at most `step` up to age `until`: a p90
/// target of a few seconds needs candidate checks a few seconds apart wherever most payments
/// happen, not 2 % of a late age apart.
fn grid(deadline: f64, min_interval: f64, max_interval: f64, fine: Option<(f64, f64)>) -> Vec<f64> {
    let mut grid = vec![0.0];
    let mut t = min_interval.max(FINE_STEP.min(min_interval));
    while t < deadline {
        grid.push(t);
        let mut step = (t * GROWTH).clamp(
            min_interval.max(FINE_STEP),
            (max_interval / 4.0).max(min_interval),
        );
        if let Some((fine_step, until)) = fine
            && t < until
        {
            step = step.min(fine_step.max(min_interval));
        }
        t += step;
    }
    grid.push(deadline);
    grid
}

/// The check ages of the fixed `policy` for an order that never changes, up to `deadline`
/// seconds, without jitter: what [`Budget::FixedShare`] prices.
pub fn fixed_ages(policy: &PollPolicy, deadline: f64) -> Vec<f64> {
    let policy = PollPolicy {
        jitter: 0.0,
        ..policy.clone()
    };
    let start = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let mut state = PollState::new(&policy, start);
    let pending = crate::Observation::new(crate::PaymentStatus::Pending, "pending", start);
    let mut ages = vec![0.0];
    let mut now = start;
    loop {
        match policy.next(&mut state, Ok(&pending), now) {
            crate::PollDecision::CheckAgainIn(delay) if !delay.is_zero() => {
                now += chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::MAX);
                let age = (now - start).as_seconds_f64();
                if age > deadline + 1e-9 {
                    break;
                }
                ages.push(age);
            }
            _ => break,
        }
    }
    ages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PaymentStatus;

    pub(crate) fn history(paid_secs: &[(f64, u64)], unresolved: u64) -> FinalTimes {
        let mut times = FinalTimes::new();
        for (secs, n) in paid_secs {
            for _ in 0..*n {
                times.record(PaymentStatus::Paid, Duration::from_secs_f64(*secs));
            }
        }
        for _ in 0..unresolved {
            times.record(PaymentStatus::Unresolved, Duration::from_secs(86_400));
        }
        times
    }

    fn config(budget: Budget) -> PlanConfig {
        PlanConfig {
            budget,
            deadline: Duration::from_secs(86_400),
            max_interval: Duration::from_secs(900),
            min_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn distribution_integrates_the_histogram() {
        let times = history(&[(10.0, 50), (100.0, 40)], 9);
        let d = Distribution::new(&times);
        // 90 paid and the 2 pseudo-orders spread over the day, of 99 + 1 + 2.
        assert!((d.cdf(1e6) - 92.0 / 102.0).abs() < 1e-9, "{}", d.cdf(1e6));
        assert_eq!(d.cdf(0.0), 0.0);
        assert!((d.cdf(50.0) - 0.5).abs() < 0.02, "{}", d.cdf(50.0));
        // Mean time to final of the paid ones, ~ (10·50 + 100·40) / 90.
        let mean = d.partial_mean(1000.0) / d.cdf(1000.0);
        assert!((mean - 50.0).abs() < 5.0, "{mean}");
    }

    #[test]
    fn checks_crowd_where_payments_happen() {
        let times = history(&[(20.0, 800), (25.0, 100)], 100);
        let plan = Plan::build(
            &times,
            &config(Budget::Calls(20.0)),
            &PollPolicy::cashless(),
        );
        let ages = plan.ages();
        let near = ages.iter().filter(|a| (10.0..40.0).contains(*a)).count();
        let far = ages
            .iter()
            .filter(|a| (3600.0..7200.0).contains(*a))
            .count();
        assert!(near >= 5, "{ages:?}");
        assert!(far <= 10 && far * 2 < near, "{ages:?}");
        let p = plan.prediction();
        assert!(p.calls_per_order <= 20.0 + 1e-9, "{p:?}");
        assert_eq!(*ages.last().unwrap(), 86_400.0);
        for pair in ages.windows(2) {
            assert!(pair[1] - pair[0] <= 900.0 + 1e-9, "{pair:?}");
        }
    }

    #[test]
    fn match_fixed_spends_what_the_fixed_policy_spends_for_less_lag() {
        let times = history(&[(5.0, 200), (20.0, 400), (45.0, 200), (600.0, 100)], 50);
        let fixed = PollPolicy::cashless();
        let plan = Plan::build(&times, &config(Budget::FixedShare(1.0)), &fixed);
        let d = Distribution::new(&times);
        let baseline = d.evaluate(&fixed_ages(&fixed, 86_400.0));
        let p = plan.prediction();
        assert!(
            p.calls_per_order <= baseline.calls_per_order + 1e-9,
            "{p:?} vs {baseline:?}"
        );
        assert!(p.mean_lag < baseline.mean_lag, "{p:?} vs {baseline:?}");
    }

    #[test]
    fn fixed_ages_follow_the_policy() {
        let ages = fixed_ages(&PollPolicy::cashless(), 86_400.0);
        assert_eq!(&ages[..4], &[0.0, 3.0, 7.5, 14.25]);
        assert_eq!(*ages.last().unwrap(), 86_400.0);
    }
}
