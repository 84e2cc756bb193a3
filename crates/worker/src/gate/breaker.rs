//! Circuit breakers per provider credential, fleet-wide: after a run of transient failures
//! (5xx, timeouts, connection errors) the provider's checks pause, one probe tests it when the
//! pause is over, and its answer closes the breaker or doubles the pause.
//!
//! The state lives in Redis (see [`crate::gate`]) so one worker's probe speaks for the whole
//! fleet and a provider that is down costs one call per pause, not one per worker. This module
//! holds the settings, the states and how a transition is announced (logged once, by the worker
//! that made it, and exported as a metric).

use std::fmt;
use std::time::Duration;

use paywatch_core::Provider;

/// The breaker's settings, the same for every provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive transient failures (fleet-wide) that open the breaker; 0 disables it.
    pub failures: u32,
    /// The first pause; each failed probe doubles it.
    pub first_pause: Duration,
    /// The longest pause.
    pub max_pause: Duration,
    /// How long the probe may take before another worker may probe instead.
    pub probe_lease: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            first_pause: Duration::from_secs(10),
            max_pause: Duration::from_secs(300),
            probe_lease: Duration::from_secs(30),
        }
    }
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// Calls wait until the pause is over.
    Open,
    /// One probe call is out; the others wait for its answer.
    HalfOpen,
}

impl CircuitState {
    /// The state from the scripts' code (0 closed, 1 open, 2 half open).
    pub(crate) fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }

    /// The metric's value: 0 closed, 1 half open, 2 open (higher is worse).
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        })
    }
}

/// Exports the state this process last saw for `provider`.
pub(crate) fn observe(provider: Provider, state: CircuitState) {
    metrics::gauge!("paywatch_provider_circuit_state", "provider" => provider.to_string())
        .set(state.gauge());
}

/// Announces a transition this process made: one log line and one count for the whole fleet.
pub(crate) fn transitioned(provider: Provider, state: CircuitState, pause: Option<Duration>) {
    observe(provider, state);
    metrics::counter!("paywatch_provider_circuit_transitions_total", "provider" => provider.to_string(), "state" => state.to_string())
        .increment(1);
    match state {
        CircuitState::Open => {
            tracing::warn!(provider = %provider, ?pause, "circuit opened: provider checks paused after repeated transient failures")
        }
        CircuitState::HalfOpen => {
            tracing::info!(provider = %provider, "circuit half open: probing the provider")
        }
        CircuitState::Closed => {
            tracing::info!(provider = %provider, "circuit closed: provider answered the probe, checks resume")
        }
    }
}
