//! Orders in Redis, through the `paywatch` function library: the one door every language uses.
//!
//! The library (`lua/`, joined and loaded by [`library::ensure`]) validates, deduplicates and
//! enqueues an order in one atomic call; this module speaks it from Rust. The producer's HTTP API,
//! its CLI and [`OrderStore::submit`] all end in the same `FCALL paywatch_submit`, so every door
//! has the same rules; docs/enqueue-from-any-language.md is the contract for other languages.
//!
//! Where an order lives (all under its shard's hash tag, see [`keys`]):
//! - pending: its check-payment job, whose payload is the order's [`StoredOrder`] record;
//! - final: `…:orders`, written once by [`OrderStore::finalize`] (the first final answer wins);
//! - stopped: its check job in the dead letters (paywatch gave up on it, with the reason).

pub mod durability;
pub mod keys;
pub mod library;
pub mod record;

use chrono::{DateTime, Utc};
use paywatch_queue::RedisConn;

use self::durability::DurableWrites;
pub use self::durability::{Durability, Receipt};
pub use self::keys::{DEFAULT_SHARDS, MAX_SHARDS, ShardKeys, check_queue, shard_of};
pub use self::record::{CheckState, HISTORY_LEN, HistoryEntry, StoredOrder};
pub use crate::order::OrderSpec;
use crate::{OrderId, PaymentId, PaymentStatus, Provider};

/// Errors reading or writing orders.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// `REDIS_URL` cannot be read.
    #[error(transparent)]
    Url(#[from] paywatch_queue::UrlError),
    /// The server has no Redis Functions (`FCALL`), which paywatch's one door is made of.
    #[error(
        "REDIS_URL: this server has no Redis Functions (FCALL): paywatch needs Redis 7.0 or later \
         (Functions), or Valkey 7.2 or later"
    )]
    NoFunctions,
    /// Durable acknowledgements were asked of a Redis Cluster, where they are not supported yet.
    #[error(
        "PAYWATCH_DURABLE_REPLICAS / PAYWATCH_DURABLE_FSYNC: durable acknowledgements are not \
         supported on a Redis Cluster yet (use one primary with replicas, or Sentinel)"
    )]
    DurableOnCluster,
    /// A value could not be encoded.
    #[error("could not encode: {0}")]
    Encode(#[source] serde_json::Error),
    /// A stored record is not what paywatch writes.
    #[error("corrupt order record {order_id}: {reason}")]
    Corrupt {
        /// The order.
        order_id: String,
        /// What is wrong.
        reason: String,
    },
    /// The loaded function library no longer serves this build's contract.
    #[error(
        "the paywatch function library in Redis speaks contract {loaded} and serves callers of \
         contract {oldest} or later; this build speaks {ours}: upgrade this process"
    )]
    Incompatible {
        /// The loaded library's contract.
        loaded: i64,
        /// The oldest contract it still serves.
        oldest: i64,
        /// Ours.
        ours: i64,
    },
    /// The write is done but not yet as durable as configured (replicas or disk did not
    /// acknowledge it in time); retrying the same request is safe.
    #[error("not durable yet: {acked} of {wanted} {what} acknowledged within {within:?}; retry")]
    NotDurable {
        /// What was waited for.
        what: &'static str,
        /// How many acknowledged.
        acked: u32,
        /// How many were required.
        wanted: u32,
        /// How long we waited.
        within: std::time::Duration,
    },
    /// Redis holds orders sharded differently from this process's configuration.
    #[error(
        "PAYWATCH_SHARDS is {configured} but {key} says this deployment has {stored} shards \
         (resharding is not supported: use the stored count, or a new prefix)"
    )]
    ShardCount {
        /// The meta key read.
        key: String,
        /// The count stored there.
        stored: u32,
        /// Ours.
        configured: u32,
    },
}

impl StoreError {
    /// Whether the failure is Redis being unreachable, loading, or between primaries (worth a
    /// 503 and a retry; at start-up, worth waiting for).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::NotDurable { .. } => true,
            Self::Redis(e) => paywatch_queue::is_transient(e),
            _ => false,
        }
    }

    /// Whether the failure is a connection that broke under the request (a dead pooled
    /// connection after a failover, say): an idempotent request may be sent again at once.
    fn is_broken_connection(&self) -> bool {
        matches!(self, Self::Redis(e) if !e.is_connection_refusal()
            && (e.is_io_error() || e.is_connection_dropped() || e.is_timeout())
            || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
    }

    /// Whether the failure is a write that is not yet durable (see [`StoreError::NotDurable`]).
    pub fn is_not_durable(&self) -> bool {
        matches!(self, Self::NotDurable { .. })
    }
}

/// The submit function's verdict on a field: `ERR paywatch: <field>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The offending field (dotted path; `body` for the document as a whole).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// Whether the body was not JSON at all (rather than JSON with a bad field).
    pub fn is_syntax(&self) -> bool {
        self.field == "body" && self.message.starts_with("not valid JSON")
    }

    /// Whether it says another order with this id exists with a different body.
    pub fn is_conflict(&self) -> bool {
        self.field == "order_id"
            && self
                .message
                .contains("already exists with a different body")
    }

    /// The verdict carried by a function's error reply, if it is one.
    pub fn from_reply(e: &redis::RedisError) -> Option<Self> {
        let text = e
            .detail()
            .map(str::to_owned)
            .unwrap_or_else(|| e.to_string());
        let rest = &text[text.find("paywatch: ")? + "paywatch: ".len()..];
        let (field, message) = rest.split_once(": ")?;
        Some(Self {
            field: field.to_owned(),
            message: message.to_owned(),
        })
    }
}

/// Why a submission was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The order is invalid; nothing was written.
    #[error("{0}")]
    Invalid(FieldError),
    /// Another order with this id exists with a different body; nothing was written.
    // The function's words, as every door says them (the id is in the variant, not the text).
    #[error("order_id: an order with this id already exists with a different body")]
    Conflict(String),
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SubmitError {
    /// Whether the failure is Redis being unreachable (worth a 503 and a retry).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_unavailable())
    }

    /// Whether the failure is a write not yet durable (a 503 whose retry is safe).
    pub fn is_not_durable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_not_durable())
    }
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Its check is scheduled (or running).
    Watching,
    /// paywatch gave up on it (its check is in the dead letters); the status is the last known.
    Stopped,
    /// It reached a final status.
    Final,
}

impl Phase {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "watching" => Some(Self::Watching),
            "stopped" => Some(Self::Stopped),
            "final" => Some(Self::Final),
            _ => None,
        }
    }
}

/// What submitting an order did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new order; its first check is due now.
    Created,
    /// The same order was already accepted; nothing changed.
    Existing {
        /// Its status.
        status: PaymentStatus,
        /// Where it stands.
        phase: Phase,
    },
}

/// Why paywatch stopped watching an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Stopped {
    /// The reason recorded with the dead letter.
    pub reason: String,
    /// When.
    pub at: Option<DateTime<Utc>>,
}

/// An order as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderView {
    /// The order.
    pub order_id: OrderId,
    /// Where it stands.
    pub phase: Phase,
    /// Its record.
    pub record: StoredOrder,
    /// When its next check is due (watching, not running).
    pub next_check_at: Option<DateTime<Utc>>,
    /// Whether a check is running right now.
    pub running: bool,
    /// Why paywatch stopped, when it did.
    pub stopped: Option<Stopped>,
    /// Whether a final order's notifications are enqueued.
    pub notified: bool,
}

/// What a provider webhook did to the order watching its payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promotion {
    /// Its check moved to now.
    Moved,
    /// Its check was due already.
    AlreadyDue,
    /// Its check is running; another follows right after.
    Running,
    /// It has no scheduled check (final, or stopped).
    NotScheduled,
}

/// A job [`OrderStore::finalize_notify`] enqueues with an order's final record.
#[derive(Debug, Clone, Copy)]
pub struct FinalJob<'a> {
    /// The keys of the queue it joins (due now).
    pub queue: &'a paywatch_queue::Keys,
    /// Its job id.
    pub id: &'a str,
    /// Its payload, as the queue stores it (JSON).
    pub payload: &'a str,
}

/// What [`OrderStore::finalize_notify`] did.
#[derive(Debug, Clone)]
pub enum Finalized {
    /// The record was written now, with its history count and its jobs: their outcomes, in order.
    Written(Vec<paywatch_queue::EnqueueOutcome>),
    /// A record was there first (another run's, or this run's own from a call whose reply was
    /// lost): nothing was written; this is the record that holds.
    Held(Box<StoredOrder>),
}

/// Whether any store of this process has prepared Redis (see [`process_prepared`]).
static PROCESS_PREPARED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process has reached Redis and loaded (or found) the function library: until
/// then its `/readyz` says not ready, however well Redis answers `PING`.
pub fn process_prepared() -> bool {
    PROCESS_PREPARED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Orders under one key prefix, spread over a fixed number of shards.
#[derive(Clone)]
pub struct OrderStore {
    prepared: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conn: RedisConn,
    prefix: String,
    shards: u32,
    durable: Option<DurableWrites>,
    webhook_allow: Option<String>,
    declared_providers: Vec<String>,
}

impl std::fmt::Debug for OrderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderStore")
            .field("prefix", &self.prefix)
            .field("shards", &self.shards)
            .field("durable", &self.durable)
            .field("webhook_allow", &self.webhook_allow)
            .field("declared_providers", &self.declared_providers)
            .finish()
    }
}

fn ms_to_time(ms: &str) -> Option<DateTime<Utc>> {
    ms.parse::<f64>()
        .ok()
        .and_then(|ms| DateTime::from_timestamp_millis(ms as i64))
}

impl OrderStore {
    /// Orders under `prefix` in `shards` shards, over an existing connection. Call
    /// [`OrderStore::prepare`] before use.
    pub fn new(conn: RedisConn, prefix: impl Into<String>, shards: u32) -> Self {
        Self {
            prepared: std::sync::Arc::default(),
            conn,
            prefix: prefix.into(),
            shards: shards.clamp(1, MAX_SHARDS),
            durable: None,
            webhook_allow: None,
            declared_providers: Vec::new(),
        }
    }

    /// Publishes the webhook notifiers' allow-list (from [`crate::ip_ranges::publish_text`]) in
    /// every shard whenever [`OrderStore::prepare`] runs: what a worker serving `notify-webhook`
    /// does, so that submissions are judged by the rule its deliveries follow.
    pub fn with_webhook_allow(mut self, published: String) -> Self {
        self.webhook_allow = Some(published);
        self
    }

    /// Publishes the declared providers this worker checks (their names) in every shard whenever
    /// [`OrderStore::prepare`] runs, so the submit function accepts their orders. Publishing only
    /// adds: a name stays accepted while any worker of the fleet may still serve it.
    pub fn with_declared_providers(mut self, names: Vec<String>) -> Self {
        self.declared_providers = names;
        self
    }

    /// Acknowledges submissions and webhook promotions only once they are as durable as
    /// `durability` asks (replicas, disk); durable writes use their own connections to
    /// `endpoint`, the Redis of the store's connection. Refused on a Cluster.
    pub fn with_durability(
        mut self,
        endpoint: &paywatch_queue::RedisEndpoint,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        if durability.is_required() && endpoint.is_cluster() {
            return Err(StoreError::DurableOnCluster);
        }
        self.durable = durability
            .is_required()
            .then(|| DurableWrites::new(endpoint.clone(), durability));
        Ok(self)
    }

    /// The configured durability, if any.
    pub fn durability(&self) -> Option<Durability> {
        self.durable.as_ref().map(|d| d.durability)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The shard count.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// The keys of one shard.
    pub fn keys(&self, shard: u32) -> ShardKeys {
        ShardKeys::new(&self.prefix, shard)
    }

    /// The keys of the shard an order belongs to.
    pub fn keys_for(&self, order_id: &str) -> ShardKeys {
        self.keys(shard_of(order_id, self.shards))
    }

    /// Loads the function library (unless a newer compatible one is there) and records the shard
    /// count in every shard, refusing a Redis that holds a different one.
    pub async fn prepare(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        library::ensure(&mut conn).await?;
        for shard in 0..self.shards {
            let keys = self.keys(shard);
            let mut pipe = redis::pipe();
            if let Some(published) = &self.webhook_allow {
                // Last writer wins: every notify-webhook worker of a fleet has the same list.
                pipe.cmd("HSET")
                    .arg(&keys.meta)
                    .arg(keys::META_WEBHOOK_ALLOW)
                    .arg(published)
                    .ignore();
            }
            for name in &self.declared_providers {
                pipe.cmd("HSET")
                    .arg(&keys.meta)
                    .arg(format!("{}{name}", keys::META_PROVIDER_PREFIX))
                    .arg(1)
                    .ignore();
            }
            let (_, stored): (i64, Option<u32>) = pipe
                .cmd("HSETNX")
                .arg(&keys.meta)
                .arg(keys::META_SHARDS)
                .arg(self.shards)
                .cmd("HGET")
                .arg(&keys.meta)
                .arg(keys::META_SHARDS)
                .query_async(&mut conn)
                .await?;
            match stored {
                Some(stored) if stored != self.shards => {
                    return Err(StoreError::ShardCount {
                        key: keys.meta,
                        stored,
                        configured: self.shards,
                    });
                }
                _ => {}
            }
        }
        self.prepared
            .store(true, std::sync::atomic::Ordering::Relaxed);
        PROCESS_PREPARED.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// [`OrderStore::prepare`], waiting for Redis while it is down, loading its data or between
    /// primaries (logged once); fails at once on what waiting cannot mend (no Functions, an
    /// incompatible library, a different shard count, missing permissions).
    pub async fn prepare_when_ready(&self) -> Result<(), StoreError> {
        paywatch_queue::until_ready(
            "loading the paywatch function library",
            StoreError::is_unavailable,
            || self.prepare(),
        )
        .await
    }

    /// Runs a function call; when Redis lost the library or the shard records (a restart of a
    /// Redis that keeps nothing on disk), prepares again and retries once. Every function it
    /// runs is idempotent, so a call that met a broken connection (a pooled connection that
    /// died in a failover) is sent once more on a fresh one.
    async fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match self.call_on(&mut conn, cmd).await {
            Err(e) if e.is_broken_connection() => {
                tracing::debug!(error = %e, "a Redis connection broke under a request; retrying it once");
                self.call_on(&mut conn, cmd).await
            }
            other => other,
        }
    }

    /// [`OrderStore::call`] on a given connection.
    async fn call_on<T: redis::FromRedisValue, C: redis::aio::ConnectionLike>(
        &self,
        conn: &mut C,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        match cmd.query_async(conn).await {
            Ok(v) => Ok(v),
            Err(e) if library::is_missing_function(&e) || Self::lost_shard(&e) => {
                tracing::warn!(
                    "the paywatch library or shard records are gone from Redis; loading them again"
                );
                self.prepare().await?;
                Ok(cmd.query_async(conn).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn lost_shard(e: &redis::RedisError) -> bool {
        FieldError::from_reply(e)
            .is_some_and(|f| f.field == "shard" && f.message.starts_with("no paywatch shard"))
    }

    /// Submits an order given as the JSON of `POST /v1/orders`, exactly as a client sent it.
    pub async fn submit_json(&self, body: &[u8]) -> Result<Submitted, SubmitError> {
        Ok(self.submit_json_with_receipt(body).await?.0)
    }

    /// [`OrderStore::submit_json`], also saying what Redis confirmed before the answer (replicas,
    /// the primary's disk): the receipt of a durable acknowledgement.
    pub async fn submit_json_with_receipt(
        &self,
        body: &[u8],
    ) -> Result<(Submitted, Receipt), SubmitError> {
        // The order id, read leniently: only to pick the shard and name a conflict; the function
        // is the judge of the body (an unreadable one gets the same verdict on any shard).
        let order_id = || {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("order_id")?.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        self.submit_body(body, order_id, None).await
    }

    /// [`OrderStore::submit_json_with_receipt`] for a body whose `order_id` the caller has read
    /// already (the HTTP door reads the body once, for its answer): the shard is picked without
    /// parsing the body again. The function still judges the whole body, its order id included.
    pub async fn submit_json_for(
        &self,
        order_id: &str,
        body: &[u8],
    ) -> Result<(Submitted, Receipt), SubmitError> {
        self.submit_body(body, || order_id.to_owned(), None).await
    }

    /// [`OrderStore::submit_json_for`] with the order's W3C trace context (`traceparent`), stored
    /// in place of any `traceparent` field of the body; the function checks it with the same
    /// rules as that field. `order_id` may be unknown (a body the caller could not read).
    pub async fn submit_json_traced(
        &self,
        order_id: Option<&str>,
        body: &[u8],
        traceparent: Option<&str>,
    ) -> Result<(Submitted, Receipt), SubmitError> {
        match order_id {
            Some(id) => self.submit_body(body, || id.to_owned(), traceparent).await,
            None => {
                let order_id = || {
                    serde_json::from_slice::<serde_json::Value>(body)
                        .ok()
                        .and_then(|v| v.get("order_id")?.as_str().map(str::to_owned))
                        .unwrap_or_default()
                };
                self.submit_body(body, order_id, traceparent).await
            }
        }
    }

    /// Submits `body` on the shard of `order_id()` (asked only when needed).
    async fn submit_body(
        &self,
        body: &[u8],
        order_id: impl Fn() -> String,
        traceparent: Option<&str>,
    ) -> Result<(Submitted, Receipt), SubmitError> {
        // One shard (the default): no parse on the submit path at all.
        let keys = if self.shards == 1 {
            self.keys(0)
        } else {
            self.keys_for(&order_id())
        };
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("paywatch_submit").arg(1).arg(&keys.base).arg(body);
        if let Some(tp) = traceparent {
            cmd.arg(tp);
        }
        let reply: Result<(Vec<String>, Receipt), StoreError> = match &self.durable {
            None => self.call(&cmd).await.map(|r| (r, Receipt::default())),
            Some(durable) => self.call_durably(durable, &keys, &cmd).await,
        };
        let (reply, receipt) = match reply {
            Ok(r) => r,
            Err(StoreError::Redis(e)) => {
                return Err(match FieldError::from_reply(&e) {
                    Some(f) if f.is_conflict() => SubmitError::Conflict(order_id()),
                    Some(f) => SubmitError::Invalid(f),
                    None => SubmitError::Store(StoreError::Redis(e)),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let corrupt = |reason: &str| {
            SubmitError::Store(StoreError::Corrupt {
                order_id: order_id(),
                reason: format!("submit replied {reply:?}: {reason}"),
            })
        };
        let submitted = match reply.first().map(String::as_str) {
            Some("created") => Submitted::Created,
            Some("exists") => Submitted::Existing {
                status: reply
                    .get(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| corrupt("status"))?,
                phase: reply
                    .get(2)
                    .and_then(|s| Phase::parse(s))
                    .ok_or_else(|| corrupt("phase"))?,
            },
            _ => return Err(corrupt("outcome")),
        };
        Ok((submitted, receipt))
    }

    /// Runs a submit on a dedicated connection and waits until it is durable. An order that
    /// already existed may have been written by an earlier attempt whose acknowledgement failed:
    /// a marker write makes this connection's `WAIT` cover everything written before it.
    async fn call_durably(
        &self,
        durable: &DurableWrites,
        keys: &ShardKeys,
        cmd: &redis::Cmd,
    ) -> Result<(Vec<String>, Receipt), StoreError> {
        let mut conn = durable.take().await?;
        let reply: Vec<String> = match self.call_on(&mut conn, cmd).await {
            Err(e) if e.is_broken_connection() => {
                // A pooled connection that died (a failover): the submit is idempotent, so
                // send it again on a new connection, to the primary there is now.
                conn = durable.take_new().await?;
                self.call_on(&mut conn, cmd).await?
            }
            other => other?,
        };
        if reply.first().map(String::as_str) != Some("created") {
            self.sync_marker(&mut conn, keys).await?;
        }
        let receipt = durable.wait(&mut conn).await?;
        durable.give_back(conn);
        Ok((reply, receipt))
    }

    /// A write in the shard's slot, so that `WAIT` on `conn` covers every earlier write.
    async fn sync_marker(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        keys: &ShardKeys,
    ) -> Result<(), StoreError> {
        let _: i64 = redis::cmd("INCR").arg(&keys.sync).query_async(conn).await?;
        Ok(())
    }

    /// Submits an order (the Rust door: the same function as every other).
    pub async fn submit(&self, spec: &OrderSpec) -> Result<Submitted, SubmitError> {
        let json = serde_json::to_vec(spec).map_err(StoreError::Encode)?;
        self.submit_json(&json).await
    }

    /// Reads an order.
    pub async fn get(&self, id: &OrderId) -> Result<Option<OrderView>, StoreError> {
        let keys = self.keys_for(id.as_str());
        let mut cmd = redis::cmd("FCALL_RO");
        cmd.arg("paywatch_get")
            .arg(1)
            .arg(&keys.base)
            .arg(id.as_str());
        let reply: Option<Vec<String>> = self.call(&cmd).await?;
        let Some(reply) = reply else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            order_id: id.to_string(),
            reason,
        };
        let [phase, record, due, running, reason, at, notified] = <[String; 7]>::try_from(reply)
            .map_err(|r| corrupt(format!("get replied {} values", r.len())))?;
        let phase = Phase::parse(&phase).ok_or_else(|| corrupt(format!("phase {phase}")))?;
        let record = StoredOrder::from_json(&record).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some(OrderView {
            order_id: id.clone(),
            phase,
            record,
            next_check_at: ms_to_time(&due),
            running: !running.is_empty(),
            stopped: (phase == Phase::Stopped).then(|| Stopped {
                reason,
                at: ms_to_time(&at),
            }),
            notified: !notified.is_empty(),
        }))
    }

    /// Records an order's final record unless one was recorded first; returns the one that holds,
    /// so every run fans out the same notifications.
    pub async fn finalize(
        &self,
        id: &OrderId,
        record: &StoredOrder,
    ) -> Result<StoredOrder, StoreError> {
        let keys = self.keys_for(id.as_str());
        let json = record.to_json().map_err(StoreError::Encode)?;
        let mut cmd = redis::cmd("FCALL");
        // The payment's index entry is named here, so the function need not parse the record
        // (with its whole check history) to find it.
        cmd.arg("paywatch_finalize")
            .arg(1)
            .arg(&keys.base)
            .arg(id.as_str())
            .arg(&json)
            .arg(format!("{}:{}", record.provider, record.payment_id));
        let holds: String = self.call(&cmd).await?;
        // Usually the record that holds is the one just sent: no need to parse it back.
        if holds == json {
            return Ok(record.clone());
        }
        StoredOrder::from_json(&holds).map_err(|e| StoreError::Corrupt {
            order_id: id.to_string(),
            reason: e.to_string(),
        })
    }

    /// Whether [`OrderStore::finalize_notify`] may be used: on one Redis (a Cluster keeps the
    /// notifier queues in slots of their own) without durable acknowledgements (in durable mode
    /// the final record must be on the replicas before anything announces it).
    pub fn finalizes_in_one_call(&self) -> bool {
        self.durable.is_none() && !matches!(self.conn, RedisConn::Cluster(_))
    }

    /// [`OrderStore::finalize`], and in the same call, when the record is written now, one count
    /// in the poll history (`HINCRBY history.0 history.1 1`) and the notification `jobs`
    /// (enqueued as the queue's enqueue does, idempotent on the job id): one round trip for a
    /// final answer. Only where [`OrderStore::finalizes_in_one_call`] says so.
    pub async fn finalize_notify(
        &self,
        id: &OrderId,
        record: &StoredOrder,
        history: (&str, &str),
        jobs: &[FinalJob<'_>],
    ) -> Result<Finalized, StoreError> {
        let keys = self.keys_for(id.as_str());
        let json = record.to_json().map_err(StoreError::Encode)?;
        // Each notifier queue's keys once; each job names its queue by position.
        let mut queues: Vec<&paywatch_queue::Keys> = Vec::new();
        let mut args: Vec<(usize, &str, &str)> = Vec::with_capacity(jobs.len());
        for job in jobs {
            let q = match queues.iter().position(|k| k.jobs == job.queue.jobs) {
                Some(q) => q,
                None => {
                    queues.push(job.queue);
                    queues.len() - 1
                }
            };
            args.push((q + 1, job.id, job.payload));
        }
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("paywatch_finalize_notify")
            .arg(2 + 5 * queues.len())
            .arg(&keys.base)
            .arg(history.0);
        for q in &queues {
            cmd.arg(&q.jobs)
                .arg(&q.due)
                .arg(&q.dead)
                .arg(&q.signal)
                .arg(&q.done);
        }
        cmd.arg(id.as_str())
            .arg(&json)
            .arg(format!("{}:{}", record.provider, record.payment_id))
            .arg(history.1)
            .arg(args.len());
        for (q, job_id, payload) in &args {
            cmd.arg(*q).arg(*job_id).arg(*payload);
        }
        let reply: Vec<redis::Value> = self.call(&cmd).await?;
        let corrupt = |reason: String| StoreError::Corrupt {
            order_id: id.to_string(),
            reason,
        };
        let mut reply = reply.into_iter();
        let (Some(holds), Some(written)) = (reply.next(), reply.next()) else {
            return Err(corrupt(
                "finalize_notify replied fewer than 2 values".into(),
            ));
        };
        let holds: String = redis::from_redis_value(holds).map_err(|e| corrupt(e.to_string()))?;
        let written: i64 = redis::from_redis_value(written).map_err(|e| corrupt(e.to_string()))?;
        if written != 1 {
            if holds == json {
                return Ok(Finalized::Held(Box::new(record.clone())));
            }
            return StoredOrder::from_json(&holds)
                .map(|held| Finalized::Held(Box::new(held)))
                .map_err(|e| corrupt(e.to_string()));
        }
        let outcomes = reply
            .map(|code| {
                let code: i64 =
                    redis::from_redis_value(code).map_err(|e| corrupt(e.to_string()))?;
                paywatch_queue::EnqueueOutcome::from_code(code)
                    .map_err(|e| corrupt(format!("finalize_notify: {e}")))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if outcomes.len() != jobs.len() {
            return Err(corrupt(format!(
                "finalize_notify answered {} of {} jobs",
                outcomes.len(),
                jobs.len()
            )));
        }
        Ok(Finalized::Written(outcomes))
    }

    /// A provider's webhook named this payment: makes the check of every order watching it due
    /// now, but never sooner than `gap` after its previous check (a storm of webhooks costs a
    /// few provider calls, not one each). One call per shard, since the payment does not say
    /// which shard its order is in.
    pub async fn check_now(
        &self,
        provider: Provider,
        payment_id: &PaymentId,
        gap: std::time::Duration,
    ) -> Result<Vec<(OrderId, Promotion)>, StoreError> {
        let mut found = Vec::new();
        let mut durable_conn = match &self.durable {
            Some(d) => Some(d.take().await?),
            None => None,
        };
        for shard in 0..self.shards {
            let mut cmd = redis::cmd("FCALL");
            cmd.arg("paywatch_check_now")
                .arg(1)
                .arg(self.keys(shard).base)
                .arg(provider.as_str())
                .arg(payment_id.as_str())
                .arg(gap.as_millis() as u64);
            let reply: Option<Vec<String>> = match durable_conn.as_mut() {
                Some(conn) => self.call_on(conn, &cmd).await?,
                None => self.call(&cmd).await?,
            };
            let Some(reply) = reply else { continue };
            let mut reply = reply.into_iter();
            let (Some(id), Some(what)) = (reply.next(), reply.next()) else {
                tracing::warn!("paywatch_check_now answered fewer than two values");
                continue;
            };
            // The wake is a trace of its own, linked to the order's.
            if let Some(tp) = reply.next() {
                crate::traces::link_current(&tp);
            }
            let promotion = match what.as_str() {
                "moved" => Promotion::Moved,
                "due" => Promotion::AlreadyDue,
                "running" => Promotion::Running,
                _ => Promotion::NotScheduled,
            };
            match id.parse::<OrderId>() {
                Ok(id) => found.push((id, promotion)),
                Err(e) => tracing::warn!(error = %e, "payment index names an invalid order id"),
            }
        }
        if let (Some(durable), Some(mut conn)) = (&self.durable, durable_conn) {
            // A payment nobody watches wrote nothing and needs no wait. A promotion that changed
            // nothing wrote nothing either; the marker makes WAIT cover the writes it relies on.
            if let Some((id, _)) = found.first() {
                self.sync_marker(&mut conn, &self.keys_for(id.as_str()))
                    .await?;
                durable.wait(&mut conn).await?;
            }
            durable.give_back(conn);
        }
        Ok(found)
    }

    /// Whether this store has prepared Redis and Redis answers now.
    pub async fn ready(&self) -> bool {
        self.prepared.load(std::sync::atomic::Ordering::Relaxed) && self.ping().await
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }

    /// Waits until an order's final record ([`OrderStore::finalize`], written on the shared
    /// connection) is as durable as configured (replicas, disk): what a worker does before it
    /// announces the order, so a failover cannot lose a transition that was announced. At once
    /// without durability; [`StoreError::NotDurable`] when it is not durable within the timeout.
    pub async fn wait_final_durable(&self, id: &OrderId) -> Result<(), StoreError> {
        let Some(durable) = &self.durable else {
            return Ok(());
        };
        let mut conn = durable.take().await?;
        // The marker, written after the final record, makes this connection's WAIT cover it.
        self.sync_marker(&mut conn, &self.keys_for(id.as_str()))
            .await?;
        durable.wait(&mut conn).await?;
        durable.give_back(conn);
        Ok(())
    }
}
