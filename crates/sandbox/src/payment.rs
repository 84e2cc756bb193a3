//! Payments the sandbox knows about: how the admin API describes them and how they are stored.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::error::SandboxError;
use crate::faults::{Fault, FaultList};
use crate::providers::{self, Provider};
use crate::timeline::{ScheduledStep, Timeline, TimelineStep};

/// A payment to create, as accepted by `POST /_admin/payments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPayment {
    /// Which provider serves it.
    pub provider: Provider,
    /// Its id; a provider-looking one is generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its amount in the provider's currency; a provider-typical default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    /// The merchant's reference (Cashless `reference`, HandCash `customParameters.reference`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Raw statuses over time; an empty timeline stays in the provider's initial status.
    #[serde(default)]
    pub timeline: Vec<TimelineStep>,
    /// Faults armed on this payment from the start.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Whether to emit a webhook when paid (default true; only Cashless and HandCash have them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<bool>,
}

impl NewPayment {
    /// A payment for `provider` with a generated id and an empty timeline.
    pub fn new(provider: Provider) -> Self {
        Self {
            provider,
            id: None,
            amount: None,
            reference: None,
            timeline: Vec::new(),
            faults: Vec::new(),
            webhook: None,
        }
    }

    /// Sets the id instead of generating one.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the amount.
    pub fn amount(mut self, amount: f64) -> Self {
        self.amount = Some(amount);
        self
    }

    /// Sets the merchant reference.
    pub fn reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// Appends a timeline step switching to `status` after `after_ms` (unscaled) milliseconds.
    pub fn step(mut self, after_ms: u64, status: impl Into<String>) -> Self {
        self.timeline.push(TimelineStep::new(after_ms, status));
        self
    }

    /// Appends a timeline step that also merges `fields` into the response.
    pub fn step_with_fields(
        mut self,
        after_ms: u64,
        status: impl Into<String>,
        fields: Map<String, Value>,
    ) -> Self {
        self.timeline
            .push(TimelineStep::new(after_ms, status).with_fields(fields));
        self
    }

    /// Arms a fault on the payment from the start.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// Turns webhook emission on or off.
    pub fn webhook(mut self, enabled: bool) -> Self {
        self.webhook = Some(enabled);
        self
    }
}

/// The answer to a successful creation: `{"provider", "id"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedPayment {
    /// The payment's provider.
    pub provider: Provider,
    /// The payment's id (generated if none was given).
    pub id: String,
}

/// What the sandbox knows about one payment, as served by `GET /_admin/payments/{provider}/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentStats {
    /// The payment's provider.
    pub provider: Provider,
    /// The payment's id.
    pub id: String,
    /// The raw status the provider endpoint shows right now.
    pub status: String,
    /// How many status requests for this payment arrived, whatever their outcome.
    pub checks: u64,
    /// When the payment was created.
    pub created_at: DateTime<Utc>,
}

/// Provider-specific values generated once at creation so every poll sees the same ones.
#[derive(Debug, Clone)]
pub(crate) enum Generated {
    Cashless { mobile: String },
    HandCash { transaction_id: String },
    MiracleCash,
    FoxReload { item_id: String, codes: Vec<String> },
}

/// A stored payment.
#[derive(Debug)]
pub(crate) struct PaymentRecord {
    /// Unique across the sandbox's life, so a webhook scheduled for a payment that was reset and
    /// re-created under the same id does not fire for the new one.
    pub(crate) serial: u64,
    pub(crate) provider: Provider,
    pub(crate) id: String,
    pub(crate) amount: f64,
    pub(crate) reference: Option<String>,
    pub(crate) timeline: Timeline,
    pub(crate) faults: FaultList,
    pub(crate) webhook: bool,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) created: Instant,
    pub(crate) checks: u64,
    pub(crate) generated: Generated,
    /// A pinned clock: the payment's age as set through the admin API (virtual-time
    /// simulations), instead of the time since it was created.
    pub(crate) pinned: Option<Duration>,
}

/// A payment as seen at one moment, which is what provider renderers work from.
#[derive(Debug)]
pub(crate) struct View<'a> {
    pub(crate) record: &'a PaymentRecord,
    pub(crate) elapsed: Duration,
    pub(crate) status: &'a str,
    pub(crate) step: Option<&'a ScheduledStep>,
}

impl PaymentRecord {
    pub(crate) fn build(
        spec: NewPayment,
        serial: u64,
        time_scale: f64,
    ) -> Result<Self, SandboxError> {
        let provider = spec.provider;
        let id = match spec.id {
            Some(id) => validate_id(id)?,
            None => provider.generate_id(),
        };
        let amount = spec.amount.unwrap_or_else(|| provider.default_amount());
        if !amount.is_finite() || amount < 0.0 {
            return Err(SandboxError::InvalidRequest(format!(
                "amount must be a finite number >= 0, got {amount}"
            )));
        }
        for fault in &spec.faults {
            fault.validate()?;
        }
        let mut faults = FaultList::default();
        faults.add(spec.faults);
        Ok(Self {
            serial,
            provider,
            amount,
            reference: spec.reference,
            timeline: Timeline::new(spec.timeline, time_scale)?,
            faults,
            webhook: provider.has_webhooks() && spec.webhook.unwrap_or(true),
            created_at: Utc::now(),
            created: Instant::now(),
            checks: 0,
            generated: providers::generate(provider),
            pinned: None,
            id,
        })
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.pinned.unwrap_or_else(|| self.created.elapsed())
    }

    /// The payment `elapsed` after creation, when it had answered `answered` status requests.
    pub(crate) fn view_at(&self, elapsed: Duration, answered: u64) -> View<'_> {
        let step = self.timeline.current(elapsed, answered);
        View {
            record: self,
            elapsed,
            status: step.map_or(self.provider.initial_status(), |s| s.status.as_str()),
            step,
        }
    }

    /// The provider's JSON body for this payment `elapsed` after creation with `answered` status
    /// requests answered before, step fields merged in.
    pub(crate) fn render_at(&self, elapsed: Duration, answered: u64) -> Value {
        let mut body = providers::render(&self.view_at(elapsed, answered));
        body.extend(self.timeline.fields(elapsed, answered));
        Value::Object(body)
    }

    pub(crate) fn stats(&self) -> PaymentStats {
        PaymentStats {
            provider: self.provider,
            id: self.id.clone(),
            status: self.view_at(self.elapsed(), self.checks).status.to_string(),
            checks: self.checks,
            created_at: self.created_at,
        }
    }
}

/// Ids end up in URL paths, so they must be one non-empty path segment.
fn validate_id(id: String) -> Result<String, SandboxError> {
    if id.is_empty()
        || id.len() > 200
        || id.contains(['/', '?', '#'])
        || id.chars().any(char::is_control)
    {
        return Err(SandboxError::InvalidRequest(format!(
            "payment id must be 1-200 characters without '/', '?', '#' or control characters, got {id:?}"
        )));
    }
    Ok(id)
}
