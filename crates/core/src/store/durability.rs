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

/// Idle dedicated connections kept for reuse.
const POOL: usize = 32;

/// Dedicated connections for durable writes, and what the server supports.
#[derive(Clone)]
pub(crate) struct DurableWrites {
    client: redis::Client,
    pub(crate) durability: Durability,
    idle: Arc<Mutex<Vec<MultiplexedConnection>>>,
    /// `Some(false)` once we learnt that the server has no `WAITAOF`.
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
    pub(crate) fn new(client: redis::Client, durability: Durability) -> Self {
        Self {
            client,
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
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(self.durability.timeout + Duration::from_secs(5)));
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// Hands a connection back after a request that went well.
    pub(crate) fn give_back(&self, conn: MultiplexedConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < POOL {
            idle.push(conn);
        }
    }

    /// Waits until the writes made so far on `conn` are as durable as configured.
    pub(crate) async fn wait(&self, conn: &mut MultiplexedConnection) -> Result<(), StoreError> {
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
        }
        if d.local_fsync && self.has_waitaof(conn).await? {
            let (local, _replicas): (u32, u32) = redis::cmd("WAITAOF")
                .arg(1)
                .arg(0)
                .arg(timeout_ms)
                .query_async(conn)
                .await?;
            if local < 1 {
                return Err(StoreError::NotDurable {
                    what: "local append-only file",
                    acked: local,
                    wanted: 1,
                    within: d.timeout,
                });
            }
        }
        Ok(())
    }

    /// Whether the server has `WAITAOF` (Redis 7.2+); learnt once, warned about once.
    async fn has_waitaof(&self, conn: &mut MultiplexedConnection) -> Result<bool, StoreError> {
        if let Some(known) = *self.waitaof.lock().unwrap_or_else(PoisonError::into_inner) {
            return Ok(known);
        }
        let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("0")
            .trim()
            .to_owned();
        let supported = version_at_least(&version, (7, 2));
        if !supported {
            tracing::warn!(
                %version,
                "PAYWATCH_DURABLE_FSYNC needs WAITAOF (Redis 7.2+); this Redis has none, so \
                 acknowledgements wait for replicas only"
            );
        }
        *self.waitaof.lock().unwrap_or_else(PoisonError::into_inner) = Some(supported);
        Ok(supported)
    }
}

/// Whether `version` ("7.0.15") is at least `(major, minor)`.
fn version_at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(!version_at_least("7.0.15", (7, 2)));
        assert!(version_at_least("7.2.0", (7, 2)));
        assert!(version_at_least("8.0.1", (7, 2)));
        assert!(!version_at_least("garbage", (7, 2)));
    }
}
