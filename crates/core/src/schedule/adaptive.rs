//! [`AdaptivePolicy`]: the fixed [`PollPolicy`] with its regular waits replaced by a learned
//! [`Plan`]'s, where the plan applies.
//!
//! Everything that is not "the payment is still open, as it was" stays with the fixed policy:
//! terminal answers, errors and their backoff, `Retry-After`, not-found retries, the deadline,
//! and the fast window reopened by progress (a partial payment is the payer acting right now,
//! which no history of other orders knows better). Without a plan (too little history yet) the
//! policy is exactly the fixed one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::adapters::CheckError;
use crate::observation::Observation;
use crate::policy::{PollDecision, PollPolicy, PollState};
use crate::provider::Provider;
use crate::schedule::plan::Plan;

/// The provider's own limit on how long a payment stays payable, where its documents give one:
/// MiracleCash prompts expire after a 24-hour window. Checking past it can only see `expired`.
pub fn provider_expiry(provider: Provider) -> Option<Duration> {
    match provider {
        Provider::MiracleCash => Some(Duration::from_secs(24 * 60 * 60)),
        // A declared provider's expiry is its policy's deadline; none is known beyond it.
        Provider::Cashless | Provider::HandCash | Provider::FoxReload | Provider::Declared(_) => {
            None
        }
    }
}

/// The fixed policy, steered by a plan when there is one.
#[derive(Debug, Clone, Copy)]
pub struct AdaptivePolicy<'a> {
    /// The fixed (seed) policy, already time-scaled.
    pub fixed: &'a PollPolicy,
    /// The learned plan, in unscaled seconds; `None` until there is enough history.
    pub plan: Option<&'a Plan>,
    /// The time scale of `fixed` (1.0 in production): plan ages are multiplied by it.
    pub time_scale: f64,
}

impl AdaptivePolicy<'_> {
    /// Decides what to do after a check, updating `state` (see [`PollPolicy::next`]).
    pub fn next(
        &self,
        state: &mut PollState,
        outcome: Result<&Observation, &CheckError>,
        now: DateTime<Utc>,
    ) -> PollDecision {
        self.next_with_rng(state, outcome, now, &mut rand::rng())
    }

    /// [`AdaptivePolicy::next`] with a caller-supplied RNG.
    pub fn next_with_rng<R: Rng + ?Sized>(
        &self,
        state: &mut PollState,
        outcome: Result<&Observation, &CheckError>,
        now: DateTime<Utc>,
        rng: &mut R,
    ) -> PollDecision {
        let decision = self.fixed.next_with_rng(state, outcome, now, rng);
        let (Some(plan), PollDecision::CheckAgainIn(fixed_delay), Ok(_)) =
            (self.plan, decision, outcome)
        else {
            return decision;
        };
        if self.fixed.reopened_by_progress(state, now) {
            // The payer is acting now: check at the policy's fastest pace, without the fixed
            // schedule's backoff, until its fast window closes. History knows nothing better.
            let remaining = (self.fixed.deadline_at(state) - now)
                .to_std()
                .unwrap_or(Duration::ZERO);
            let fast = self.fixed.jitter_delay(self.fixed.first_delay, rng);
            return PollDecision::CheckAgainIn(fast.min(remaining));
        }
        let scale_factor = if self.time_scale > 0.0 && self.time_scale.is_finite() {
            self.time_scale
        } else {
            1.0
        };
        let age = (now - state.started_at).as_seconds_f64().max(0.0) / scale_factor;
        let Some(at) = plan.next_check_after(age) else {
            return decision;
        };
        let wait =
            Duration::try_from_secs_f64((at - age).max(0.0) * scale_factor).unwrap_or(fixed_delay);
        let jittered = self
            .fixed
            .jitter_delay(wait, rng)
            .max(Duration::from_millis(1));
        let remaining = (self.fixed.deadline_at(state) - now)
            .to_std()
            .unwrap_or(Duration::ZERO);
        PollDecision::CheckAgainIn(jittered.min(remaining))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PaymentStatus;
    use crate::schedule::histogram::FinalTimes;
    use crate::schedule::plan::{Budget, PlanConfig};

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-28T14:30:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn plan() -> Plan {
        let mut times = FinalTimes::new();
        for _ in 0..900 {
            times.record(PaymentStatus::Paid, Duration::from_secs(20));
        }
        for _ in 0..100 {
            times.record(PaymentStatus::Unresolved, Duration::from_secs(86_400));
        }
        Plan::build(
            &times,
            &PlanConfig {
                budget: Budget::Calls(10.0),
                deadline: Duration::from_secs(86_400),
                max_interval: Duration::from_secs(900),
                min_interval: Duration::from_secs(1),
            },
            &PollPolicy::cashless(),
        )
    }

    fn no_jitter(p: PollPolicy) -> PollPolicy {
        PollPolicy { jitter: 0.0, ..p }
    }

    #[test]
    fn without_a_plan_it_is_the_fixed_policy() {
        let fixed = no_jitter(PollPolicy::cashless());
        let adaptive = AdaptivePolicy {
            fixed: &fixed,
            plan: None,
            time_scale: 1.0,
        };
        let pending = Observation::new(PaymentStatus::Pending, "NOT_PAID", t0());
        let (mut a, mut b) = (PollState::new(&fixed, t0()), PollState::new(&fixed, t0()));
        let mut now = t0();
        for _ in 0..30 {
            let x = adaptive.next(&mut a, Ok(&pending), now);
            let y = fixed.next(&mut b, Ok(&pending), now);
            assert_eq!(x, y);
            let PollDecision::CheckAgainIn(d) = x else {
                break;
            };
            now += chrono::TimeDelta::from_std(d).unwrap();
        }
    }

    #[test]
    fn the_plan_sets_the_waits_and_progress_reopens_fast_checks() {
        let plan = plan();
        let fixed = no_jitter(PollPolicy::cashless());
        let adaptive = AdaptivePolicy {
            fixed: &fixed,
            plan: Some(&plan),
            time_scale: 1.0,
        };
        let pending = Observation::new(PaymentStatus::Pending, "NOT_PAID", t0());
        let mut state = PollState::new(&fixed, t0());
        let first = adaptive.next(&mut state, Ok(&pending), t0());
        let expected = plan.next_check_after(0.0).unwrap();
        assert_eq!(
            first,
            PollDecision::CheckAgainIn(Duration::from_secs_f64(expected))
        );
        // Progress: checks at the policy's fastest pace from the progress on.
        let at = t0() + chrono::TimeDelta::seconds(7200);
        let partial = Observation::new(PaymentStatus::PartiallyPaid, "PARTIALLY_PAID", at);
        assert_eq!(
            adaptive.next(&mut state, Ok(&partial), at),
            PollDecision::CheckAgainIn(Duration::from_secs(3))
        );
        // And again, without the fixed schedule's backoff, while the reopened window lasts.
        let next = at + chrono::TimeDelta::seconds(3);
        let again = Observation::new(PaymentStatus::PartiallyPaid, "PARTIALLY_PAID", next);
        assert_eq!(
            adaptive.next(&mut state, Ok(&again), next),
            PollDecision::CheckAgainIn(Duration::from_secs(3))
        );
        // Errors keep their own backoff.
        let transient = CheckError::Transient("x".into());
        let later = at + chrono::TimeDelta::seconds(3600);
        assert_eq!(
            adaptive.next(&mut state, Err(&transient), later),
            PollDecision::CheckAgainIn(Duration::from_secs(3))
        );
    }

    #[test]
    fn time_scale_shrinks_the_plan() {
        let plan = plan();
        let fixed = no_jitter(PollPolicy::cashless().scaled(0.01));
        let adaptive = AdaptivePolicy {
            fixed: &fixed,
            plan: Some(&plan),
            time_scale: 0.01,
        };
        let pending = Observation::new(PaymentStatus::Pending, "NOT_PAID", t0());
        let mut state = PollState::new(&fixed, t0());
        let PollDecision::CheckAgainIn(d) = adaptive.next(&mut state, Ok(&pending), t0()) else {
            panic!("expected a wait");
        };
        let expected = plan.next_check_after(0.0).unwrap() * 0.01;
        assert!(
            (d.as_secs_f64() - expected).abs() < 1e-6,
            "{d:?} vs {expected}"
        );
    }

    #[test]
    fn miraclecash_prompts_expire_after_a_day() {
        assert_eq!(
            provider_expiry(Provider::MiracleCash),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(provider_expiry(Provider::Cashless), None);
    }
}
