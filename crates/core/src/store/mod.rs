//! Order records in Redis: what the producer accepted and what the worker has seen since.
//!
//! One HASH per order, `<prefix>:order:{<order_id>}`, with a bounded LIST of observations beside
//! it (`…:history`); both share the order's hash tag so every update is one atomic script. The
//! check-payment job carries the order's immutable [`OrderSpec`]; the mutable poll state lives
//! here, so re-submitting an order compares equal for as long as it exists.
//!
//! Fields: `spec` (JSON), `created_at`, `status`, `raw_status`, `checks`, `next_check_at` (Unix
//! ms), `poll` (the [`PollState`] JSON), `last_error`, `terminal_at`, `codes` (FoxReload delivered
//! codes, for the notifiers only), `notified` (set once the notification jobs of the terminal
//! status are enqueued).

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::Script;
use serde::{Deserialize, Serialize};

pub use crate::order::OrderSpec;
use crate::{OrderId, PaymentId, PaymentStatus, PollState, Provider};

/// Observations kept per order.
pub const HISTORY_LEN: usize = 50;

static CREATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("create.lua")));
static OBSERVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("observe.lua")));
static TRANSITION: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("transition.lua")));

/// What happened when an order was submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new order record.
    New,
    /// The same order was already there, with this status.
    Existing(PaymentStatus),
    /// Another order with this id and a different body exists.
    Conflict,
}

/// One entry of an order's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it was observed.
    pub at: DateTime<Utc>,
    /// The normalized status, when the check got an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PaymentStatus>,
    /// The provider's raw status, when the check got an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_status: Option<String>,
    /// Provider context (cancel reason, item errors); never delivered codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The error class and message when the check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What paywatch decided: "check again in 4.5s", "terminal", "gave up: deadline", ...
    pub decision: String,
}

/// An order's record as stored. `Debug` leaves out the delivered codes.
#[derive(Clone, PartialEq, Serialize)]
pub struct OrderRecord {
    /// The order as submitted.
    pub spec: OrderSpec,
    /// When paywatch accepted it.
    pub created_at: DateTime<Utc>,
    /// The normalized status.
    pub status: PaymentStatus,
    /// The provider's last raw status.
    pub raw_status: Option<String>,
    /// Checks that got an answer.
    pub checks: u32,
    /// When the next check is due.
    pub next_check_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub terminal_at: Option<DateTime<Utc>>,
    /// The last error, while polling goes on.
    pub last_error: Option<String>,
    /// Whether the terminal status's notifications were enqueued.
    pub notified: bool,
    /// Where polling stands (absent before the first check).
    #[serde(skip)]
    pub poll: Option<PollState>,
    /// Codes delivered with a paid FoxReload order; for the notifiers only, never serialized.
    #[serde(skip)]
    pub delivered_codes: Vec<String>,
}

impl std::fmt::Debug for OrderRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderRecord")
            .field("order_id", &self.spec.order_id)
            .field("provider", &self.spec.provider)
            .field("status", &self.status)
            .field("raw_status", &self.raw_status)
            .field("checks", &self.checks)
            .field("next_check_at", &self.next_check_at)
            .field("terminal_at", &self.terminal_at)
            .field("notified", &self.notified)
            .finish_non_exhaustive()
    }
}

/// Errors reading or writing order records.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
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
}

/// Order records under one key prefix.
#[derive(Clone)]
pub struct OrderStore {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for OrderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl OrderStore {
    /// Order records under `prefix`, over an existing connection.
    pub fn new(conn: redis::aio::ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
        }
    }

    /// The order's HASH key.
    pub fn order_key(&self, id: &OrderId) -> String {
        format!("{}:order:{{{}}}", self.prefix, id.as_str())
    }

    fn history_key(&self, id: &OrderId) -> String {
        format!("{}:history", self.order_key(id))
    }

    /// Creates the record unless the order exists; compares bodies when it does.
    pub async fn create(
        &self,
        spec: &OrderSpec,
        now: DateTime<Utc>,
    ) -> Result<Created, StoreError> {
        let json = spec.canonical_json().map_err(StoreError::Encode)?;
        let mut conn = self.conn.clone();
        let reply: Vec<String> = CREATE
            .key(self.order_key(&spec.order_id))
            .arg(json)
            .arg(now.to_rfc3339())
            .invoke_async(&mut conn)
            .await?;
        let status = |i: usize| {
            reply
                .get(i)
                .and_then(|s| s.parse().ok())
                .unwrap_or(PaymentStatus::Pending)
        };
        Ok(match reply.first().map(String::as_str) {
            Some("created") => Created::New,
            Some("exists") => Created::Existing(status(1)),
            _ => Created::Conflict,
        })
    }

    /// Reads an order's record.
    pub async fn get(&self, id: &OrderId) -> Result<Option<OrderRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.order_key(id))
            .query_async(&mut conn)
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let corrupt = |reason: String| StoreError::Corrupt {
            order_id: id.to_string(),
            reason,
        };
        let spec: OrderSpec = serde_json::from_str(fields.get("spec").map_or("", String::as_str))
            .map_err(|e| corrupt(format!("spec: {e}")))?;
        let time = |name: &str| -> Option<DateTime<Utc>> {
            fields
                .get(name)
                .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let created_at = time("created_at").ok_or_else(|| corrupt("created_at".into()))?;
        Ok(Some(OrderRecord {
            spec,
            created_at,
            status: fields
                .get("status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(PaymentStatus::Pending),
            raw_status: fields.get("raw_status").cloned().filter(|s| !s.is_empty()),
            checks: fields
                .get("checks")
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            next_check_at: fields
                .get("next_check_at")
                .and_then(|ms| ms.parse::<i64>().ok())
                .and_then(DateTime::<Utc>::from_timestamp_millis),
            terminal_at: time("terminal_at"),
            last_error: fields.get("last_error").cloned().filter(|s| !s.is_empty()),
            notified: fields.get("notified").is_some_and(|v| v == "1"),
            poll: fields
                .get("poll")
                .and_then(|p| serde_json::from_str(p).ok()),
            delivered_codes: fields
                .get("codes")
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or_default(),
        }))
    }

    /// The newest `limit` history entries, newest first.
    pub async fn history(
        &self,
        id: &OrderId,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(self.history_key(id))
            .arg(0)
            .arg(limit.max(1) as i64 - 1)
            .query_async(&mut conn)
            .await?;
        Ok(raw
            .iter()
            .filter_map(|e| serde_json::from_str(e).ok())
            .collect())
    }

    /// Records a check of an open order (or a failed attempt at one).
    pub async fn observe(
        &self,
        id: &OrderId,
        state: &PollState,
        next_check_at: Option<DateTime<Utc>>,
        entry: &HistoryEntry,
        last_error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let applied: i64 = OBSERVE
            .key(self.order_key(id))
            .key(self.history_key(id))
            .arg(entry.status.unwrap_or(PaymentStatus::Pending).to_string())
            .arg(entry.raw_status.as_deref().unwrap_or(""))
            .arg(
                next_check_at
                    .map(|t| t.timestamp_millis().to_string())
                    .unwrap_or_default(),
            )
            .arg(serde_json::to_string(state).map_err(StoreError::Encode)?)
            .arg(serde_json::to_string(entry).map_err(StoreError::Encode)?)
            .arg(HISTORY_LEN)
            .arg(if entry.status.is_some() { "1" } else { "0" })
            .arg(last_error.unwrap_or(""))
            .invoke_async(&mut conn)
            .await?;
        Ok(applied == 1)
    }

    /// Moves the order to a terminal status unless one was recorded first. Returns whether this
    /// call won, and the status that holds.
    pub async fn transition(
        &self,
        id: &OrderId,
        status: PaymentStatus,
        entry: &HistoryEntry,
        delivered_codes: &[String],
    ) -> Result<(bool, PaymentStatus), StoreError> {
        let codes = if delivered_codes.is_empty() {
            String::new()
        } else {
            serde_json::to_string(delivered_codes).map_err(StoreError::Encode)?
        };
        let mut conn = self.conn.clone();
        let (won, holds): (i64, String) = TRANSITION
            .key(self.order_key(id))
            .key(self.history_key(id))
            .arg(status.to_string())
            .arg(entry.raw_status.as_deref().unwrap_or(""))
            .arg(entry.at.to_rfc3339())
            .arg(serde_json::to_string(entry).map_err(StoreError::Encode)?)
            .arg(HISTORY_LEN)
            .arg(if entry.status.is_some() { "1" } else { "0" })
            .arg(codes)
            .invoke_async(&mut conn)
            .await?;
        Ok((won == 1, holds.parse().unwrap_or(status)))
    }

    fn payment_key(&self, provider: Provider, payment_id: &PaymentId) -> String {
        format!(
            "{}:payment:{{{provider}:{}}}",
            self.prefix,
            payment_id.as_str()
        )
    }

    /// Remembers which order watches a provider's payment, so a provider webhook (which names
    /// only the payment) finds its order. The first order to claim a payment keeps it.
    pub async fn index_payment(&self, spec: &OrderSpec) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: Option<String> = redis::cmd("SET")
            .arg(self.payment_key(spec.provider, &spec.payment_id))
            .arg(spec.order_id.as_str())
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The order watching a provider's payment, if any.
    pub async fn order_for_payment(
        &self,
        provider: Provider,
        payment_id: &PaymentId,
    ) -> Result<Option<OrderId>, StoreError> {
        let mut conn = self.conn.clone();
        let id: Option<String> = redis::cmd("GET")
            .arg(self.payment_key(provider, payment_id))
            .query_async(&mut conn)
            .await?;
        Ok(id.and_then(|id| id.parse().ok()))
    }

    /// Marks the terminal status's notifications as enqueued.
    pub async fn mark_notified(&self, id: &OrderId) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("HSET")
            .arg(self.order_key(id))
            .arg("notified")
            .arg("1")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
