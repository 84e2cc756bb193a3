//! Adaptive polling end to end: a worker records when orders settle into the provider's history
//! in Redis, and a worker in adaptive mode plans its checks from that history — real Redis, real
//! workers, the sandbox. No timing assertions: the schedule is read from the orders' own check
//! history and compared with what the planner makes of the same Redis hash.

use std::time::Duration;

use chrono::{DateTime, Utc};

use paywatch_core::schedule::{Budget, FinalTimes, Plan, PlanConfig};
use paywatch_core::{PaymentStatus, PollPolicy, Provider};
use paywatch_sandbox::NewPayment;
use paywatch_tests::stack::Stack;
use paywatch_tests::wait_for;
use serde_json::{Value, json};

const SCALE: f64 = 0.01;
const LEARNED: usize = 40;

fn delay_ms(entry: &Value) -> Option<u64> {
    entry["decision"]
        .as_str()?
        .strip_prefix("check again in ")?
        .strip_suffix("ms")?
        .parse()
        .ok()
}

async fn history(stack: &Stack) -> FinalTimes {
    let client = redis::Client::open(stack.redis.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = paywatch_worker::keys::final_times(&stack.prefix, Provider::Cashless);
    let fields: Vec<(String, i64)> = redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("HGETALL");
    FinalTimes::from_fields(fields)
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn order(id: &str, payment: &str) -> Value {
    json!({"order_id": id, "provider": "cashless", "payment_id": payment})
}

#[tokio::test]
async fn an_adaptive_worker_learns_from_the_fleets_history_and_plans_with_it() {
    let stack = Stack::start("adaptive").await;
    // History: a fixed-mode worker settles orders that all pay 40 s (unscaled) in: 400 ms on
    // the sandbox's real clock at the worker's time scale of 0.01.
    let fixed = stack.worker(&stack.worker_args(SCALE)).await;
    for i in 0..LEARNED {
        let bill = stack.payment(
            NewPayment::new(paywatch_sandbox::Provider::Cashless)
                .step(0, "NOT_PAID")
                .step(400, "FULLY_PAID"),
        );
        let (status, body) = stack.submit(&order(&format!("learn-{i}"), &bill)).await;
        assert_eq!(status, 202, "{body}");
    }
    for i in 0..LEARNED {
        stack
            .wait_status(
                &format!("learn-{i}"),
                PaymentStatus::Paid,
                Duration::from_secs(60),
            )
            .await;
    }
    fixed.stop().await;
    // Every settled order is in the history once, near where it settled (unscaled).
    let times = history(&stack).await;
    assert_eq!(times.total(), LEARNED as u64, "{:?}", times.fields());
    let finals = times.finals();
    let settled_in = |lo: f64, hi: f64| {
        finals
            .iter()
            .enumerate()
            .filter(|(b, _)| {
                let (l, h) = paywatch_core::schedule::histogram::bin_bounds(*b);
                l >= lo && h <= hi
            })
            .map(|(_, c)| c)
            .sum::<u64>()
    };
    // Most near 40 s: an order submitted late after its payment was scripted (a loaded machine)
    // legitimately settles sooner after its own creation.
    assert!(
        settled_in(15.0, 80.0) >= LEARNED as u64 * 3 / 4,
        "{:?}",
        times.fields()
    );

    // An adaptive worker plans from that history: what the planner makes of the same hash.
    let mut args = stack.worker_args(SCALE);
    args.extend(
        [
            "--poll-mode",
            "adaptive",
            "--poll-budget",
            "6",
            "--poll-min-samples",
            &LEARNED.to_string(),
            "--poll-refresh",
            "50ms",
        ]
        .map(String::from),
    );
    let adaptive = stack.worker(&args).await;
    let plan = Plan::build(
        &times,
        &PlanConfig {
            budget: Budget::Calls(6.0),
            deadline: Duration::from_secs(86_400),
            max_interval: Duration::from_secs(3600),
            min_interval: Duration::from_secs(1),
        },
        &PollPolicy::cashless(),
    );
    let fixed_ms = PollPolicy::cashless().first_delay.as_secs_f64() * 1000.0 * SCALE;
    // The plan waits for where payments happen; the seed policy starts at 3 s: far apart.
    let planned_ms = |age_s: f64| {
        let at = plan.next_check_after(age_s).expect("a next check");
        (at - age_s) * 1000.0 * SCALE
    };
    assert!(
        planned_ms(0.0) > fixed_ms * 3.0,
        "{} vs {fixed_ms}",
        planned_ms(0.0)
    );
    // The worker loads the plan shortly after it starts; until then a new order gets the seed
    // policy. Submit probes until one is planned, and check it got exactly the plan's wait for
    // the age it was checked at (within the policy's 10 % jitter).
    let mut probe = 0;
    let (wait, expected) = wait_for(
        "an order checked on the learned plan",
        Duration::from_secs(30),
        || {
            probe += 1;
            let id = format!("probe-{probe}");
            let stack = &stack;
            let planned_ms = &planned_ms;
            async move {
                let bill = stack.payment(
                    NewPayment::new(paywatch_sandbox::Provider::Cashless).step(0, "NOT_PAID"),
                );
                let (status, _) = stack.submit(&order(&id, &bill)).await;
                assert_eq!(status, 202);
                let (first, age_s) = wait_for(
                    "the probe's first check",
                    Duration::from_secs(30),
                    || async {
                        let view = stack.order(&id).await?;
                        let created = time(&view["created_at"])?;
                        let entry = view["history"]
                            .as_array()?
                            .iter()
                            .rev()
                            .find(|e| delay_ms(e).is_some())?
                            .clone();
                        let age = (time(&entry["at"])? - created).as_seconds_f64() / SCALE;
                        Some((delay_ms(&entry)? as f64, age))
                    },
                )
                .await;
                (first > fixed_ms * 1.5).then(|| (first, planned_ms(age_s)))
            }
        },
    )
    .await;
    assert!(
        (expected * 0.9 - 1.0..=expected * 1.1 + 1.0).contains(&wait),
        "first wait {wait} ms, the plan says {expected} ms"
    );
    adaptive.stop().await;
    stack.finish().await;
}
