//! Durable acknowledgements: an order (or a webhook's promotion) is acknowledged only once Redis
//! replicas hold it (`WAIT`), and optionally once the primary's append-only file has it on disk
//! (`WAITAOF`, Redis 7.2+). See docs/durability.md for the trade-off.
//!
//! `WAIT` counts the writes of the connection that asks, and blocks that connection while it
//! waits. So durable writes run on dedicated connections, one request at a time each (a small
//! pool reuses them), never on the shared multiplexed one where a replica outage would queue
//! every other request behind each timeout.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use paywatch_queue::RedisEndpoint;
use redis::aio::MultiplexedConnection;

use super::StoreError;

/// How durable a write must be before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// Replicas that must acknowledge the write (`WAIT <replicas>`); 0 asks none.
    pub replicas: u32,
    /// Also wait until the primary has the write in its append-only file on disk
    /// (`WAITAOF 1 0`); skipped, with one warning, on a Redis older than 7.2.
    pub local_fsync: bool,
    /// How long to wait for either before answering "not durable yet".
    pub timeout: Duration,
}

impl Durability {
    /// Whether this asks for anything beyond Redis' own acknowledgement.
    pub fn is_required(&self) -> bool {
        self.replicas > 0 || self.local_fsync
    }
}

/// What Redis confirmed about an acknowledged write: the receipt a shop can log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Receipt {
    /// Replicas that acknowledged the write (`WAIT`); `None` when none were asked for
    /// (`PAYWATCH_DURABLE_REPLICAS=0`): then only the primary had it when it was acknowledged.
    pub replicas_acknowledged: Option<u32>,
    /// Whether the primary's append-only file had it on disk (`WAITAOF`); `None` when not asked
    /// for (`PAYWATCH_DURABLE_FSYNC` off) or when the server has no `WAITAOF`.
    pub primary_fsynced: Option<bool>,
}

/// Idle dedicated connections kept for reuse.
const POOL: usize = 32;

/// Dedicated connections for durable writes, and what the server supports.
#[derive(Clone)]
pub(crate) struct DurableWrites {
    endpoint: RedisEndpoint,
    pub(crate) durability: Durability,
    idle: Arc<Mutex<Vec<MultiplexedConnection>>>,
    /// `Some(false)` once the server answered that it has no `WAITAOF`.
    waitaof: Arc<Mutex<Option<bool>>>,
}

impl std::fmt::Debug for DurableWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableWrites")
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl DurableWrites {
    pub(crate) fn new(endpoint: RedisEndpoint, durability: Durability) -> Self {
        Self {
            endpoint,
            durability,
            idle: Arc::new(Mutex::new(Vec::new())),
            waitaof: Arc::new(Mutex::new(None)),
        }
    }

    /// A connection no other request is using.
    pub(crate) async fn take(&self) -> Result<MultiplexedConnection, StoreError> {
        if let Some(conn) = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
        {
            return Ok(conn);
        }
        // Through Sentinel this is the primary it names now: a failover is followed by the
        // next connection taken, and connections to the old primary fail and are not given back.
        match self
            .endpoint
            .exclusive(self.durability.timeout + Duration::from_secs(5))
            .await
        {
            Some(conn) => Ok(conn?),
            None => Err(StoreError::DurableOnCluster),
        }
    }

    /// A new connection, after a pooled one broke: the other idle ones likely did too.
    pub(crate) async fn take_new(&self) -> Result<MultiplexedConnection, StoreError> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.take().await
    }

    /// Hands a connection back after a request that went well.
    pub(crate) fn give_back(&self, conn: MultiplexedConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < POOL {
            idle.push(conn);
        }
    }

    /// Waits until the writes made so far on `conn` are as durable as configured.
    pub(crate) async fn wait(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Receipt, StoreError> {
        let mut receipt = Receipt::default();
        let d = self.durability;
        let timeout_ms = u64::try_from(d.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        if d.replicas > 0 {
            let acked: u32 = redis::cmd("WAIT")
                .arg(d.replicas)
                .arg(timeout_ms)
                .query_async(conn)
                .await?;
            if acked < d.replicas {
                return Err(StoreError::NotDurable {
                    what: "replicas",
                    acked,
                    wanted: d.replicas,
                    within: d.timeout,
                });
            }
            receipt.replicas_acknowledged = Some(acked);
        }
        if d.local_fsync && self.may_have_waitaof() {
            let reply: redis::RedisResult<(u32, u32)> = redis::cmd("WAITAOF")
                .arg(1)
                .arg(0)
                .arg(timeout_ms)
                .query_async(conn)
                .await;
            let local = match reply {
                Ok((local, _replicas)) => local,
                // Judged by what the server does, not its version string (Valkey says 7.2.4).
                Err(e)
                    if e.to_string()
                        .to_ascii_lowercase()
                        .contains("unknown command") =>
                {
                    self.learn_no_waitaof();
                    return Ok(receipt);
                }
                Err(e) => return Err(e.into()),
            };
            if local < 1 {
                return Err(StoreError::NotDurable {
                    what: "local append-only file",
                    acked: local,
                    wanted: 1,
                    within: d.timeout,
                });
            }
            receipt.primary_fsynced = Some(true);
        }
        Ok(receipt)
    }

    /// Whether `WAITAOF` is worth sending: not once the server said it has none.
    fn may_have_waitaof(&self) -> bool {
        *self.waitaof.lock().unwrap_or_else(PoisonError::into_inner) != Some(false)
    }

    /// Records, and warns once, that the server has no `WAITAOF` (before Redis 7.2).
    fn learn_no_waitaof(&self) {
        let mut known = self.waitaof.lock().unwrap_or_else(PoisonError::into_inner);
        if known.is_none() {
            tracing::warn!(
                "PAYWATCH_DURABLE_FSYNC needs WAITAOF (Redis 7.2+, Valkey 7.2+); this server has \
                 none, so acknowledgements wait for replicas only"
            );
        }
        *known = Some(false);
    }
}
