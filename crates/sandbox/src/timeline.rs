//! Payment timelines: which raw provider status a payment shows how long after its creation.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::SandboxError;

/// One step of a payment's scripted life, as given to the admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineStep {
    /// Milliseconds after creation (before `time_scale` is applied) when this step takes effect.
    pub after_ms: u64,
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
            status: status.into(),
            fields: None,
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
                status: s.status,
                fields: s.fields,
            })
            .collect();
        steps.sort_by_key(|s| s.at);
        Ok(Self { steps })
    }

    /// The last step whose offset has elapsed, if any has.
    pub(crate) fn current(&self, elapsed: Duration) -> Option<&ScheduledStep> {
        self.steps.iter().take_while(|s| s.at <= elapsed).last()
    }

    /// The fields of every elapsed step merged in order, so later steps override earlier ones.
    pub(crate) fn fields(&self, elapsed: Duration) -> Map<String, Value> {
        let mut merged = Map::new();
        for step in self.steps.iter().take_while(|s| s.at <= elapsed) {
            if let Some(fields) = &step.fields {
                merged.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        merged
    }

    /// The first step showing `status`, which is when a webhook for it is due.
    pub(crate) fn first_with_status(&self, status: &str) -> Option<&ScheduledStep> {
        self.steps.iter().find(|s| s.status == status)
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
            t.current(Duration::from_millis(ms))
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
        assert!(t.current(Duration::from_millis(499)).is_none());
    }

    #[test]
    fn offsets_are_scaled_and_sorted() {
        let t = timeline(&[(2000, "late"), (1000, "early")], 0.01);
        assert_eq!(
            t.current(Duration::from_millis(10))
                .map(|s| s.status.as_str()),
            Some("early")
        );
        assert_eq!(
            t.current(Duration::from_millis(20))
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
        let merged = t.fields(Duration::from_millis(10));
        assert_eq!(merged.get("a"), Some(&Value::from(1)));
        assert_eq!(merged.get("b"), Some(&Value::from(2)));
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
