//! Properties of the planner over arbitrary histories and settings.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::schedule::AdaptivePolicy;
use crate::schedule::histogram::{BINS, FinalTimes};
use crate::schedule::plan::{Budget, Plan, PlanConfig};
use crate::{CheckError, Observation, PaymentStatus, PollDecision, PollPolicy, PollState};

fn histories() -> impl Strategy<Value = FinalTimes> {
    (
        prop::collection::vec((0usize..BINS - 20, 1u64..500), 1..12),
        0u64..300,
    )
        .prop_map(|(bins, unresolved)| {
            let fields = bins
                .into_iter()
                .map(|(b, n)| (format!("paid:{b}"), n as i64))
                .chain([("unresolved:140".to_owned(), unresolved as i64)]);
            FinalTimes::from_fields(fields)
        })
}

fn configs() -> impl Strategy<Value = PlanConfig> {
    (60u64..21_600, 10u64..3_600, 1u64..5).prop_map(|(deadline, max, min)| PlanConfig {
        budget: Budget::Calls(10.0),
        deadline: Duration::from_secs(deadline),
        max_interval: Duration::from_secs(max.max(min)),
        min_interval: Duration::from_secs(min),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn next_checks_are_ahead_within_the_deadline_and_the_longest_wait(
        times in histories(),
        config in configs(),
        budget in 1.0f64..200.0,
        ages in prop::collection::vec(0.0f64..30_000.0, 1..20),
    ) {
        let config = PlanConfig { budget: Budget::Calls(budget), ..config };
        let plan = Plan::build(&times, &config, &PollPolicy::cashless());
        let deadline = config.deadline.as_secs_f64();
        prop_assert!((plan.deadline() - deadline).abs() < 1e-9);
        let max = config.max_interval.as_secs_f64();
        for age in ages {
            match plan.next_check_after(age) {
                None => prop_assert!(age >= deadline),
                Some(at) => {
                    prop_assert!(at > age, "{at} <= {age}");
                    prop_assert!(at <= deadline + 1e-9, "{at} > {deadline}");
                    let min = config.min_interval.as_secs_f64();
                    prop_assert!(at - age >= min - 1e-9 || at == deadline, "{at} - {age} < {min}");
                    // The longest wait holds, except that the grid cannot place a check
                    // closer than its own spacing (a quarter of the longest wait).
                    prop_assert!(at - age <= max * 1.25 + min + 1e-9, "{at} - {age} > {max}");
                }
            }
        }
        let ages = plan.ages();
        prop_assert_eq!(ages[0], 0.0);
        prop_assert!((ages[ages.len() - 1] - deadline).abs() < 1e-9);
        for pair in ages.windows(2) {
            prop_assert!(pair[1] > pair[0]);
            prop_assert!(pair[1] - pair[0] <= max + 1e-9 || pair[1] - pair[0] <= max / 4.0 + config.min_interval.as_secs_f64());
        }
    }

    #[test]
    fn the_budget_is_respected_and_more_budget_never_means_more_lag(
        times in histories(),
        config in configs(),
        small in 1.0f64..60.0,
        extra in 0.0f64..100.0,
    ) {
        let fixed = PollPolicy::cashless();
        let cheapest = Plan::build(&times, &PlanConfig { budget: Budget::Calls(0.0), ..config.clone() }, &fixed)
            .prediction();
        let a = Plan::build(&times, &PlanConfig { budget: Budget::Calls(small), ..config.clone() }, &fixed)
            .prediction();
        let b = Plan::build(&times, &PlanConfig { budget: Budget::Calls(small + extra), ..config.clone() }, &fixed)
            .prediction();
        // Within budget, or as cheap as the longest wait allows when the budget cannot be met.
        prop_assert!(a.calls_per_order <= small + 1e-9 || a.calls_per_order <= cheapest.calls_per_order + 1e-9, "{a:?} {cheapest:?}");
        prop_assert!(b.calls_per_order <= small + extra + 1e-9 || b.calls_per_order <= cheapest.calls_per_order + 1e-9);
        prop_assert!(b.mean_lag <= a.mean_lag + 1e-6, "{small}+{extra}: {a:?} vs {b:?}");
    }

    #[test]
    fn adaptive_decisions_never_pass_the_deadline(
        times in histories(),
        config in configs(),
        budget in 1.0f64..100.0,
        seed in any::<u64>(),
        steps in prop::collection::vec((0u8..4, 0u64..5_000), 1..40),
    ) {
        let config = PlanConfig { budget: Budget::Calls(budget), ..config };
        let plan = Plan::build(&times, &config, &PollPolicy::cashless());
        let fixed = PollPolicy { deadline: config.deadline, ..PollPolicy::cashless() };
        let adaptive = AdaptivePolicy { fixed: &fixed, plan: Some(&plan), time_scale: 1.0 };
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let mut state = PollState::new(&fixed, t0);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut now = t0;
        for (kind, extra_ms) in steps {
            let pending = Observation::new(PaymentStatus::Pending, "NOT_PAID", now);
            let partial = Observation::new(PaymentStatus::PartiallyPaid, "PARTIALLY_PAID", now);
            let error = CheckError::Transient("x".into());
            let outcome = match kind {
                0 | 1 => Ok(&pending),
                2 => Ok(&partial),
                _ => Err(&error),
            };
            match adaptive.next_with_rng(&mut state, outcome, now, &mut rng) {
                PollDecision::CheckAgainIn(delay) => {
                    prop_assert!(now + TimeDelta::from_std(delay).unwrap() <= fixed.deadline_at(&state));
                    // Sometimes the check runs late (a deferral, a busy fleet).
                    now += TimeDelta::from_std(delay).unwrap() + TimeDelta::milliseconds(extra_ms as i64);
                }
                PollDecision::GiveUp(_) | PollDecision::Terminal(_) => break,
            }
        }
    }
}
