//! paywatch-producer: accepts orders and enqueues one check-payment job per order, idempotently.
//!
//! Every door ends in the same Redis Function, `paywatch_submit` (see
//! [`paywatch_core::store`]): the HTTP API ([`http::router`]), this Rust API
//! ([`Producer::enqueue_order`]), the `paywatch-producer enqueue` CLI, and any language's Redis
//! client (docs/enqueue-from-any-language.md). So they accept and refuse exactly the same orders.
//! Provider webhooks ([`webhooks`]) move an order's scheduled check to now.

pub mod admin;
pub mod auth;
pub mod board;
pub mod config;
pub mod declared_webhooks;
pub mod events;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod telemetry;
pub mod views;
pub mod webhook_seen;
pub mod webhooks;

use std::time::Duration;

pub use paywatch_core::store::{FieldError, Phase, Receipt, SubmitError, Submitted};
use paywatch_core::store::{OrderSpec, OrderStore, OrderView, Promotion, StoreError};
use paywatch_core::{OrderId, PaymentId, Provider};
use paywatch_queue::{QueueConfig, RedisConn, RedisEndpoint, RedisQueue};

/// Errors of the producer API: the store's own (an invalid order naming its field, a conflict,
/// Redis failing), one type for every door.
pub type ProducerError = SubmitError;

/// Submits orders and reads their status.
#[derive(Debug, Clone)]
pub struct Producer {
    store: OrderStore,
    webhook_gap: Duration,
    /// Where `conn` leads, for queue handles sharing it (the admin's).
    endpoint: RedisEndpoint,
    conn: RedisConn,
}

/// The least time between two provider calls for one order that webhooks can cause.
pub const DEFAULT_WEBHOOK_GAP: Duration = Duration::from_secs(2);

/// One Redis connection (to one server, a Cluster when `url` lists its seed nodes
/// comma-separated, or a Sentinel-named primary), opened on first use and reconnecting by
/// itself, that gives up on a call quickly so a request during an outage gets a 503 instead of
/// hanging.
pub fn connect_redis(url: &str) -> Result<RedisConn, StoreError> {
    Ok(connect_endpoint(url)?.1)
}

/// [`connect_redis`], also returning the endpoint the connection leads to.
fn connect_endpoint(url: &str) -> Result<(RedisEndpoint, RedisConn), StoreError> {
    let endpoint = RedisEndpoint::open(url)?;
    let conn = endpoint.managed(
        redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2),
    )?;
    Ok((endpoint, conn))
}

impl Producer {
    /// Connects to Redis at `url`, with all keys under `prefix`, in one shard.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, ProducerError> {
        Self::connect_sharded(url, prefix, paywatch_core::store::DEFAULT_SHARDS).await
    }

    /// Connects with `shards` shards, loading the function library when needed; when Redis
    /// does not answer yet, the library is loaded by the first call that reaches it.
    pub async fn connect_sharded(
        url: &str,
        prefix: &str,
        shards: u32,
    ) -> Result<Self, ProducerError> {
        let producer = Self::open(url, prefix, shards)?;
        match producer.store.prepare().await {
            Ok(()) => {}
            // Redis may come up after us; the first call prepares again (see OrderStore::call).
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "redis unavailable at start-up; will prepare on first use")
            }
            Err(e) => return Err(e.into()),
        }
        Ok(producer)
    }

    /// A producer for Redis at `url` with `shards` shards that has contacted nothing yet: call
    /// [`Producer::prepare_when_ready`] (or let the first request prepare) before use.
    pub fn open(url: &str, prefix: &str, shards: u32) -> Result<Self, ProducerError> {
        let (endpoint, conn) = connect_endpoint(url)?;
        Ok(Self {
            store: OrderStore::new(conn.clone(), prefix, shards),
            webhook_gap: DEFAULT_WEBHOOK_GAP,
            endpoint,
            conn,
        })
    }

    /// One attempt at [`Producer::prepare_when_ready`]: `Ok(false)` when Redis is not there yet
    /// (down, loading, between primaries), an error for what waiting cannot mend.
    pub async fn try_prepare(&self) -> Result<bool, ProducerError> {
        match self.store.prepare().await {
            Ok(()) => Ok(true),
            Err(e) if e.is_unavailable() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until Redis answers (logging once while it does not), then loads the function
    /// library and checks the shard count; fails at once on what waiting cannot mend.
    pub async fn prepare_when_ready(&self) -> Result<(), ProducerError> {
        Ok(self.store.prepare_when_ready().await?)
    }

    /// Acknowledges orders and webhook promotions only once they are as durable as `durability`
    /// asks; durable writes open their own connections to the same Redis (through Sentinel, to
    /// the primary it names at the time). Refused on a Cluster when durability is asked.
    pub fn with_durability(
        mut self,
        durability: paywatch_core::store::Durability,
    ) -> Result<Self, ProducerError> {
        self.store = self.store.with_durability(&self.endpoint, durability)?;
        Ok(self)
    }

    /// Sets the least time between two provider calls for one order that webhooks can cause.
    pub fn with_webhook_gap(mut self, gap: Duration) -> Self {
        self.webhook_gap = gap;
        self
    }

    /// Accepts an order given as the JSON of `POST /v1/orders`, as the client sent it.
    pub async fn submit_json(&self, body: &[u8]) -> Result<Submitted, ProducerError> {
        Ok(self.submit_json_with_receipt(body).await?.0)
    }

    /// [`Producer::submit_json`], with what Redis confirmed before the answer (replicas that
    /// acknowledged it, the primary's disk).
    pub async fn submit_json_with_receipt(
        &self,
        body: &[u8],
    ) -> Result<(Submitted, Receipt), ProducerError> {
        let (submitted, receipt) = self.store.submit_json_with_receipt(body).await?;
        count(submitted);
        Ok((submitted, receipt))
    }

    /// [`Producer::submit_json_with_receipt`] for a body whose `order_id` the caller has read
    /// already: the shard is picked without parsing the body again.
    pub async fn submit_json_for(
        &self,
        order_id: &str,
        body: &[u8],
    ) -> Result<(Submitted, Receipt), ProducerError> {
        let (submitted, receipt) = self.store.submit_json_for(order_id, body).await?;
        count(submitted);
        Ok((submitted, receipt))
    }

    /// [`Producer::submit_json_for`] with the order's W3C trace context, stored with it (see
    /// [`paywatch_core::traces`]); `order_id` is `None` when the caller could not read it.
    pub async fn submit_json_traced(
        &self,
        order_id: Option<&str>,
        body: &[u8],
        traceparent: Option<&str>,
    ) -> Result<(Submitted, Receipt), ProducerError> {
        let (submitted, receipt) = self
            .store
            .submit_json_traced(order_id, body, traceparent)
            .await?;
        count(submitted);
        Ok((submitted, receipt))
    }

    /// Accepts an order: validates it, records it and makes its first check due now, once per
    /// order id. Re-submitting the same order is harmless; a different body under the same id is
    /// a [`ProducerError::Conflict`].
    pub async fn enqueue_order(&self, spec: &OrderSpec) -> Result<Submitted, ProducerError> {
        let submitted = self.store.submit(spec).await?;
        count(submitted);
        Ok(submitted)
    }

    /// An order as it stands.
    pub async fn order(&self, id: &OrderId) -> Result<Option<OrderView>, ProducerError> {
        Ok(self.store.get(id).await?)
    }

    /// A provider's webhook named this payment: check it now instead of at its next scheduled
    /// time (the check asks the provider's API; the webhook itself is never trusted for status).
    pub async fn check_now(
        &self,
        provider: Provider,
        payment_id: &PaymentId,
    ) -> Result<Vec<(OrderId, Promotion)>, ProducerError> {
        Ok(self
            .store
            .check_now(provider, payment_id, self.webhook_gap)
            .await?)
    }

    /// A handle on one of this deployment's queues (`name` as [`paywatch_core::queues`] and
    /// [`paywatch_core::store::check_queue`] name them), over the producer's connection.
    pub fn queue(&self, name: &str) -> RedisQueue<serde_json::Value> {
        RedisQueue::with_connection(
            self.endpoint.clone(),
            self.conn.clone(),
            QueueConfig::new(name).with_prefix(self.store.prefix()),
        )
    }

    /// The deployment's key prefix.
    pub fn prefix(&self) -> &str {
        self.store.prefix()
    }

    /// The producer's shared Redis connection.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Whether Redis is reached through Sentinel (a failover then needs a replica).
    pub fn is_sentinel(&self) -> bool {
        matches!(self.endpoint, RedisEndpoint::Sentinel(_))
    }

    /// The shard count of this deployment.
    pub fn shards(&self) -> u32 {
        self.store.shards()
    }

    /// Whether Redis is prepared (the function library loaded) and answers now.
    pub async fn ready(&self) -> bool {
        self.store.ready().await
    }
}

fn count(submitted: Submitted) {
    ::metrics::counter!(
        metrics::ORDERS_SUBMITTED_TOTAL,
        "outcome" => if submitted == Submitted::Created { "created" } else { "existing" }
    )
    .increment(1);
}

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "producer API listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
