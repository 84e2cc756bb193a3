//! Payment timelines: which raw provider status a payment shows how long after its creation, or
//! after how many status requests (so a benchmark can script "paid after N pending answers"
//! whatever its poll delays and however loaded the poller is).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::SandboxError;

/// One step of a payment's scripted life, as given to the admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineStep {
    /// Milliseconds after creation (before `time_scale` is applied) when this step takes effect.
    #[serde(default)]
    pub after_ms: u64,
    /// Status requests the payment must have answered before this step takes effect: with
    /// `Some(3)` the first three requests see the earlier steps and the fourth sees this one.
    /// Counted on top of `after_ms` (both must hold). Such a step sends no provider webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_checks: Option<u64>,
    /// The provider's raw status string; unknown strings are served verbatim.
    pub status: String,
    /// JSON merged into the provider's response once this step is reached (and kept afterwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Map<String, Value>>,
}

impl TimelineStep {
    /// A step switching to `status` `after_ms` milliseconds after creation.
    pub fn new(after_ms: u64, status: impl Into<String>) -> Self {
        Self {
            after_ms,
            after_checks: None,
            status: status.into(),
            fields: None,
        }
    }

    /// A step switching to `status` once the payment has answered `checks` status requests.
    pub fn after_checks(checks: u64, status: impl Into<String>) -> Self {
        Self {
            after_checks: Some(checks),
            ..Self::new(0, status)
        }
    }

    /// The same step, also merging `fields` (a JSON object) into the response.
    pub fn with_fields(mut self, fields: Map<String, Value>) -> Self {
        self.fields = Some(fields);
        self
    }
}

/// A step with its offset already scaled by the sandbox's time scale.
#[derive(Debug, Clone)]
pub(crate) struct ScheduledStep {
    pub(crate) at: Duration,
    /// Status requests answered before this step applies (0 for purely timed steps).
    pub(crate) after_checks: u64,
    pub(crate) status: String,
    pub(crate) fields: Option<Map<String, Value>>,
}

/// A payment's timeline in real (scaled) time, sorted by offset.
#[derive(Debug, Clone)]
pub(crate) struct Timeline {
    steps: Vec<ScheduledStep>,
}

impl Timeline {
    /// Scales and sorts `steps`; the sort is stable so equal offsets keep their given order.
    pub(crate) fn new(steps: Vec<TimelineStep>, time_scale: f64) -> Result<Self, SandboxError> {
        if let Some(step) = steps.iter().find(|s| s.status.is_empty()) {
            return Err(SandboxError::InvalidRequest(format!(
                "timeline step at after_ms={} has an empty status",
                step.after_ms
            )));
        }
        let mut steps: Vec<ScheduledStep> = steps
            .into_iter()
            .map(|s| ScheduledStep {
                at: scale(s.after_ms, time_scale),
                after_checks: s.after_checks.unwrap_or(0),
                status: s.status,
                fields: s.fields,
            })
            .collect();
        steps.sort_by_key(|s| s.at);
        Ok(Self { steps })
    }

    /// The steps in effect `elapsed` after creation, with `answered` status requests answered
    /// before the one being served, in timeline order.
    fn reached(
        &self,
        elapsed: Duration,
        answered: u64,
    ) -> impl Iterator<Item = &ScheduledStep> + '_ {
        self.steps
            .iter()
            .take_while(move |s| s.at <= elapsed)
            .filter(move |s| s.after_checks <= answered)
    }

    /// The last step in effect, if any is.
    pub(crate) fn current(&self, elapsed: Duration, answered: u64) -> Option<&ScheduledStep> {
        self.reached(elapsed, answered).last()
    }

    /// The fields of every step in effect merged in order, so later steps override earlier ones.
    pub(crate) fn fields(&self, elapsed: Duration, answered: u64) -> Map<String, Value> {
        let mut merged = Map::new();
        for step in self.reached(elapsed, answered) {
            if let Some(fields) = &step.fields {
                merged.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        merged
    }

    /// The first timed step showing `status`, which is when a webhook for it is due (a step
    /// waiting for status requests has no time of its own to send one at).
    pub(crate) fn first_with_status(&self, status: &str) -> Option<&ScheduledStep> {
        self.steps
            .iter()
            .find(|s| s.status == status && s.after_checks == 0)
    }

    /// The offset of the last step, so generated expiry times can stay clear of the timeline.
    pub(crate) fn end(&self) -> Duration {
        self.steps.last().map_or(Duration::ZERO, |s| s.at)
    }
}

/// Converts a millisecond offset to a scaled duration, saturating instead of panicking.
pub(crate) fn scale(ms: u64, time_scale: f64) -> Duration {
    // u64 -> f64 loses precision only beyond 2^53 ms (285,000 years), which no timeline needs.
    #[allow(clippy::cast_precision_loss)]
    let secs = ms as f64 / 1000.0 * time_scale;
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(steps: &[(u64, &str)], scale: f64) -> Timeline {
        let steps = steps
            .iter()
            .map(|&(ms, s)| TimelineStep::new(ms, s))
            .collect();
        Timeline::new(steps, scale).expect("valid timeline")
    }

    #[test]
    fn current_is_last_elapsed_step() {
        let t = timeline(&[(0, "a"), (1000, "b"), (2000, "c")], 1.0);
        let at = |ms| {
            t.current(Duration::from_millis(ms), 0)
                .map(|s| s.status.as_str())
        };
        assert_eq!(at(0), Some("a"));
        assert_eq!(at(999), Some("a"));
        assert_eq!(at(1000), Some("b"));
        assert_eq!(at(5000), Some("c"));
    }

    #[test]
    fn nothing_is_current_before_the_first_step() {
        let t = timeline(&[(500, "a")], 1.0);
        assert!(t.current(Duration::from_millis(499), 0).is_none());
    }

    #[test]
    fn offsets_are_scaled_and_sorted() {
        let t = timeline(&[(2000, "late"), (1000, "early")], 0.01);
        assert_eq!(
            t.current(Duration::from_millis(10), 0)
                .map(|s| s.status.as_str()),
            Some("early")
        );
        assert_eq!(
            t.current(Duration::from_millis(20), 0)
                .map(|s| s.status.as_str()),
            Some("late")
        );
    }

    #[test]
    fn fields_accumulate() {
        let mut f1 = Map::new();
        f1.insert("a".into(), Value::from(1));
        f1.insert("b".into(), Value::from(1));
        let mut f2 = Map::new();
        f2.insert("b".into(), Value::from(2));
        let steps = vec![
            TimelineStep::new(0, "x").with_fields(f1),
            TimelineStep::new(10, "y").with_fields(f2),
        ];
        let t = Timeline::new(steps, 1.0).expect("valid");
        let merged = t.fields(Duration::from_millis(10), 0);
        assert_eq!(merged.get("a"), Some(&Value::from(1)));
        assert_eq!(merged.get("b"), Some(&Value::from(2)));
    }

    #[test]
    fn counted_steps_wait_for_their_status_requests() {
        let steps = vec![
            TimelineStep::new(0, "NOT_PAID"),
            TimelineStep::after_checks(3, "FULLY_PAID"),
        ];
        let t = Timeline::new(steps, 1.0).expect("valid");
        let status = |answered| {
            t.current(Duration::from_secs(3600), answered)
                .map(|s| s.status.as_str())
        };
        assert_eq!(status(0), Some("NOT_PAID"));
        assert_eq!(status(2), Some("NOT_PAID"));
        assert_eq!(status(3), Some("FULLY_PAID"));
        assert_eq!(status(9), Some("FULLY_PAID"));
        // No time of its own: no webhook is scheduled for it.
        assert!(t.first_with_status("FULLY_PAID").is_none());
    }

    #[test]
    fn a_counted_step_also_waits_for_its_offset() {
        let mut step = TimelineStep::after_checks(1, "paid");
        step.after_ms = 1000;
        let t = Timeline::new(vec![TimelineStep::new(0, "pending"), step], 1.0).expect("valid");
        let status = |ms, answered| {
            t.current(Duration::from_millis(ms), answered)
                .map(|s| s.status.as_str())
        };
        assert_eq!(status(999, 5), Some("pending"));
        assert_eq!(status(1000, 0), Some("pending"));
        assert_eq!(status(1000, 1), Some("paid"));
    }

    #[test]
    fn after_checks_is_optional_in_json_and_after_ms_defaults_to_zero() {
        let step: TimelineStep =
            serde_json::from_str(r#"{"after_checks": 2, "status": "FULLY_PAID"}"#).expect("json");
        assert_eq!(step, TimelineStep::after_checks(2, "FULLY_PAID"));
        let plain = serde_json::to_string(&TimelineStep::new(5, "x")).expect("json");
        assert_eq!(plain, r#"{"after_ms":5,"status":"x"}"#);
    }

    #[test]
    fn huge_offsets_saturate() {
        assert_eq!(scale(u64::MAX, 1e300), Duration::MAX);
    }

    #[test]
    fn empty_status_is_rejected() {
        assert!(Timeline::new(vec![TimelineStep::new(0, "")], 1.0).is_err());
    }
}
