//! The gate every provider status call passes, fleet-wide in Redis: the provider's circuit
//! breaker ([`breaker`]) and request budget ([`budget`]), checked and taken in one
//! script (`admit.lua`), and the call's outcome reported back to the breaker (`report.lua`).
//!
//! Keys: `<prefix>:{provider:<name>:<fingerprint>}:breaker` (HASH) and `…:budget` (ZSET), one
//! hash tag per provider credential so both scripts touch a single cluster slot. The fingerprint
//! is a truncated SHA-256 of the credential: two deployments sharing one API key share its
//! budget, and the key itself never appears in Redis key names, logs or metrics.
//!
//! A provider without a budget whose breaker was closed and failure-free at the last admission
//! is trusted to stay so for [`CLOSED_TRUST`]: calls go without asking Redis, which would
//! otherwise cost one script per provider call in the healthy steady state. A transient failure
//! this process sees ends the trust at once (and is reported as before); one another process
//! sees reaches this one within the trust window.

pub mod breaker;
pub mod budget;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use paywatch_core::{Provider, ProvidersConfig, Secret};
use paywatch_queue::RedisConn;
use redis::Script;
use sha2::{Digest, Sha256};

use self::breaker::{BreakerConfig, CircuitState};
use self::budget::RateLimits;

static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("admit.lua")));
static REPORT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("report.lua")));

/// Why a call has to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The provider's circuit is open (or its probe is out).
    Circuit,
    /// The provider's request budget is spent for now.
    Budget,
}

impl Hold {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Circuit => "circuit",
            Self::Budget => "budget",
        }
    }
}

/// The gate's answer for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Call the provider now, then [`Gate::report`] the outcome with this ticket.
    Go(Ticket),
    /// Do not call; try again after this long.
    Wait {
        /// How long until the gate may let the call through.
        after: Duration,
        /// What holds the call back.
        hold: Hold,
    },
}

/// An admitted call, to report its outcome with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    provider: Provider,
    probe: bool,
    /// Whether the breaker had anything to forget (failures, or not closed) at admission: a
    /// success with nothing to forget needs no Redis call.
    dirty: bool,
}

/// How long a process admits calls to a provider without a budget, without asking Redis, after
/// Redis said its breaker was closed with no failures: short against the breaker's pause, long
/// against the time between two calls.
pub const CLOSED_TRUST: Duration = Duration::from_millis(250);

/// Per-provider settings and key names.
#[derive(Debug, Clone)]
struct Lane {
    keys: crate::keys::LaneKeys,
    limit: u32,
    window_ms: u64,
    reserved: u32,
    /// Until when this process trusts the breaker to be closed and failure-free (shared by the
    /// gate's clones).
    trusted_until: Arc<Mutex<Option<Instant>>>,
}

impl Lane {
    fn trusted(&self) -> bool {
        self.trusted_until
            .lock()
            .ok()
            .and_then(|until| *until)
            .is_some_and(|until| Instant::now() < until)
    }

    fn trust(&self, until: Option<Instant>) {
        if let Ok(mut slot) = self.trusted_until.lock() {
            *slot = until;
        }
    }
}

/// The fleet-wide gate of this process's provider calls; cheap to clone.
#[derive(Clone)]
pub struct Gate {
    redis: RedisConn,
    lanes: HashMap<Provider, Lane>,
    breaker: BreakerConfig,
    closed_trust: Duration,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("lanes", &self.lanes)
            .field("breaker", &self.breaker)
            .field("closed_trust", &self.closed_trust)
            .finish_non_exhaustive()
    }
}

/// The non-secret identity of a provider credential: 12 hex digits of its SHA-256.
pub fn fingerprint(provider: Provider, providers: &ProvidersConfig) -> String {
    let parts: Vec<&str> = match provider {
        Provider::Cashless => providers
            .cashless
            .as_ref()
            .map(|c| vec![c.api_key.expose(), c.api_secret.expose()]),
        Provider::HandCash => providers
            .handcash
            .as_ref()
            .map(|c| vec![c.app_id.expose(), c.app_secret.expose()]),
        Provider::MiracleCash => providers
            .miraclecash
            .as_ref()
            .map(|c| vec![c.client_id.expose(), c.api_key.expose()]),
        Provider::FoxReload => providers
            .foxreload
            .as_ref()
            .map(|c| vec![c.api_key.expose()]),
        Provider::Declared(_) => providers
            .declared
            .iter()
            .find(|r| r.definition.provider == provider)
            .map(|r| r.credentials.values().map(Secret::expose).collect()),
    }
    .unwrap_or_default();
    let mut hash = Sha256::new();
    hash.update(b"paywatch provider credential\0");
    hash.update(provider.to_string().as_bytes());
    for part in parts {
        hash.update(b"\0");
        hash.update(part.as_bytes());
    }
    hash.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Gate {
    /// A gate for the configured providers, with their budgets and the breaker settings.
    pub fn new(
        redis: RedisConn,
        prefix: &str,
        providers: &ProvidersConfig,
        limits: &RateLimits,
        young_share: f64,
        breaker: BreakerConfig,
    ) -> Self {
        let declared = providers.declared.iter().map(|r| r.definition.provider);
        let lanes = Provider::ALL
            .into_iter()
            .chain(declared)
            .map(|p| {
                let limit = limits.for_provider(p);
                let lane = Lane {
                    keys: crate::keys::LaneKeys::new(prefix, p, &fingerprint(p, providers)),
                    limit: limit.map_or(0, |l| l.limit),
                    window_ms: limit.map_or(0, |l| millis(l.guarded_window())),
                    reserved: limit.map_or(0, |l| l.reserved(young_share)),
                    trusted_until: Arc::default(),
                };
                (p, lane)
            })
            .collect();
        Self {
            redis,
            lanes,
            breaker,
            closed_trust: CLOSED_TRUST,
        }
    }

    /// The same gate trusting a closed breaker for `trust` instead of [`CLOSED_TRUST`] (zero:
    /// ask Redis for every call).
    pub fn with_closed_trust(mut self, trust: Duration) -> Self {
        self.closed_trust = trust;
        self
    }

    fn lane(&self, provider: Provider) -> Result<&Lane, redis::RedisError> {
        self.lanes.get(&provider).ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Client, "provider without a gate lane"))
        })
    }

    /// The key of each provider's breaker (the health report names them for the operator).
    pub fn breaker_keys(&self) -> Vec<(Provider, String)> {
        let mut keys: Vec<(Provider, String)> = self
            .lanes
            .iter()
            .map(|(p, lane)| (*p, lane.keys.breaker()))
            .collect();
        keys.sort();
        keys
    }

    /// Asks whether a call to `provider` may go now; `young` orders (in their fast phase) may use
    /// the part of the budget reserved for them.
    pub async fn admit(
        &self,
        provider: Provider,
        young: bool,
    ) -> Result<Admission, redis::RedisError> {
        let lane = self.lane(provider)?;
        let breaker_on = self.breaker.failures > 0;
        if lane.limit == 0 && (!breaker_on || lane.trusted()) {
            return Ok(Admission::Go(Ticket {
                provider,
                probe: false,
                dirty: false,
            }));
        }
        let member = format!("{:016x}", rand::random::<u64>());
        let mut redis = self.redis.clone();
        let (verdict, wait_ms, state, failures, opened): (u8, u64, u8, u64, u8) = ADMIT
            .key(lane.keys.breaker())
            .key(lane.keys.budget())
            .arg(lane.limit)
            .arg(lane.window_ms)
            .arg(lane.reserved)
            .arg(u8::from(young))
            .arg(member)
            .arg(millis(self.breaker.probe_lease))
            .invoke_async(&mut redis)
            .await?;
        let state = CircuitState::from_code(state);
        if opened == 1 {
            breaker::transitioned(provider, state, None);
        } else if breaker_on {
            breaker::observe(provider, state);
        }
        let healthy = verdict == 0 && failures == 0 && state == CircuitState::Closed;
        if lane.limit == 0 && healthy && !self.closed_trust.is_zero() {
            lane.trust(Some(Instant::now() + self.closed_trust));
        }
        Ok(match verdict {
            0 | 1 => Admission::Go(Ticket {
                provider,
                probe: verdict == 1,
                dirty: failures > 0 || state != CircuitState::Closed,
            }),
            2 => Admission::Wait {
                after: spread(wait_ms, wait_ms / 4),
                hold: Hold::Circuit,
            },
            _ => {
                // Many checks wait for the same freed slot: spread their return over a stretch
                // of the window instead of sending them all back at the same millisecond (one
                // would get the slot, the rest would come back again and again). Old orders
                // wait longer, so young ones meet less competition.
                let stretch = if young {
                    lane.window_ms / 8
                } else {
                    lane.window_ms / 2
                };
                Admission::Wait {
                    after: spread(wait_ms, stretch.max(wait_ms)),
                    hold: Hold::Budget,
                }
            }
        })
    }

    /// Tells the breaker how an admitted call went: `transient_failure` for 5xx, timeouts and
    /// connection errors; any answer from the provider (even a 404 or a 429) counts as up.
    pub async fn report(
        &self,
        ticket: Ticket,
        transient_failure: bool,
    ) -> Result<(), redis::RedisError> {
        if self.breaker.failures == 0 || (!transient_failure && !ticket.dirty && !ticket.probe) {
            return Ok(());
        }
        let lane = self.lane(ticket.provider)?;
        // Whatever Redis answers, this process no longer knows the breaker to be clean.
        lane.trust(None);
        let mut redis = self.redis.clone();
        let (state, transitioned, pause_ms): (u8, u8, u64) = REPORT
            .key(lane.keys.breaker())
            .arg(if transient_failure { "fail" } else { "ok" })
            .arg(u8::from(ticket.probe))
            .arg(self.breaker.failures)
            .arg(millis(self.breaker.first_pause))
            .arg(millis(self.breaker.max_pause))
            .invoke_async(&mut redis)
            .await?;
        let state = CircuitState::from_code(state);
        if transitioned == 1 {
            let pause = (pause_ms > 0).then(|| Duration::from_millis(pause_ms));
            breaker::transitioned(ticket.provider, state, pause);
        } else {
            breaker::observe(ticket.provider, state);
        }
        Ok(())
    }
}

/// `wait` plus a random part of `stretch`, in milliseconds.
fn spread(wait_ms: u64, stretch_ms: u64) -> Duration {
    let jitter = if stretch_ms == 0 {
        0
    } else {
        rand::random_range(0..=stretch_ms)
    };
    Duration::from_millis(wait_ms.max(1).saturating_add(jitter))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use paywatch_core::adapters::FoxReloadConfig;
    use paywatch_core::{Provider, ProvidersConfig, Secret};

    use super::fingerprint;

    fn fox(key: &str) -> ProvidersConfig {
        ProvidersConfig {
            foxreload: Some(FoxReloadConfig {
                base_url: "https://fox.example".parse().expect("url"),
                api_key: Secret::new(key),
            }),
            ..ProvidersConfig::default()
        }
    }

    #[test]
    fn fingerprints_name_a_credential_without_showing_it() {
        let key = "fox-key-123456";
        let one = fingerprint(Provider::FoxReload, &fox(key));
        assert_eq!(one.len(), 12);
        assert!(!one.contains(key) && !key.contains(&one));
        assert_eq!(one, fingerprint(Provider::FoxReload, &fox(key)));
        assert_ne!(one, fingerprint(Provider::FoxReload, &fox("another-key")));
        assert_ne!(one, fingerprint(Provider::Cashless, &fox(key)));
    }
}
