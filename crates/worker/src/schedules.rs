//! Adaptive polling in the worker: the fleet's shared history of when orders settle, and the
//! plans learned from it.
//!
//! Every worker records each order it finalizes (the run that won the final transition) as one
//! `HINCRBY` on its provider's histogram ([`keys::final_times`](crate::keys::final_times)): the
//! estimated time to final, unscaled, in a log-spaced bin per outcome. The hash has a bounded
//! number of fields whatever the traffic, so it needs no expiry and no clean-up. In `adaptive`
//! mode, each worker re-reads the histograms every `PAYWATCH_POLL_REFRESH` and, for a provider
//! with at least `PAYWATCH_POLL_MIN_SAMPLES` orders recorded, plans its checks
//! ([`Plan`]); until then, and in `fixed` mode, the seed policy decides alone.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use paywatch_core::schedule::{
    AdaptivePolicy, Budget, FinalTimes, Plan, PlanConfig, provider_expiry,
};
use paywatch_core::{
    CheckError, Observation, PaymentStatus, PollDecision, PollPolicies, PollPolicy, PollState,
    Provider,
};
use paywatch_queue::RedisConn;
use tokio::sync::watch;

/// How the worker spaces a pending order's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PollMode {
    /// The seed policies (docs/configuration.md): start fast, back off, check slowly to the deadline.
    #[default]
    Fixed,
    /// Checks placed by a plan learned from the provider's history (docs/polling.md).
    Adaptive,
}

/// The adaptive mode's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleConfig {
    /// Fixed or adaptive.
    pub mode: PollMode,
    /// What a plan may spend (or must achieve).
    pub budget: Budget,
    /// Orders a provider's history needs before its plan replaces the seed policy.
    pub min_samples: u64,
    /// How often the histograms are re-read and the plans rebuilt.
    pub refresh: Duration,
    /// The longest a plan may leave an open order unchecked (unscaled).
    pub max_interval: Duration,
}

/// Parses `PAYWATCH_POLL_BUDGET`: `fixed` (or `fixed*<share>`), a number of calls per order, or
/// `p90:<duration>`.
pub fn parse_budget(text: &str) -> Result<Budget, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("fixed") {
        return Ok(Budget::FixedShare(1.0));
    }
    if let Some(share) = text.strip_prefix("fixed*") {
        return match share.parse::<f64>() {
            Ok(share) if share.is_finite() && share > 0.0 => Ok(Budget::FixedShare(share)),
            _ => Err(format!(
                "{text:?}: the share of the fixed policy's calls must be a positive number"
            )),
        };
    }
    if let Some(lag) = text.strip_prefix("p90:") {
        let lag = paywatch_core::durations::parse_duration(lag).map_err(|e| e.to_string())?;
        if lag.is_zero() {
            return Err("the p90 lag target must be positive".into());
        }
        return Ok(Budget::P90Lag(lag.as_secs_f64()));
    }
    match text.parse::<f64>() {
        Ok(calls) if calls.is_finite() && calls >= 1.0 => Ok(Budget::Calls(calls)),
        _ => Err(format!(
            "{text:?} is not a budget: `fixed`, calls per order (a number >= 1) or `p90:<duration>`"
        )),
    }
}

/// When the payment most likely became final, as time since the order was created: halfway
/// between the last check that saw it open (or the order's creation) and the one that saw it
/// final — the middle of the only interval we know it fell in.
pub fn settled_after(
    previous_check_ms: i64,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Duration {
    let since = DateTime::from_timestamp_millis(previous_check_ms)
        .filter(|_| previous_check_ms > 0)
        .unwrap_or(created_at)
        .max(created_at);
    let open = (since - created_at).to_std().unwrap_or_default();
    let window = (now - since).to_std().unwrap_or_default();
    open + window / 2
}

/// Why the plans could not be refreshed (the current ones stay in force).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Reading the history failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The planning task died.
    #[error("planner task failed: {0}")]
    Planner(String),
}

/// The plans of every provider, shared by all check runs of a process; cheap to clone.
#[derive(Debug, Clone)]
pub struct Schedules {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ScheduleConfig,
    prefix: String,
    /// The policies at time scale 1: plans work in unscaled seconds.
    unscaled: PollPolicies,
    time_scale: f64,
    plans: RwLock<HashMap<Provider, Arc<Plan>>>,
}

impl Schedules {
    /// Schedules for the deployment under `prefix` polling with `policies`.
    pub fn new(config: ScheduleConfig, prefix: &str, policies: &PollPolicies) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                prefix: prefix.to_owned(),
                unscaled: PollPolicies {
                    time_scale: 1.0,
                    ..policies.clone()
                },
                time_scale: policies.time_scale,
                plans: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ScheduleConfig {
        &self.inner.config
    }

    /// The plan in force for `provider`, if adaptive mode has one.
    pub fn plan(&self, provider: Provider) -> Option<Arc<Plan>> {
        if self.inner.config.mode != PollMode::Adaptive {
            return None;
        }
        self.inner
            .plans
            .read()
            .ok()
            .and_then(|plans| plans.get(&provider).cloned())
    }

    /// Decides what to do after a check: the plan's wait where it applies, the fixed `policy`
    /// (time-scaled) otherwise.
    pub fn decide(
        &self,
        provider: Provider,
        policy: &PollPolicy,
        state: &mut PollState,
        outcome: Result<&Observation, &CheckError>,
        now: DateTime<Utc>,
    ) -> PollDecision {
        self.decide_with_rng(provider, policy, state, outcome, now, &mut rand::rng())
    }

    /// [`Schedules::decide`] with a caller-supplied RNG (for reproducible simulations).
    pub fn decide_with_rng<R: rand::Rng + ?Sized>(
        &self,
        provider: Provider,
        policy: &PollPolicy,
        state: &mut PollState,
        outcome: Result<&Observation, &CheckError>,
        now: DateTime<Utc>,
        rng: &mut R,
    ) -> PollDecision {
        let plan = self.plan(provider);
        AdaptivePolicy {
            fixed: policy,
            plan: plan.as_deref(),
            time_scale: self.inner.time_scale,
        }
        .next_with_rng(state, outcome, now, rng)
    }

    /// Records one order of `provider` that reached `outcome` after about `took` (real time;
    /// stored unscaled).
    pub async fn record(
        &self,
        conn: &RedisConn,
        provider: Provider,
        outcome: PaymentStatus,
        took: Duration,
    ) -> Result<(), redis::RedisError> {
        let (key, field) = self.history_count(provider, outcome, took);
        let mut conn = conn.clone();
        redis::cmd("HINCRBY")
            .arg(key)
            .arg(field)
            .arg(1)
            .query_async::<i64>(&mut conn)
            .await
            .map(drop)
    }

    /// The hash and field [`Schedules::record`] counts one order in (for a caller that writes
    /// it together with the order's final record).
    pub fn history_count(
        &self,
        provider: Provider,
        outcome: PaymentStatus,
        took: Duration,
    ) -> (String, String) {
        let secs = took.as_secs_f64() / self.inner.time_scale;
        (
            crate::keys::final_times(&self.inner.prefix, provider),
            paywatch_core::schedule::histogram::field(outcome, secs),
        )
    }

    /// `provider`'s recorded history.
    pub async fn history(
        &self,
        conn: &RedisConn,
        provider: Provider,
    ) -> Result<FinalTimes, redis::RedisError> {
        let mut conn = conn.clone();
        let fields: Vec<(String, i64)> = redis::cmd("HGETALL")
            .arg(crate::keys::final_times(&self.inner.prefix, provider))
            .query_async(&mut conn)
            .await?;
        Ok(FinalTimes::from_fields(fields))
    }

    /// The plan configuration for `provider`: up to its deadline, or its own expiry if sooner.
    pub fn plan_config(&self, provider: Provider) -> (PlanConfig, PollPolicy) {
        let fixed = self.inner.unscaled.for_provider(provider);
        let deadline =
            provider_expiry(provider).map_or(fixed.deadline, |expiry| expiry.min(fixed.deadline));
        let config = PlanConfig {
            budget: self.inner.config.budget,
            deadline,
            max_interval: self.inner.config.max_interval,
            min_interval: Duration::from_secs(1),
        };
        (config, fixed)
    }

    /// Re-reads every provider's history and rebuilds the plans of those with enough of it;
    /// returns how many providers have a plan.
    pub async fn refresh(&self, conn: &RedisConn) -> Result<usize, RefreshError> {
        for provider in Provider::ALL {
            let history = self.history(conn, provider).await?;
            let samples = history.total();
            if samples < self.inner.config.min_samples {
                continue;
            }
            let (config, fixed) = self.plan_config(provider);
            // Planning is a few milliseconds of arithmetic: off the async threads all the same.
            let plan = tokio::task::spawn_blocking(move || Plan::build(&history, &config, &fixed))
                .await
                .map_err(|e| RefreshError::Planner(e.to_string()))?;
            let p = plan.prediction();
            tracing::info!(
                provider = %provider,
                samples,
                calls_per_order = p.calls_per_order,
                mean_lag_s = p.mean_lag,
                p90_lag_s = p.p90_lag,
                "adaptive poll plan updated"
            );
            if let Ok(mut plans) = self.inner.plans.write() {
                plans.insert(provider, Arc::new(plan));
            }
        }
        Ok(self.inner.plans.read().map(|p| p.len()).unwrap_or(0))
    }

    /// Refreshes the plans every `PAYWATCH_POLL_REFRESH` until `stop` turns true.
    pub async fn run_refresh(self, conn: RedisConn, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.refresh(&conn).await {
                tracing::warn!(error = %e, "could not refresh the adaptive poll plans; keeping the current ones");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.refresh) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse() {
        assert_eq!(parse_budget("fixed"), Ok(Budget::FixedShare(1.0)));
        assert_eq!(parse_budget("fixed*0.5"), Ok(Budget::FixedShare(0.5)));
        assert_eq!(parse_budget("12.5"), Ok(Budget::Calls(12.5)));
        assert_eq!(parse_budget("p90:4500ms"), Ok(Budget::P90Lag(4.5)));
        for bad in [
            "0", "-3", "NaN", "p90:0s", "p90:soon", "lots", "fixed*0", "fixed*x",
        ] {
            assert!(parse_budget(bad).is_err(), "{bad}");
        }
    }
}
