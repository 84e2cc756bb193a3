//! Shared sandbox state and the in-process helpers mirroring the admin API.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::SandboxConfig;
use crate::error::SandboxError;
use crate::faults::{Fault, FaultList, FaultOutcome, FaultScope};
use crate::payment::{CreatedPayment, NewPayment, PaymentRecord, PaymentStats};
use crate::providers::Provider;
use crate::ratelimit::RateWindow;
use crate::telegram::{TelegramMessage, TelegramStats, TelegramStore};
use crate::webhooks::{Due, WebhookDelivery, WebhookDriver};

/// Status-request counters for one provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCallStats {
    /// Every status request received, whatever its outcome.
    pub requests: u64,
    /// Requests answered normally (200 with the payment).
    pub ok: u64,
    /// Requests answered by an injected status, malformed or drop fault.
    pub faulted: u64,
    /// Requests rejected for bad or missing credentials.
    pub unauthorized: u64,
    /// Requests for an unknown id.
    pub not_found: u64,
    /// Requests refused with 429 for exceeding the configured rate limit.
    #[serde(default)]
    pub rate_limited: u64,
    /// The most requests received in any one window of the configured rate limit (0 without one).
    #[serde(default)]
    pub max_in_window: u64,
}

/// Request counters for every fake endpoint, as served by `GET /_admin/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    /// Cashless bill lookups.
    pub cashless: StatusCallStats,
    /// HandCash payment request lookups (public and private).
    pub handcash: StatusCallStats,
    /// MiracleCash payment prompt lookups.
    pub miraclecash: StatusCallStats,
    /// FoxReload order lookups.
    pub foxreload: StatusCallStats,
    /// Telegram `sendMessage` calls.
    pub telegram: TelegramStats,
}

/// How one status request ended, for the counters.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CallOutcome {
    Ok,
    Faulted,
    Unauthorized,
    NotFound,
}

#[derive(Debug, Default)]
pub(crate) struct ProviderStore {
    pub(crate) payments: HashMap<String, PaymentRecord>,
    pub(crate) faults: FaultList,
    pub(crate) stats: StatusCallStats,
    pub(crate) rate: RateWindow,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) providers: [ProviderStore; 4],
    pub(crate) telegram: TelegramStore,
    /// Keyed by payment serial, which also keeps them in creation order.
    pub(crate) deliveries: BTreeMap<u64, WebhookDelivery>,
}

impl Store {
    pub(crate) fn provider(&mut self, provider: Provider) -> &mut ProviderStore {
        &mut self.providers[provider.index()]
    }
}

pub(crate) struct Inner {
    pub(crate) config: SandboxConfig,
    store: Mutex<Store>,
    serials: AtomicU64,
    pub(crate) webhooks: WebhookDriver,
}

/// Locks the store; a panic elsewhere must not take the whole sandbox down with it.
pub(crate) fn lock_store(inner: &Inner) -> MutexGuard<'_, Store> {
    inner.store.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the sandbox knows, shared by its handlers and its owner; cheap to clone.
#[derive(Clone)]
pub struct SandboxState {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxState")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl SandboxState {
    pub(crate) fn new(config: SandboxConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                store: Mutex::new(Store::default()),
                serials: AtomicU64::new(1),
                webhooks: WebhookDriver::new(),
            }),
        }
    }

    /// The configuration the sandbox runs with.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// Creates a payment, like `POST /_admin/payments`.
    pub fn create_payment(&self, spec: NewPayment) -> Result<CreatedPayment, SandboxError> {
        let serial = self.inner.serials.fetch_add(1, Ordering::Relaxed);
        let record = PaymentRecord::build(spec, serial, self.inner.config.time_scale)?;
        let due = self.webhook_due(&record);
        if due.is_some() {
            self.inner.webhooks.ensure_started(&self.inner)?;
        }
        let created = CreatedPayment {
            provider: record.provider,
            id: record.id.clone(),
        };
        {
            let mut store = self.store();
            let payments = &mut store.provider(record.provider).payments;
            if payments.contains_key(&record.id) {
                return Err(SandboxError::DuplicatePayment {
                    provider: record.provider,
                    id: record.id,
                });
            }
            payments.insert(record.id.clone(), record);
        }
        if let Some(due) = due {
            self.inner.webhooks.schedule(due);
        }
        tracing::debug!(provider = %created.provider, id = %created.id, "payment created");
        Ok(created)
    }

    fn webhook_due(&self, record: &PaymentRecord) -> Option<Due> {
        self.inner.config.webhook_target.as_ref()?;
        if !record.webhook {
            return None;
        }
        let step = record
            .timeline
            .first_with_status(record.provider.webhook_status()?)?;
        Some(Due {
            at: record.created.checked_add(step.at)?,
            serial: record.serial,
            provider: record.provider,
            id: record.id.clone(),
        })
    }

    /// Arms one more fault on `scope`, like the admin `POST .../faults`.
    pub fn set_fault(&self, scope: FaultScope, fault: Fault) -> Result<(), SandboxError> {
        self.add_faults(scope, vec![fault])
    }

    /// Arms several faults on `scope`, applied after those already armed there.
    pub fn add_faults(&self, scope: FaultScope, faults: Vec<Fault>) -> Result<(), SandboxError> {
        for fault in &faults {
            fault.validate()?;
        }
        self.with_faults(scope, |list| list.add(faults))
    }

    /// Disarms every fault on `scope`, like the admin `DELETE .../faults`.
    pub fn clear_faults(&self, scope: FaultScope) -> Result<(), SandboxError> {
        self.with_faults(scope, FaultList::clear)
    }

    fn with_faults(
        &self,
        scope: FaultScope,
        f: impl FnOnce(&mut FaultList),
    ) -> Result<(), SandboxError> {
        let mut store = self.store();
        match scope {
            FaultScope::Provider(provider) => f(&mut store.provider(provider).faults),
            FaultScope::Telegram => f(&mut store.telegram.faults),
            FaultScope::Payment { provider, id } => {
                match store.provider(provider).payments.get_mut(&id) {
                    Some(record) => f(&mut record.faults),
                    None => return Err(SandboxError::UnknownPayment { provider, id }),
                }
            }
        }
        Ok(())
    }

    /// Pins a payment's clock at `elapsed_ms` (unscaled, like timeline offsets) after its
    /// creation, or with `None` lets it run with real time again, like
    /// `PUT`/`DELETE /_admin/payments/{provider}/{id}/clock`. A pinned payment answers as it
    /// would at that age: benchmarks drive many payments on a virtual clock this way.
    pub fn set_payment_clock(
        &self,
        provider: Provider,
        id: &str,
        elapsed_ms: Option<u64>,
    ) -> Result<(), SandboxError> {
        let time_scale = self.inner.config.time_scale;
        let mut store = self.store();
        let record = store
            .provider(provider)
            .payments
            .get_mut(id)
            .ok_or_else(|| SandboxError::UnknownPayment {
                provider,
                id: id.to_owned(),
            })?;
        record.pinned = elapsed_ms.map(|ms| crate::timeline::scale(ms, time_scale));
        Ok(())
    }

    /// One payment's current status and poll count, like `GET /_admin/payments/{provider}/{id}`.
    pub fn stats(&self, provider: Provider, id: &str) -> Option<PaymentStats> {
        self.store()
            .provider(provider)
            .payments
            .get(id)
            .map(PaymentRecord::stats)
    }

    /// Every payment, oldest first, like `GET /_admin/payments`.
    pub fn payments(&self) -> Vec<PaymentStats> {
        let store = self.store();
        let mut all: Vec<&PaymentRecord> = store
            .providers
            .iter()
            .flat_map(|ps| ps.payments.values())
            .collect();
        all.sort_by_key(|r| r.serial);
        all.into_iter().map(PaymentRecord::stats).collect()
    }

    /// Request counters for every endpoint, like `GET /_admin/stats`.
    pub fn request_stats(&self) -> SandboxStats {
        let store = self.store();
        let of = |p: Provider| store.providers[p.index()].stats;
        SandboxStats {
            cashless: of(Provider::Cashless),
            handcash: of(Provider::HandCash),
            miraclecash: of(Provider::MiracleCash),
            foxreload: of(Provider::FoxReload),
            telegram: store.telegram.stats,
        }
    }

    /// Every message the fake bot delivered, oldest first, like `GET /_admin/telegram/messages`.
    pub fn telegram_messages(&self) -> Vec<TelegramMessage> {
        self.store().telegram.messages.clone()
    }

    /// Forgets the delivered messages, like `DELETE /_admin/telegram/messages`.
    pub fn clear_telegram_messages(&self) {
        self.store().telegram.messages.clear();
    }

    /// Every webhook the sandbox started delivering, like `GET /_admin/webhooks`.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.store().deliveries.values().cloned().collect()
    }

    /// Forgets all payments, faults, messages, counters and deliveries, like `POST /_admin/reset`.
    pub fn reset(&self) {
        *self.store() = Store::default();
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock_store(&self.inner)
    }

    /// Applies the configured rate limit to a status request before anything else looks at it:
    /// `Some(retry_after)` when it is refused (counted as a request and as rate limited).
    pub(crate) fn rate_limit(&self, provider: Provider) -> Option<std::time::Duration> {
        let limit = self.inner.config.rate_limit?;
        let mut store = self.store();
        let ps = store.provider(provider);
        let verdict = ps.rate.arrive(&limit, std::time::Instant::now());
        ps.stats.max_in_window = ps.rate.max_in_window;
        let wait = verdict.err()?;
        ps.stats.requests += 1;
        ps.stats.rate_limited += 1;
        Some(wait)
    }

    /// Counts a status request and takes the provider-wide faults it triggers.
    pub(crate) fn begin_status_call(&self, provider: Provider, id: &str) -> FaultOutcome {
        let mut store = self.store();
        let ps = store.provider(provider);
        ps.stats.requests += 1;
        if let Some(record) = ps.payments.get_mut(id) {
            record.checks += 1;
        }
        ps.faults.take()
    }

    pub(crate) fn finish_status_call(&self, provider: Provider, outcome: CallOutcome) {
        let mut store = self.store();
        let stats = &mut store.provider(provider).stats;
        match outcome {
            CallOutcome::Ok => stats.ok += 1,
            CallOutcome::Faulted => stats.faulted += 1,
            CallOutcome::Unauthorized => stats.unauthorized += 1,
            CallOutcome::NotFound => stats.not_found += 1,
        }
    }

    /// Takes the payment's own faults, or `None` if the payment does not exist.
    pub(crate) fn take_payment_faults(&self, provider: Provider, id: &str) -> Option<FaultOutcome> {
        self.store()
            .provider(provider)
            .payments
            .get_mut(id)
            .map(|r| r.faults.take())
    }

    /// The provider's response body for the payment right now, answering the status request
    /// [`SandboxState::begin_status_call`] counted (so the requests before it are the answered ones).
    pub(crate) fn render_payment(&self, provider: Provider, id: &str) -> Option<Value> {
        self.store()
            .provider(provider)
            .payments
            .get(id)
            .map(|r| r.render_at(r.elapsed(), r.checks.saturating_sub(1)))
    }

    /// Stops background work (the webhook driver and its deliveries).
    pub(crate) fn stop_background(&self) {
        self.inner.webhooks.stop();
    }
}
