//! Provider webhooks: one background task fires them when a payment's timeline reaches its paid
//! status, and retries deliveries the receiver did not acknowledge.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::error::SandboxError;
use crate::providers::Provider;
use crate::state::Inner;
use crate::timeline::scale;

/// Attempts per webhook before giving up (the first try plus retries).
const MAX_ATTEMPTS: u32 = 5;
/// Backoff before the first retry, in unscaled milliseconds; it doubles after each failure.
const FIRST_BACKOFF_MS: u64 = 500;

/// One webhook the sandbox started delivering, as served by `GET /_admin/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The payment's provider.
    pub provider: Provider,
    /// The payment's id.
    pub id: String,
    /// Where it is POSTed.
    pub url: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Whether the receiver answered 2xx.
    pub delivered: bool,
    /// The status of the last answer, if the receiver answered at all.
    pub last_status: Option<u16>,
    /// Why the last attempt failed without an answer, if it did.
    pub last_error: Option<String>,
}

/// A webhook that becomes due at `at`; ordered by time so the driver can keep them in a heap.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Due {
    pub(crate) at: Instant,
    pub(crate) serial: u64,
    pub(crate) provider: Provider,
    pub(crate) id: String,
}

struct Job {
    serial: u64,
    url: String,
    body: Value,
}

/// The handle on the background driver, started on first use so `Sandbox::router` can be called
/// outside a Tokio runtime.
pub(crate) struct WebhookDriver {
    tx: mpsc::UnboundedSender<Due>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Due>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl WebhookDriver {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            task: Mutex::new(None),
        }
    }

    pub(crate) fn ensure_started(&self, inner: &Arc<Inner>) -> Result<(), SandboxError> {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.is_some() {
            return Ok(());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SandboxError::NoRuntime)?;
        // No receiver left means the driver was stopped for good: schedules are then dropped.
        if let Some(rx) = self
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            *task = Some(runtime.spawn(run(Arc::downgrade(inner), rx)));
        }
        Ok(())
    }

    pub(crate) fn schedule(&self, due: Due) {
        if self.tx.send(due).is_err() {
            tracing::debug!("webhook driver stopped; webhook not scheduled");
        }
    }

    pub(crate) fn stop(&self) {
        self.rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl std::fmt::Debug for WebhookDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDriver").finish_non_exhaustive()
    }
}

/// The driver holds only a weak reference so a dropped sandbox is not kept alive by it; the
/// channel closing (the last state clone gone) ends it, and dropping the `JoinSet` aborts any
/// delivery still retrying.
async fn run(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Due>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(client) => Some(client),
        Err(err) => {
            tracing::error!("cannot build the webhook HTTP client, webhooks will fail: {err}");
            None
        }
    };
    let mut queue: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let mut deliveries = JoinSet::new();
    loop {
        let next = queue.peek().map(|Reverse(due)| due.at);
        tokio::select! {
            received = rx.recv() => match received {
                Some(due) => queue.push(Reverse(due)),
                None => break,
            },
            () = sleep_until(next) => {
                let now = Instant::now();
                while let Some(Reverse(due)) = queue.peek() {
                    if due.at > now {
                        break;
                    }
                    let Some(Reverse(due)) = queue.pop() else { break };
                    let Some(strong) = inner.upgrade() else { return };
                    if let Some(job) = prepare(&strong, &due) {
                        let scale = strong.config.time_scale;
                        deliveries.spawn(deliver(inner.clone(), client.clone(), job, scale));
                    }
                }
            },
            Some(joined) = deliveries.join_next(), if !deliveries.is_empty() => {
                if let Err(err) = joined {
                    tracing::warn!("webhook delivery task failed: {err}");
                }
            },
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Builds the provider's webhook body from the payment as it was when it got paid.
fn prepare(inner: &Inner, due: &Due) -> Option<Job> {
    let target = inner.config.webhook_target.as_deref()?;
    let url = format!("{}/webhooks/{}", target.trim_end_matches('/'), due.provider);
    let mut store = crate::state::lock_store(inner);
    let record = store
        .provider(due.provider)
        .payments
        .get(&due.id)
        .filter(|r| r.serial == due.serial)?;
    let paid_at = record
        .timeline
        .first_with_status(due.provider.webhook_status()?)?
        .at;
    let rendered = record.render_at(paid_at, record.checks);
    let body = match due.provider {
        Provider::Cashless => json!({ "bill": rendered }),
        Provider::HandCash => json!({
            "appSecret": inner.config.credentials.handcash_app_secret,
            "paymentRequestId": record.id,
            "transactionId": rendered.get("transactionId"),
            "customParameters": rendered.get("customParameters").cloned().unwrap_or_else(|| json!({})),
            "userData": {},
        }),
        Provider::MiracleCash | Provider::FoxReload => return None,
    };
    store.deliveries.insert(
        due.serial,
        WebhookDelivery {
            provider: due.provider,
            id: due.id.clone(),
            url: url.clone(),
            attempts: 0,
            delivered: false,
            last_status: None,
            last_error: None,
        },
    );
    Some(Job {
        serial: due.serial,
        url,
        body,
    })
}

async fn deliver(inner: Weak<Inner>, client: Option<reqwest::Client>, job: Job, time_scale: f64) {
    for attempt in 1..=MAX_ATTEMPTS {
        let result = match &client {
            Some(client) => client
                .post(&job.url)
                .json(&job.body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string()),
            None => Err("no HTTP client".to_string()),
        };
        let delivered = matches!(result, Ok(code) if (200..300).contains(&code));
        {
            let Some(inner) = inner.upgrade() else { return };
            let mut store = crate::state::lock_store(&inner);
            if let Some(d) = store.deliveries.get_mut(&job.serial) {
                d.attempts = attempt;
                d.delivered = delivered;
                match &result {
                    Ok(code) => {
                        d.last_status = Some(*code);
                        d.last_error = None;
                    }
                    Err(err) => d.last_error = Some(err.clone()),
                }
            }
        }
        if delivered {
            tracing::debug!(url = %job.url, attempt, "webhook delivered");
            return;
        }
        tracing::debug!(url = %job.url, attempt, ?result, "webhook not acknowledged");
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(backoff(attempt, time_scale)).await;
        }
    }
    tracing::warn!(url = %job.url, "webhook given up after {MAX_ATTEMPTS} attempts");
}

/// Exponential backoff, scaled like timelines but kept between 10 ms and 30 s so a tiny scale
/// does not spin and a huge one does not stall.
fn backoff(attempt: u32, time_scale: f64) -> Duration {
    let ms = FIRST_BACKOFF_MS.saturating_mul(1 << attempt.saturating_sub(1).min(20));
    scale(ms, time_scale).clamp(Duration::from_millis(10), Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_clamped() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(2, 1.0), Duration::from_millis(1000));
        assert_eq!(backoff(1, 0.0001), Duration::from_millis(10));
        assert_eq!(backoff(30, 1.0), Duration::from_secs(30));
    }
}
