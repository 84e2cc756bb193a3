//! paywatch-producer: accepts orders and enqueues one check-payment job per order, idempotently.
//!
//! Three doors to the same [`Producer::enqueue_order`]: the HTTP API ([`http::router`]), this
//! Rust API, and the `paywatch-producer enqueue` CLI. Shops can also enqueue straight into Redis
//! from any language (see docs/enqueue-from-redis.md). Provider webhooks ([`webhooks`]) move an
//! order's scheduled check to now.

pub mod config;
pub mod http;
pub mod metrics;
pub mod telemetry;
pub mod validate;
pub mod webhooks;

use chrono::Utc;
use paywatch_core::store::{Created, OrderRecord, OrderSpec, OrderStore, StoreError};
use paywatch_core::{HistoryEntry, OrderId, PaymentId, PaymentStatus, Provider, queues};
use paywatch_queue::{JobId, NewJob, Promoted, QueueConfig, QueueError, RedisQueue};

/// What submitting an order did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new order; its first check is enqueued.
    Created,
    /// The same order was already accepted; nothing new was enqueued. Its current status.
    Existing(PaymentStatus),
}

/// Errors of the producer API.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// An order with this id exists with a different body.
    #[error("order {0} already exists with a different body")]
    Conflict(String),
    /// The order store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl ProducerError {
    /// Whether the failure is Redis being unreachable (worth a 503 and a retry).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Store(StoreError::Redis(_)) | Self::Queue(QueueError::Redis(_))
        )
    }
}

/// Submits orders and reads their status.
#[derive(Debug, Clone)]
pub struct Producer {
    store: OrderStore,
    checks: RedisQueue<OrderSpec>,
    conn: redis::aio::ConnectionManager,
}

impl Producer {
    /// Connects to Redis at `url`, with all keys under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, ProducerError> {
        let checks: RedisQueue<OrderSpec> = RedisQueue::connect(
            url,
            QueueConfig::new(queues::CHECK_PAYMENT).with_prefix(prefix),
        )
        .await?;
        let client = redis::Client::open(url).map_err(QueueError::from)?;
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(
            client,
            redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
                .set_number_of_retries(2),
        )
        .map_err(QueueError::from)?;
        Ok(Self {
            store: OrderStore::new(conn.clone(), prefix),
            checks,
            conn,
        })
    }

    /// Accepts an order: records it and enqueues its first check, once per order id.
    ///
    /// Re-submitting the same body is harmless (and heals an order whose enqueue was interrupted);
    /// a different body under the same id is a [`ProducerError::Conflict`].
    pub async fn enqueue_order(&self, spec: &OrderSpec) -> Result<Submitted, ProducerError> {
        let outcome = self.store.create(spec, Utc::now()).await?;
        let submitted = match outcome {
            Created::Conflict => return Err(ProducerError::Conflict(spec.order_id.to_string())),
            Created::New => Submitted::Created,
            Created::Existing(status) => Submitted::Existing(status),
        };
        let open = match submitted {
            Submitted::Created => true,
            Submitted::Existing(status) => !status.is_final(),
        };
        if open {
            self.store.index_payment(spec).await?;
            // Idempotent on the order id: a duplicate is a no-op while the check job exists.
            let id = JobId::new(spec.order_id.to_string())?;
            self.checks
                .enqueue(NewJob::new(spec.clone()).with_id(id))
                .await?;
        }
        ::metrics::counter!(
            metrics::ORDERS_SUBMITTED_TOTAL,
            "provider" => spec.provider.to_string(),
            "outcome" => if submitted == Submitted::Created { "created" } else { "existing" }
        )
        .increment(1);
        Ok(submitted)
    }

    /// An order's record and its newest history entries.
    pub async fn order(
        &self,
        id: &OrderId,
        history: usize,
    ) -> Result<Option<(OrderRecord, Vec<HistoryEntry>)>, ProducerError> {
        let Some(record) = self.store.get(id).await? else {
            return Ok(None);
        };
        let history = self.store.history(id, history).await?;
        Ok(Some((record, history)))
    }

    /// A provider's webhook named this payment: check it now instead of at its next scheduled
    /// time (the check asks the provider's API; the webhook itself is never trusted for status).
    pub async fn check_now(
        &self,
        provider: Provider,
        payment_id: &PaymentId,
    ) -> Result<Option<(OrderId, Promoted)>, ProducerError> {
        let Some(order_id) = self.store.order_for_payment(provider, payment_id).await? else {
            return Ok(None);
        };
        let promoted = self
            .checks
            .promote(&JobId::new(order_id.to_string())?)
            .await?;
        Ok(Some((order_id, promoted)))
    }

    /// Whether Redis answers.
    pub async fn ready(&self) -> bool {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }
}
