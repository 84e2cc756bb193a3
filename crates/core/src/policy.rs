//! When to check a payment again: a pure state machine over [`PollState`], driven by each
//! check's outcome.
//!
//! The shape follows the providers' own polling advice: start fast (3–5 s) and back off
//! exponentially to a cap during a fast window (5–10 min), then keep checking slowly (every
//! 5 min) until a deadline (24 h), and then give up as *unresolved*, never as failed, because
//! a payment may still complete after anyone stopped looking.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::adapters::CheckError;
use crate::durations::{scale, serde_humane};
use crate::observation::Observation;
use crate::provider::Provider;
use crate::status::PaymentStatus;

/// Timing rules for polling one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollPolicy {
    /// Delay after the first check (and after any progress).
    #[serde(with = "serde_humane")]
    pub first_delay: Duration,
    /// Growth factor of the delay after each unchanged answer.
    pub multiplier: f64,
    /// Cap on the delay during the fast window.
    #[serde(with = "serde_humane")]
    pub max_delay: Duration,
    /// Random spread applied to each delay, as a fraction (0.1 = ±10 %), so that payments
    /// created together do not hit the provider together.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// How long after the start (or the last progress) polling stays fast.
    #[serde(with = "serde_humane")]
    pub fast_window: Duration,
    /// Interval between checks after the fast window.
    #[serde(default = "default_grace_interval", with = "serde_humane")]
    pub grace_interval: Duration,
    /// How long after the start to keep polling at all; then the payment is unresolved.
    #[serde(default = "default_deadline", with = "serde_humane")]
    pub deadline: Duration,
    /// How many times a "not found" is retried before giving up (providers can lag behind
    /// the payment's creation).
    #[serde(default = "default_not_found_retries")]
    pub not_found_retries: u32,
}

fn default_jitter() -> f64 {
    0.1
}

fn default_grace_interval() -> Duration {
    Duration::from_secs(5 * 60)
}

fn default_deadline() -> Duration {
    Duration::from_secs(24 * 60 * 60)
}

fn default_not_found_retries() -> u32 {
    3
}

/// Shortest delay a scaled policy will produce, so a tiny `time_scale` never busy-loops.
const MIN_SCALED_DELAY: Duration = Duration::from_millis(1);

/// A policy value is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid poll policy{}: {field} {reason}", provider.map(|p| format!(" for {p}")).unwrap_or_default())]
pub struct PolicyError {
    /// Which provider's policy, when known.
    pub provider: Option<Provider>,
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl PollPolicy {
    fn seed(first_secs: u64, max_secs: u64, fast_window_mins: u64) -> Self {
        Self {
            first_delay: Duration::from_secs(first_secs),
            multiplier: 1.5,
            max_delay: Duration::from_secs(max_secs),
            jitter: default_jitter(),
            fast_window: Duration::from_secs(fast_window_mins * 60),
            grace_interval: default_grace_interval(),
            deadline: default_deadline(),
            not_found_retries: default_not_found_retries(),
        }
    }

    /// Cashless's guide: 3 s × 1.5, capped at 30 s, for 10 min.
    pub fn cashless() -> Self {
        Self::seed(3, 30, 10)
    }

    /// HandCash: 5 s × 1.5, capped at 30 s, for 10 min.
    pub fn handcash() -> Self {
        Self::seed(5, 30, 10)
    }

    /// MiracleCash's guide: 5 s, backing off × 1.5 to 30 s, for 5 min; prompts live 24 h.
    pub fn miraclecash() -> Self {
        Self::seed(5, 30, 5)
    }

    /// FoxReload's guide: 3 s × 1.5, capped at 15 s, for 5 min.
    pub fn foxreload() -> Self {
        Self::seed(3, 15, 5)
    }

    /// The seed-derived default for `provider`.
    pub fn for_provider(provider: Provider) -> Self {
        match provider {
            Provider::Cashless => Self::cashless(),
            Provider::HandCash => Self::handcash(),
            Provider::MiracleCash => Self::miraclecash(),
            Provider::FoxReload => Self::foxreload(),
            // A definition file's policy lives in PollPolicies::declared; without one, the
            // seeds' common shape.
            Provider::Declared(_) => Self::handcash(),
        }
    }

    /// This policy with every duration multiplied by `factor` (tests use e.g. 0.01).
    pub fn scaled(&self, factor: f64) -> Self {
        let at_least_min = |d: Duration| scale(d, factor).max(MIN_SCALED_DELAY);
        Self {
            first_delay: at_least_min(self.first_delay),
            max_delay: at_least_min(self.max_delay),
            fast_window: scale(self.fast_window, factor),
            grace_interval: at_least_min(self.grace_interval),
            deadline: scale(self.deadline, factor),
            ..self.clone()
        }
    }

    /// Checks that every value is in range.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let fail = |field, reason| {
            Err(PolicyError {
                provider: None,
                field,
                reason,
            })
        };
        if self.first_delay.is_zero() {
            return fail("first_delay", "must be positive");
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return fail("multiplier", "must be a finite number >= 1");
        }
        if self.max_delay < self.first_delay {
            return fail("max_delay", "must be at least first_delay");
        }
        if !self.jitter.is_finite() || !(0.0..1.0).contains(&self.jitter) {
            return fail("jitter", "must be a fraction in [0, 1)");
        }
        if self.grace_interval.is_zero() {
            return fail("grace_interval", "must be positive");
        }
        if self.deadline.is_zero() {
            return fail("deadline", "must be positive");
        }
        Ok(())
    }

    /// When polling stops for a payment started at `state.started_at`.
    pub fn deadline_at(&self, state: &PollState) -> DateTime<Utc> {
        add(state.started_at, self.deadline)
    }

    /// Decides what to do after a check, updating `state`. Uses the thread-local RNG for
    /// jitter; see [`PollPolicy::next_with_rng`].
    pub fn next(
        &self,
        state: &mut PollState,
        outcome: Result<&Observation, &CheckError>,
        now: DateTime<Utc>,
    ) -> PollDecision {
        self.next_with_rng(state, outcome, now, &mut rand::rng())
    }

    /// [`PollPolicy::next`] with a caller-supplied RNG (for reproducible tests).
    pub fn next_with_rng<R: Rng + ?Sized>(
        &self,
        state: &mut PollState,
        outcome: Result<&Observation, &CheckError>,
        now: DateTime<Utc>,
        rng: &mut R,
    ) -> PollDecision {
        let deadline_at = self.deadline_at(state);
        match outcome {
            Ok(observation) => {
                state.checks = state.checks.saturating_add(1);
                state.errors_in_row = 0;
                state.not_found_in_row = 0;
                let status = observation.status;
                if status.is_terminal() {
                    state.last_status = Some(status);
                    state.last_raw_status = Some(observation.raw_status.clone());
                    return PollDecision::Terminal(status);
                }
                // Any change, even one only visible in the raw string (FoxReload's
                // paid → processing), means the payer or provider is acting right now.
                let progressed = state.last_status.is_some_and(|last| last != status)
                    || state
                        .last_raw_status
                        .as_deref()
                        .is_some_and(|last| last != observation.raw_status);
                state.last_status = Some(status);
                state.last_raw_status = Some(observation.raw_status.clone());
                if progressed {
                    state.current_delay = self.first_delay;
                    state.fast_since = now;
                }
                if now >= deadline_at {
                    return PollDecision::GiveUp(GiveUpReason::Deadline);
                }
                let delay = self.regular_delay(state, now);
                clamp_to_deadline(self.jittered(delay, rng), now, deadline_at)
            }
            Err(error) => {
                if error.is_permanent() {
                    return PollDecision::GiveUp(GiveUpReason::PermanentError);
                }
                state.errors_in_row = state.errors_in_row.saturating_add(1);
                if matches!(error, CheckError::NotFound(_)) {
                    state.not_found_in_row = state.not_found_in_row.saturating_add(1);
                    if state.not_found_in_row > self.not_found_retries {
                        return PollDecision::GiveUp(GiveUpReason::NotFound);
                    }
                }
                if now >= deadline_at {
                    return PollDecision::GiveUp(GiveUpReason::Deadline);
                }
                let delay = match error {
                    CheckError::RateLimited { retry_after } => {
                        // Backing off the regular schedule too makes repeated 429s space out
                        // even when the provider sends no Retry-After.
                        let regular = self.jittered(self.regular_delay(state, now), rng);
                        regular.max(retry_after.unwrap_or(Duration::ZERO))
                    }
                    _ => self.jittered(self.error_delay(state, now), rng),
                };
                clamp_to_deadline(delay, now, deadline_at)
            }
        }
    }

    /// Whether progress (a changed status) reopened the fast window and it is still open: the
    /// payer is acting right now, so checks stay fast whatever else steers them.
    pub fn reopened_by_progress(&self, state: &PollState, now: DateTime<Utc>) -> bool {
        state.fast_since > state.started_at && self.in_fast_window(state, now)
    }

    /// `delay` with this policy's random spread applied.
    pub fn jitter_delay<R: Rng + ?Sized>(&self, delay: Duration, rng: &mut R) -> Duration {
        self.jittered(delay, rng)
    }

    fn in_fast_window(&self, state: &PollState, now: DateTime<Utc>) -> bool {
        now < add(state.fast_since, self.fast_window)
    }

    /// The next delay on the normal schedule, advancing the backoff.
    fn regular_delay(&self, state: &mut PollState, now: DateTime<Utc>) -> Duration {
        if self.in_fast_window(state, now) {
            let delay = state.current_delay.min(self.max_delay);
            state.current_delay = scale(delay, self.multiplier).min(self.max_delay);
            delay
        } else {
            self.grace_interval
        }
    }

    /// Exponential backoff on consecutive errors, capped at the phase's normal interval so an
    /// outage does not turn the slow phase into a fast one.
    fn error_delay(&self, state: &PollState, now: DateTime<Utc>) -> Duration {
        let cap = if self.in_fast_window(state, now) {
            self.max_delay
        } else {
            self.max_delay.max(self.grace_interval)
        };
        let exponent = state.errors_in_row.saturating_sub(1).min(31);
        self.first_delay.saturating_mul(1u32 << exponent).min(cap)
    }

    fn jittered<R: Rng + ?Sized>(&self, delay: Duration, rng: &mut R) -> Duration {
        let spread = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 0.99)
        } else {
            0.0
        };
        if spread == 0.0 {
            return delay;
        }
        scale(delay, 1.0 + rng.random_range(-spread..=spread))
    }
}

fn add(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Never schedule past the deadline: the last check lands exactly on it.
fn clamp_to_deadline(
    delay: Duration,
    now: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
) -> PollDecision {
    let remaining = (deadline_at - now).to_std().unwrap_or(Duration::ZERO);
    PollDecision::CheckAgainIn(delay.min(remaining))
}

/// Per-provider policies plus a global time scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollPolicies {
    /// Multiplier applied to every duration of every policy (1.0 in production).
    ///
    /// A provider's `Retry-After` is not scaled: it is the provider's demand, not our schedule.
    #[serde(default = "default_time_scale")]
    pub time_scale: f64,
    /// Cashless policy.
    #[serde(default = "PollPolicy::cashless")]
    pub cashless: PollPolicy,
    /// HandCash policy.
    #[serde(default = "PollPolicy::handcash")]
    pub handcash: PollPolicy,
    /// MiracleCash policy.
    #[serde(default = "PollPolicy::miraclecash")]
    pub miraclecash: PollPolicy,
    /// FoxReload policy.
    #[serde(default = "PollPolicy::foxreload")]
    pub foxreload: PollPolicy,
    /// Declared providers' policies, from their definition files (not from
    /// `PAYWATCH_POLICIES`, so one file says everything about its provider).
    #[serde(skip)]
    pub declared: std::collections::BTreeMap<Provider, PollPolicy>,
}

fn default_time_scale() -> f64 {
    1.0
}

impl Default for PollPolicies {
    fn default() -> Self {
        Self {
            time_scale: default_time_scale(),
            cashless: PollPolicy::cashless(),
            handcash: PollPolicy::handcash(),
            miraclecash: PollPolicy::miraclecash(),
            foxreload: PollPolicy::foxreload(),
            declared: std::collections::BTreeMap::new(),
        }
    }
}

impl PollPolicies {
    /// The seed defaults with every duration multiplied by `time_scale`.
    pub fn with_time_scale(time_scale: f64) -> Self {
        Self {
            time_scale,
            ..Self::default()
        }
    }

    /// The effective (time-scaled) policy for `provider`.
    pub fn for_provider(&self, provider: Provider) -> PollPolicy {
        let policy = match provider {
            Provider::Cashless => &self.cashless,
            Provider::HandCash => &self.handcash,
            Provider::MiracleCash => &self.miraclecash,
            Provider::FoxReload => &self.foxreload,
            Provider::Declared(_) => match self.declared.get(&provider) {
                Some(policy) => policy,
                None => return PollPolicy::for_provider(provider).scaled(self.time_scale),
            },
        };
        if self.time_scale == 1.0 {
            policy.clone()
        } else {
            policy.scaled(self.time_scale)
        }
    }

    /// Checks the time scale and every policy.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !self.time_scale.is_finite() || self.time_scale <= 0.0 {
            return Err(PolicyError {
                provider: None,
                field: "time_scale",
                reason: "must be a positive finite number",
            });
        }
        for provider in Provider::ALL
            .into_iter()
            .chain(self.declared.keys().copied())
        {
            self.for_provider(provider)
                .validate()
                .map_err(|e| PolicyError {
                    provider: Some(provider),
                    ..e
                })?;
        }
        Ok(())
    }
}

/// Where polling of one payment stands. Serializable so the worker can persist it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollState {
    /// Successful checks so far (errors are not observations and are not counted).
    pub checks: u32,
    /// When polling started; the deadline counts from here.
    pub started_at: DateTime<Utc>,
    /// The delay the next unchanged answer will get, before jitter.
    #[serde(with = "serde_humane")]
    pub current_delay: Duration,
    /// The last normalized status seen.
    pub last_status: Option<PaymentStatus>,
    /// The last raw provider status seen (a raw change is progress too).
    #[serde(default)]
    pub last_raw_status: Option<String>,
    /// Consecutive failed checks of any kind.
    pub errors_in_row: u32,
    /// Consecutive "not found" answers.
    #[serde(default)]
    pub not_found_in_row: u32,
    /// Start of the current fast window: `started_at`, or the last progress.
    pub fast_since: DateTime<Utc>,
}

impl PollState {
    /// A fresh state for a payment whose polling starts at `started_at`.
    pub fn new(policy: &PollPolicy, started_at: DateTime<Utc>) -> Self {
        Self {
            checks: 0,
            started_at,
            current_delay: policy.first_delay,
            last_status: None,
            last_raw_status: None,
            errors_in_row: 0,
            not_found_in_row: 0,
            fast_since: started_at,
        }
    }
}

/// What the worker should do after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollDecision {
    /// Check again after this long.
    CheckAgainIn(Duration),
    /// Stop polling; the payment is [`PaymentStatus::Unresolved`] (not failed).
    GiveUp(GiveUpReason),
    /// The provider gave a final answer.
    Terminal(PaymentStatus),
}

/// Why polling stopped without a terminal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GiveUpReason {
    /// The deadline passed.
    Deadline,
    /// The provider kept saying the payment does not exist.
    NotFound,
    /// A permanent error (credentials rejected, unreadable response, not configured, ...).
    PermanentError,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-28T14:30:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn no_jitter(policy: PollPolicy) -> PollPolicy {
        PollPolicy {
            jitter: 0.0,
            ..policy
        }
    }

    fn obs(status: PaymentStatus, raw: &str) -> Observation {
        Observation::new(status, raw, t0())
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn at(offset: Duration) -> DateTime<Utc> {
        add(t0(), offset)
    }

    /// Feeds pending observations back to back; returns the delays.
    fn run_pending(policy: &PollPolicy, state: &mut PollState, n: usize) -> Vec<Duration> {
        let mut now = state.started_at;
        let mut delays = Vec::new();
        for _ in 0..n {
            match policy.next(state, Ok(&obs(PaymentStatus::Pending, "NOT_PAID")), now) {
                PollDecision::CheckAgainIn(delay) => {
                    delays.push(delay);
                    now = add(now, delay);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        delays
    }

    fn assert_delays_close(actual: &[Duration], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!(
                (a.as_secs_f64() - e).abs() < 0.001,
                "got {actual:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn defaults_follow_the_seeds() {
        let expect = |p: PollPolicy, first: u64, max: u64, window_min: u64| {
            assert_eq!(p.first_delay, Duration::from_secs(first));
            assert_eq!(p.max_delay, Duration::from_secs(max));
            assert_eq!(p.fast_window, Duration::from_secs(window_min * 60));
            assert_eq!(p.multiplier, 1.5);
            assert_eq!(p.grace_interval, Duration::from_secs(300));
            assert_eq!(p.deadline, Duration::from_secs(86_400));
            assert_eq!(p.not_found_retries, 3);
            p.validate().unwrap();
        };
        let policies = PollPolicies::default();
        expect(policies.for_provider(Provider::Cashless), 3, 30, 10);
        expect(policies.for_provider(Provider::FoxReload), 3, 15, 5);
        expect(policies.for_provider(Provider::MiracleCash), 5, 30, 5);
        expect(policies.for_provider(Provider::HandCash), 5, 30, 10);
        policies.validate().unwrap();
    }

    #[test]
    fn backs_off_by_the_multiplier_up_to_the_cap() {
        let policy = no_jitter(PollPolicy::cashless());
        let mut state = PollState::new(&policy, t0());
        let delays = run_pending(&policy, &mut state, 9);
        assert_delays_close(
            &delays,
            &[3.0, 4.5, 6.75, 10.125, 15.1875, 22.78125, 30.0, 30.0, 30.0],
        );
        assert_eq!(state.checks, 9);

        let policy = no_jitter(PollPolicy::foxreload());
        let mut state = PollState::new(&policy, t0());
        let delays = run_pending(&policy, &mut state, 7);
        assert_delays_close(&delays, &[3.0, 4.5, 6.75, 10.125, 15.0, 15.0, 15.0]);
    }

    #[test]
    fn partial_payment_resets_to_fast_polling() {
        let policy = no_jitter(PollPolicy::cashless());
        let mut state = PollState::new(&policy, t0());
        run_pending(&policy, &mut state, 8);
        let now = at(Duration::from_secs(200));
        let partial = obs(PaymentStatus::PartiallyPaid, "PARTIALLY_PAID");
        assert_eq!(
            policy.next(&mut state, Ok(&partial), now),
            PollDecision::CheckAgainIn(secs(3.0))
        );
        // Unchanged partial payment backs off again.
        assert_eq!(
            policy.next(&mut state, Ok(&partial), at(Duration::from_secs(203))),
            PollDecision::CheckAgainIn(secs(4.5))
        );
    }

    #[test]
    fn raw_status_change_counts_as_progress() {
        let policy = no_jitter(PollPolicy::foxreload());
        let mut state = PollState::new(&policy, t0());
        let paid = obs(PaymentStatus::Processing, "paid");
        policy.next(&mut state, Ok(&paid), t0());
        policy.next(&mut state, Ok(&paid), at(secs(3.0)));
        let decision = policy.next(&mut state, Ok(&paid), at(secs(7.5)));
        assert_eq!(decision, PollDecision::CheckAgainIn(secs(6.75)));
        let processing = obs(PaymentStatus::Processing, "processing");
        let decision = policy.next(&mut state, Ok(&processing), at(secs(15.0)));
        assert_eq!(decision, PollDecision::CheckAgainIn(secs(3.0)));
    }

    #[test]
    fn the_first_observation_is_not_progress() {
        let policy = no_jitter(PollPolicy::cashless());
        let mut state = PollState::new(&policy, t0());
        let partial = obs(PaymentStatus::PartiallyPaid, "PARTIALLY_PAID");
        assert_eq!(
            policy.next(&mut state, Ok(&partial), t0()),
            PollDecision::CheckAgainIn(secs(3.0))
        );
        assert_eq!(
            policy.next(&mut state, Ok(&partial), at(secs(3.0))),
            PollDecision::CheckAgainIn(secs(4.5))
        );
    }

    #[test]
    fn grace_phase_after_the_fast_window() {
        let policy = no_jitter(PollPolicy::cashless());
        let mut state = PollState::new(&policy, t0());
        let pending = obs(PaymentStatus::Pending, "NOT_PAID");
        let just_before = at(Duration::from_secs(599));
        assert_eq!(
            policy.next(&mut state, Ok(&pending), just_before),
            PollDecision::CheckAgainIn(secs(3.0))
        );
        assert_eq!(
            policy.next(&mut state, Ok(&pending), at(Duration::from_secs(600))),
            PollDecision::CheckAgainIn(Duration::from_secs(300))
        );
        // Progress late in the day opens a new fast window.
        let partial = obs(PaymentStatus::PartiallyPaid, "PARTIALLY_PAID");
        let late = at(Duration::from_secs(3 * 3600));
        assert_eq!(
            policy.next(&mut state, Ok(&partial), late),
            PollDecision::CheckAgainIn(secs(3.0))
        );
        assert_eq!(state.fast_since, late);
    }

    #[test]
    fn the_last_check_lands_on_the_deadline_then_gives_up() {
        let policy = no_jitter(PollPolicy::cashless());
        let mut state = PollState::new(&policy, t0());
        let pending = obs(PaymentStatus::Pending, "NOT_PAID");
        let deadline = at(policy.deadline);
        assert_eq!(policy.deadline_at(&state), deadline);
        let near = at(policy.deadline - Duration::from_secs(10));
        assert_eq!(
            policy.next(&mut state, Ok(&pending), near),
            PollDecision::CheckAgainIn(Duration::from_secs(10))
        );
        assert_eq!(
            policy.next(&mut state, Ok(&pending), deadline),
            PollDecision::GiveUp(GiveUpReason::Deadline)
        );
        // Errors at the deadline give up too, and a terminal answer still wins.
        let transient = CheckError::Transient("x".into());
        assert_eq!(
            policy.next(&mut state, Err(&transient), deadline),
            PollDecision::GiveUp(GiveUpReason::Deadline)
        );
        assert_eq!(
            policy.next(
                &mut state,
                Ok(&obs(PaymentStatus::Paid, "FULLY_PAID")),
                deadline
            ),
            PollDecision::Terminal(PaymentStatus::Paid)
        );
    }

    #[test]
    fn never_schedules_past_the_deadline_even_with_jitter_or_retry_after() {
        let policy = PollPolicy {
            jitter: 0.5,
            ..PollPolicy::cashless()
        };
        let deadline = t0() + TimeDelta::seconds(86_400);
        let mut rng = StdRng::seed_from_u64(7);
        for remaining in [1u64, 5, 100, 299, 301] {
            let now = deadline - TimeDelta::seconds(remaining as i64);
            let mut state = PollState::new(&policy, t0());
            let pending = obs(PaymentStatus::Pending, "NOT_PAID");
            let PollDecision::CheckAgainIn(delay) =
                policy.next_with_rng(&mut state, Ok(&pending), now, &mut rng)
            else {
                panic!("expected a delay");
            };
            assert!(
                delay <= Duration::from_secs(remaining),
                "{delay:?} > {remaining}s"
            );
            let limited = CheckError::RateLimited {
                retry_after: Some(Duration::from_secs(3600)),
            };
            assert_eq!(
                policy.next_with_rng(&mut state, Err(&limited), now, &mut rng),
                PollDecision::CheckAgainIn(Duration::from_secs(remaining))
            );
        }
    }

    #[test]
    fn terminal_statuses_end_polling() {
        let policy = PollPolicy::miraclecash();
        for status in [
            PaymentStatus::Paid,
            PaymentStatus::Failed,
            PaymentStatus::Expired,
            PaymentStatus::Cancelled,
        ] {
            let mut state = PollState::new(&policy, t0());
            assert_eq!(
                policy.next(&mut state, Ok(&obs(status, "x")), t0()),
                PollDecision::Terminal(status)
            );
            assert_eq!(state.last_status, Some(status));
        }
    }

    #[test]
    fn retry_after_is_honoured() {
        let policy = no_jitter(PollPolicy::cashless());
        let mut state = PollState::new(&policy, t0());
        let limited = |s| CheckError::RateLimited {
            retry_after: Some(Duration::from_secs(s)),
        };
        // Longer than the schedule: wait as asked.
        assert_eq!(
            policy.next(&mut state, Err(&limited(60)), t0()),
            PollDecision::CheckAgainIn(Duration::from_secs(60))
        );
        // Shorter than the schedule: the schedule wins (it backed off to 4.5 s meanwhile).
        assert_eq!(
            policy.next(&mut state, Err(&limited(2)), at(secs(60.0))),
            PollDecision::CheckAgainIn(secs(4.5))
        );
        // No Retry-After: the backed-off schedule.
        let bare = CheckError::RateLimited { retry_after: None };
        assert_eq!(
            policy.next(&mut state, Err(&bare), at(secs(65.0))),
            PollDecision::CheckAgainIn(secs(6.75))
        );
        assert_eq!(state.checks, 0, "rate limits are not observations");
        assert_eq!(state.errors_in_row, 3);
    }

    #[test]
    fn transient_errors_back_off_without_counting_as_observations() {
        let policy = no_jitter(PollPolicy::cashless());
        let mut state = PollState::new(&policy, t0());
        policy.next(
            &mut state,
            Ok(&obs(PaymentStatus::Pending, "NOT_PAID")),
            t0(),
        );
        let delay_before = state.current_delay;
        let transient = CheckError::Transient("HTTP 503".into());
        let mut now = at(secs(3.0));
        let mut delays = Vec::new();
        for _ in 0..6 {
            let PollDecision::CheckAgainIn(delay) = policy.next(&mut state, Err(&transient), now)
            else {
                panic!("transient errors should be retried");
            };
            delays.push(delay);
            now = add(now, delay);
        }
        assert_delays_close(&delays, &[3.0, 6.0, 12.0, 24.0, 30.0, 30.0]);
        assert_eq!(state.checks, 1);
        assert_eq!(state.errors_in_row, 6);
        assert_eq!(
            state.current_delay, delay_before,
            "errors leave the schedule alone"
        );
        // Recovery resets the error count and resumes the schedule.
        policy.next(
            &mut state,
            Ok(&obs(PaymentStatus::Pending, "NOT_PAID")),
            now,
        );
        assert_eq!(state.errors_in_row, 0);
        assert_eq!(state.checks, 2);
    }

    #[test]
    fn error_backoff_in_the_grace_phase_is_capped_by_the_grace_interval() {
        let policy = no_jitter(PollPolicy::cashless());
        let mut state = PollState::new(&policy, t0());
        let transient = CheckError::Transient("x".into());
        let late = at(Duration::from_secs(3600));
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            if let PollDecision::CheckAgainIn(delay) =
                policy.next(&mut state, Err(&transient), late)
            {
                last = delay;
            }
        }
        assert_eq!(last, Duration::from_secs(300));
    }

    #[test]
    fn not_found_is_retried_then_given_up() {
        let policy = no_jitter(PollPolicy::foxreload());
        let mut state = PollState::new(&policy, t0());
        let missing = CheckError::NotFound("no such order".into());
        for attempt in 1..=3 {
            assert!(
                matches!(
                    policy.next(&mut state, Err(&missing), t0()),
                    PollDecision::CheckAgainIn(_)
                ),
                "attempt {attempt}"
            );
        }
        assert_eq!(
            policy.next(&mut state, Err(&missing), t0()),
            PollDecision::GiveUp(GiveUpReason::NotFound)
        );

        let zero_retries = PollPolicy {
            not_found_retries: 0,
            ..policy
        };
        let mut state = PollState::new(&zero_retries, t0());
        assert_eq!(
            zero_retries.next(&mut state, Err(&missing), t0()),
            PollDecision::GiveUp(GiveUpReason::NotFound)
        );
    }

    #[test]
    fn a_found_payment_resets_the_not_found_count() {
        let policy = PollPolicy::foxreload();
        let mut state = PollState::new(&policy, t0());
        let missing = CheckError::NotFound("x".into());
        for _ in 0..3 {
            policy.next(&mut state, Err(&missing), t0());
        }
        policy.next(&mut state, Ok(&obs(PaymentStatus::Pending, "active")), t0());
        assert!(matches!(
            policy.next(&mut state, Err(&missing), t0()),
            PollDecision::CheckAgainIn(_)
        ));
    }

    #[test]
    fn permanent_errors_give_up_at_once() {
        let policy = PollPolicy::handcash();
        for error in [
            CheckError::Unauthorized("handcash rejected the configured credentials".into()),
            CheckError::Malformed {
                snippet: "<html>".into(),
            },
            CheckError::NotConfigured(Provider::HandCash),
        ] {
            let mut state = PollState::new(&policy, t0());
            assert_eq!(
                policy.next(&mut state, Err(&error), t0()),
                PollDecision::GiveUp(GiveUpReason::PermanentError),
                "{error:?}"
            );
        }
    }

    #[test]
    fn time_scale_applies_to_every_duration() {
        let policies = PollPolicies::with_time_scale(0.01);
        policies.validate().unwrap();
        let policy = no_jitter(policies.for_provider(Provider::Cashless));
        assert_eq!(policy.first_delay, Duration::from_millis(30));
        assert_eq!(policy.max_delay, Duration::from_millis(300));
        assert_eq!(policy.fast_window, Duration::from_secs(6));
        assert_eq!(policy.grace_interval, Duration::from_secs(3));
        assert_eq!(policy.deadline, Duration::from_secs(864));
        let mut state = PollState::new(&policy, t0());
        let delays = run_pending(&policy, &mut state, 8);
        assert_delays_close(
            &delays,
            &[0.03, 0.045, 0.0675, 0.10125, 0.151875, 0.2278125, 0.3, 0.3],
        );
        // Tiny scales still never produce a zero delay.
        let tiny = PollPolicy::cashless().scaled(1e-12);
        assert!(tiny.first_delay >= MIN_SCALED_DELAY);
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let policy = PollPolicy::cashless();
        let mut rng = StdRng::seed_from_u64(42);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let mut state = PollState::new(&policy, t0());
            let decision = policy.next_with_rng(
                &mut state,
                Ok(&obs(PaymentStatus::Pending, "NOT_PAID")),
                t0(),
                &mut rng,
            );
            let PollDecision::CheckAgainIn(delay) = decision else {
                panic!("{decision:?}");
            };
            assert!(delay >= secs(2.7) && delay <= secs(3.3), "{delay:?}");
            seen.insert(delay);
        }
        assert!(
            seen.len() > 100,
            "jitter should vary: {} values",
            seen.len()
        );
    }

    #[test]
    fn validation_rejects_nonsense() {
        let ok = PollPolicy::cashless();
        let bad = [
            PollPolicy {
                first_delay: Duration::ZERO,
                ..ok.clone()
            },
            PollPolicy {
                multiplier: 0.5,
                ..ok.clone()
            },
            PollPolicy {
                multiplier: f64::NAN,
                ..ok.clone()
            },
            PollPolicy {
                max_delay: Duration::from_secs(1),
                ..ok.clone()
            },
            PollPolicy {
                jitter: 1.5,
                ..ok.clone()
            },
            PollPolicy {
                deadline: Duration::ZERO,
                ..ok.clone()
            },
        ];
        for policy in bad {
            assert!(policy.validate().is_err(), "{policy:?}");
        }
        let error = PollPolicies::with_time_scale(0.0).validate().unwrap_err();
        assert_eq!(error.field, "time_scale");
        let policies = PollPolicies {
            foxreload: PollPolicy {
                jitter: -1.0,
                ..PollPolicy::foxreload()
            },
            ..PollPolicies::default()
        };
        let error = policies.validate().unwrap_err();
        assert_eq!(error.provider, Some(Provider::FoxReload));
        assert_eq!(
            error.to_string(),
            "invalid poll policy for foxreload: jitter must be a fraction in [0, 1)"
        );
    }

    #[test]
    fn serde_uses_humane_durations_and_defaults() {
        let policies: PollPolicies = serde_json::from_value(serde_json::json!({
            "time_scale": 0.5,
            "foxreload": {
                "first_delay": "2s",
                "multiplier": 2.0,
                "max_delay": 10000,
                "fast_window": "3m"
            }
        }))
        .unwrap();
        assert_eq!(policies.time_scale, 0.5);
        assert_eq!(policies.cashless, PollPolicy::cashless());
        let fox = &policies.foxreload;
        assert_eq!(fox.first_delay, Duration::from_secs(2));
        assert_eq!(fox.max_delay, Duration::from_secs(10));
        assert_eq!(fox.deadline, Duration::from_secs(86_400));
        assert_eq!(fox.jitter, 0.1);
        let json = serde_json::to_value(PollPolicy::cashless()).unwrap();
        assert_eq!(json["first_delay"], "3s");
        assert_eq!(json["fast_window"], "10m");
        assert_eq!(json["deadline"], "1d");
        let back: PollPolicy = serde_json::from_value(json).unwrap();
        assert_eq!(back, PollPolicy::cashless());
    }

    #[test]
    fn state_round_trips_through_serde() {
        let policy = PollPolicy::cashless();
        let mut state = PollState::new(&policy, t0());
        policy.next(
            &mut state,
            Ok(&obs(PaymentStatus::Pending, "NOT_PAID")),
            t0(),
        );
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<PollState>(&json).unwrap(), state);
    }
}
