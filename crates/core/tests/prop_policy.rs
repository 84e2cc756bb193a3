//! Property tests of the poll policy state machine: whatever the policy (within validation), the
//! persisted state and the sequence of check outcomes, it never panics, never schedules a check
//! past the deadline, stops once the deadline has passed, and a partial payment (any progress)
//! resets the delay to the first one.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use paywatch_core::{CheckError, Observation, PaymentStatus, PollDecision, PollPolicy, PollState};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_738_000_000, 0).expect("valid instant")
}

fn ms(range: std::ops::RangeInclusive<u64>) -> impl Strategy<Value = Duration> {
    range.prop_map(Duration::from_millis)
}

prop_compose! {
    /// Any policy that passes validation.
    fn policy()(
        first_delay in ms(1..=10_000),
        extra_max in ms(0..=120_000),
        multiplier in 1.0f64..4.0,
        jitter in prop_oneof![Just(0.0), 0.0f64..0.99],
        fast_window in ms(0..=3_600_000),
        grace_interval in ms(1..=600_000),
        deadline in ms(1..=86_400_000),
        not_found_retries in 0u32..5,
    ) -> PollPolicy {
        let policy = PollPolicy {
            first_delay,
            multiplier,
            max_delay: first_delay + extra_max,
            jitter,
            fast_window,
            grace_interval,
            deadline,
            not_found_retries,
        };
        policy.validate().expect("the strategy only makes valid policies");
        policy
    }
}

/// One check's outcome: an observation (status and raw string) or an error.
#[derive(Debug, Clone)]
enum Outcome {
    Seen(PaymentStatus, &'static str),
    Failed(CheckError),
}

fn outcome() -> impl Strategy<Value = Outcome> {
    let raw = prop::sample::select(vec!["pending", "PARTIALLY_PAID", "paid", "processing", "x"]);
    prop_oneof![
        6 => (prop::sample::select(PaymentStatus::ALL.to_vec()), raw).prop_map(|(s, r)| Outcome::Seen(s, r)),
        1 => prop::option::of(prop_oneof![ms(0..=600_000), Just(Duration::MAX)])
            .prop_map(|retry_after| Outcome::Failed(CheckError::RateLimited { retry_after })),
        1 => Just(Outcome::Failed(CheckError::Transient("timeout".into()))),
        1 => Just(Outcome::Failed(CheckError::NotFound("gone".into()))),
        1 => Just(Outcome::Failed(CheckError::Unauthorized("bad key".into()))),
    ]
}

fn decide(
    policy: &PollPolicy,
    state: &mut PollState,
    outcome: &Outcome,
    now: DateTime<Utc>,
    rng: &mut StdRng,
) -> PollDecision {
    match outcome {
        Outcome::Seen(status, raw) => {
            let observation = Observation::new(*status, *raw, now);
            policy.next_with_rng(state, Ok(&observation), now, rng)
        }
        Outcome::Failed(error) => policy.next_with_rng(state, Err(error), now, rng),
    }
}

fn after(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A whole polling run, checks landing late by up to 2 s each.
    #[test]
    fn a_run_never_schedules_past_the_deadline_and_stops_after_it(
        policy in policy(),
        outcomes in prop::collection::vec(outcome(), 1..60),
        lateness in prop::collection::vec(ms(0..=2_000), 60),
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut state = PollState::new(&policy, t0());
        let deadline_at = policy.deadline_at(&state);
        let mut now = t0();
        for (outcome, late) in outcomes.iter().zip(&lateness) {
            let decision = decide(&policy, &mut state, outcome, now, &mut rng);
            match decision {
                PollDecision::CheckAgainIn(delay) => {
                    prop_assert!(now < deadline_at, "rescheduled at {now} after the deadline {deadline_at}");
                    prop_assert!(after(now, delay) <= deadline_at, "{delay:?} from {now} passes {deadline_at}");
                    now = after(after(now, delay), *late);
                }
                PollDecision::Terminal(status) => {
                    prop_assert!(status.is_terminal());
                    prop_assert!(matches!(outcome, Outcome::Seen(s, _) if *s == status));
                    break;
                }
                PollDecision::GiveUp(_) => break,
            }
        }
    }

    /// Any state read back from Redis (clock jumps, odd delays, counters at their limits).
    #[test]
    fn any_persisted_state_gives_a_decision_within_the_deadline(
        policy in policy(),
        started_offset_s in -10_000_000i64..10_000_000,
        fast_offset_s in -10_000_000i64..10_000_000,
        current_delay in prop_oneof![ms(0..=10_000_000), Just(Duration::MAX), Just(Duration::ZERO)],
        errors_in_row in prop_oneof![0u32..40, Just(u32::MAX)],
        not_found_in_row in prop_oneof![0u32..10, Just(u32::MAX)],
        checks in prop_oneof![0u32..10, Just(u32::MAX)],
        last_status in prop::option::of(prop::sample::select(PaymentStatus::ALL.to_vec())),
        outcome in outcome(),
        seed in any::<u64>(),
    ) {
        let now = t0();
        let mut state = PollState {
            checks,
            started_at: now + TimeDelta::seconds(started_offset_s),
            current_delay,
            last_status,
            last_raw_status: last_status.map(|s| s.to_string()),
            errors_in_row,
            not_found_in_row,
            fast_since: now + TimeDelta::seconds(fast_offset_s),
        };
        let deadline_at = policy.deadline_at(&state);
        let mut rng = StdRng::seed_from_u64(seed);
        if let PollDecision::CheckAgainIn(delay) = decide(&policy, &mut state, &outcome, now, &mut rng) {
            prop_assert!(now < deadline_at);
            prop_assert!(after(now, delay) <= deadline_at);
        }
    }

    /// Progress (a partial payment after pending, or any other change) restarts the fast phase
    /// at the first delay, however far the backoff had grown.
    #[test]
    fn a_partial_payment_resets_to_the_first_delay(
        policy in policy(),
        pending_checks in 0usize..30,
        step in ms(0..=5_000),
    ) {
        let policy = PollPolicy { jitter: 0.0, fast_window: policy.fast_window.max(Duration::from_millis(1)), ..policy };
        let mut rng = StdRng::seed_from_u64(7);
        let mut state = PollState::new(&policy, t0());
        let deadline_at = policy.deadline_at(&state);
        let mut now = t0();
        for _ in 0..pending_checks {
            let seen = Outcome::Seen(PaymentStatus::Pending, "NOT_PAID");
            match decide(&policy, &mut state, &seen, now, &mut rng) {
                PollDecision::CheckAgainIn(_) => now = after(now, step),
                _ => break,
            }
        }
        let partial = Outcome::Seen(PaymentStatus::PartiallyPaid, "PARTIALLY_PAID");
        let decision = decide(&policy, &mut state, &partial, now, &mut rng);
        if now >= deadline_at {
            prop_assert!(matches!(decision, PollDecision::GiveUp(_)), "{decision:?}");
        } else {
            let remaining = (deadline_at - now).to_std().expect("before the deadline");
            prop_assert_eq!(decision, PollDecision::CheckAgainIn(policy.first_delay.min(remaining)));
            prop_assert_eq!(state.fast_since, now);
        }
    }
}
