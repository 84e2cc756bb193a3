//! The hub: state shared by every clone of one queue handle in this process.
//!
//! Queue handles (`queue.rs`), the backend's fetch loop (`fetch.rs`), the settle batcher
//! (`settler.rs`), lease upkeep (`lease.rs`) and the wake-up listener (`wake.rs`) all meet here,
//! and only here, so none of them depends on another's internals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::conn::{RedisConn, RedisEndpoint};
use tokio::sync::{mpsc, oneshot};

use crate::QueueConfig;
use crate::keys::Keys;
use crate::metrics as m;
use crate::settle::{SettleOp, SettleRequest};
use crate::wake::Wakeup;

/// State shared by every clone of one queue handle in this process.
pub(crate) struct Shared {
    /// Opens the wake-up listener's dedicated connection: its blocking `BLPOP` must not stall
    /// the multiplexed connection every other call shares.
    pub(crate) client: RedisEndpoint,
    /// The one multiplexed, self-reconnecting connection for scripts and commands, so a process
    /// holds one socket per queue however many workers it runs.
    pub(crate) conn: RedisConn,
    /// The queue's key names, computed once.
    pub(crate) keys: Keys,
    /// How the queue behaves (lease, batches, retry policy).
    pub(crate) config: QueueConfig,
    /// Jobs this process holds leases on, id → lease token: what lease upkeep extends, what a
    /// shutdown releases, and the token a settle must present.
    pub(crate) held: Mutex<HashMap<String, String>>,
    /// Where settles go: one channel for all workers of the process, so they are written in
    /// batches and in order (a flush answers only after everything sent before it).
    pub(crate) settle_tx: mpsc::UnboundedSender<SettleRequest>,
    /// The settler's end of `settle_tx`, taken by whichever worker starts the background tasks.
    pub(crate) settle_rx: Mutex<Option<mpsc::UnboundedReceiver<SettleRequest>>>,
    /// Wake-up plumbing between idle workers and the signal listener; an `Arc` because the
    /// listener holds it only weakly, to end when the last handle is gone.
    pub(crate) wakeup: Arc<Wakeup>,
    /// Durable mode: the connection fetches run on, so the `WAIT` after a fetch runs on the
    /// server that took it (a connection that never reconnects: broken means start over).
    pub(crate) durable_fetch: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// Whether the settler and listener were spawned: once per process, by the first worker.
    pub(crate) background_started: AtomicBool,
    /// Whether the last Redis call succeeded, so outages are logged once, not per call.
    redis_up: AtomicBool,
    /// Redis outages seen so far (up → down transitions). A fetch after an outage first flushes
    /// pending settles and re-extends held leases, or it could reclaim and re-run this process's
    /// own finished-but-unsettled jobs.
    outages: AtomicU64,
    /// The value of `outages` when pending settles and held leases were last brought up to date.
    synced_outages: AtomicU64,
    /// Which connection this hub's `conn` is: fresh for each connect, shared by siblings, so
    /// queues known to sit on one Redis can share a script call.
    pub(crate) origin: u64,
}

/// Source of [`Shared::origin`] values.
static ORIGINS: AtomicU64 = AtomicU64::new(0);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("queue", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The hub of a new queue handle.
    pub(crate) fn new(client: RedisEndpoint, conn: RedisConn, config: QueueConfig) -> Self {
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        Self {
            client,
            conn,
            keys: Keys::new(&config.prefix, &config.name),
            config,
            held: Mutex::new(HashMap::new()),
            settle_tx,
            settle_rx: Mutex::new(Some(settle_rx)),
            wakeup: Arc::new(Wakeup::default()),
            background_started: AtomicBool::new(false),
            durable_fetch: tokio::sync::Mutex::new(None),
            redis_up: AtomicBool::new(true),
            outages: AtomicU64::new(0),
            synced_outages: AtomicU64::new(0),
            origin: ORIGINS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The leases this process holds (id → token).
    pub(crate) fn held(&self) -> MutexGuard<'_, HashMap<String, String>> {
        // A poisoned map only means a panic elsewhere; the data (id → token) is still valid.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the held leases, so no lock is held across a Redis call.
    pub(crate) fn held_snapshot(&self) -> Vec<(String, String)> {
        self.held()
            .iter()
            .map(|(id, token)| (id.clone(), token.clone()))
            .collect()
    }

    /// Records the outcome of a Redis call: logs transitions, counts outages, updates the `up`
    /// gauge.
    pub(crate) fn observe<R>(&self, what: &str, result: &Result<R, redis::RedisError>) {
        let queue = self.config.name.clone();
        match result {
            Ok(_) => {
                if !self.redis_up.swap(true, Ordering::SeqCst) {
                    tracing::info!(queue = %queue, "redis connection restored");
                    metrics::counter!(m::REDIS_RECONNECTS_TOTAL, "queue" => queue.clone())
                        .increment(1);
                    metrics::gauge!(m::REDIS_UP, "queue" => queue).set(1.0);
                }
            }
            Err(e) => {
                metrics::counter!(m::REDIS_ERRORS_TOTAL, "queue" => queue.clone(), "op" => what.to_string()).increment(1);
                if self.redis_up.swap(false, Ordering::SeqCst) {
                    self.outages.fetch_add(1, Ordering::SeqCst);
                    if crate::conn::is_transient(e) {
                        tracing::warn!(queue = %queue, op = what, error = %e, "redis unavailable; retrying with backoff");
                    } else {
                        // Not an outage: waiting mends nothing until someone fixes the cause,
                        // most often the Redis user's permissions (docs/operations.md).
                        tracing::error!(queue = %queue, op = what, error = %e, "redis refused this queue's command (check the permissions of REDIS_URL's user); retrying with backoff");
                    }
                    metrics::gauge!(m::REDIS_UP, "queue" => queue).set(0.0);
                } else {
                    tracing::debug!(queue = %queue, op = what, error = %e, "redis still unavailable");
                }
            }
        }
    }

    /// Whether settles and leases must be brought up to date before the next fetch: Redis was
    /// away since they last were (or still is).
    pub(crate) fn needs_resync(&self) -> Option<u64> {
        let outages = self.outages.load(Ordering::SeqCst);
        let stale = outages != self.synced_outages.load(Ordering::SeqCst)
            || !self.redis_up.load(Ordering::SeqCst);
        stale.then_some(outages)
    }

    /// Writes every settle sent so far, then extends every held lease; true when both reached
    /// Redis. `outages` (from [`Shared::needs_resync`]) is marked synced on success.
    pub(crate) async fn resync(&self, outages: u64) -> bool {
        let (tx, rx) = oneshot::channel();
        let sent = self.settle_tx.send(SettleRequest::Flush {
            reply: tx,
            extend_leases: true,
        });
        let synced = sent.is_ok() && rx.await.unwrap_or(false);
        if synced {
            self.synced_outages.store(outages, Ordering::SeqCst);
        }
        synced
    }

    /// Sends a settle and waits until it is durable: `Some(applied)`, or `None` if the settler
    /// is gone. `applied` is false when the lease was lost.
    pub(crate) async fn settle(&self, id: &str, token: &str, op: SettleOp) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        self.settle_tx
            .send(SettleRequest::Settle {
                id: id.to_string(),
                token: token.to_string(),
                op,
                reply: Some(tx),
            })
            .ok()?;
        rx.await.ok()
    }

    /// Sends a settle without waiting for it.
    pub(crate) fn settle_later(&self, id: &str, token: &str, op: SettleOp) {
        let _ = self.settle_tx.send(SettleRequest::Settle {
            id: id.to_string(),
            token: token.to_string(),
            op,
            reply: None,
        });
    }

    /// Waits until every settle sent so far is written.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        let flush = SettleRequest::Flush {
            reply: tx,
            extend_leases: false,
        };
        if self.settle_tx.send(flush).is_ok() {
            let _ = rx.await;
        }
    }
}
