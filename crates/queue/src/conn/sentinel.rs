//! A connection to the primary that Sentinel names, which follows a failover without a restart.
//!
//! redis-rs finds the primary (asking each sentinel, then checking the node's `ROLE`), but its
//! connections stay with the node they were opened to. [`SentinelConn`] keeps one multiplexed
//! connection to the current primary and forgets it when the connection breaks or the node
//! answers `READONLY` (it was demoted), so the next call asks the sentinels again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::ready::is_transient;
use super::url::SentinelTarget;

/// Finds the current primary: the sentinels and how to talk to the primary.
pub struct SentinelResolver {
    client: tokio::sync::Mutex<SentinelClient>,
    db: i64,
}

impl SentinelResolver {
    /// A resolver for `target` (nothing is contacted yet).
    pub(crate) fn new(target: SentinelTarget) -> RedisResult<Self> {
        let SentinelTarget {
            sentinels,
            service,
            node,
            tls,
        } = target;
        let addrs = sentinels.iter().map(|s| s.addr().clone());
        let first = sentinels.first().map(|s| s.redis_settings().clone());
        let mut builder = SentinelClientBuilder::new(addrs, service, SentinelServerType::Master)?;
        if let Some(auth) = first {
            if let Some(user) = auth.username() {
                builder = builder.set_client_to_sentinel_username(user);
            }
            if let Some(password) = auth.password() {
                builder = builder.set_client_to_sentinel_password(password);
            }
        }
        if let Some(user) = node.username() {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = node.password() {
            builder = builder.set_client_to_redis_password(password);
        }
        if tls {
            builder = builder
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
        }
        builder = builder.set_client_to_redis_db(node.db());
        Ok(Self {
            client: tokio::sync::Mutex::new(builder.build()?),
            db: node.db(),
        })
    }

    /// A client for the node the sentinels name as primary now (its role checked).
    pub(crate) async fn primary(&self) -> RedisResult<redis::Client> {
        self.client.lock().await.async_get_client().await
    }
}

/// A cheap-to-clone connection to the Sentinel-named primary, re-resolved after a failover.
#[derive(Clone)]
pub struct SentinelConn {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SentinelConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SentinelConn")
    }
}

impl std::fmt::Debug for SentinelResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Holds passwords: name only the database.
        f.debug_struct("SentinelResolver")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

struct Inner {
    resolver: Arc<SentinelResolver>,
    config: AsyncConnectionConfig,
    /// The connection in use, with a generation so that only the failing one is forgotten.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
}

impl SentinelConn {
    /// A connection that opens on first use.
    pub(crate) fn new(resolver: Arc<SentinelResolver>, response_timeout: Duration) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout));
        Self {
            inner: Arc::new(Inner {
                resolver,
                config,
                current: Mutex::new(None),
                generation: AtomicU64::new(0),
            }),
        }
    }

    async fn get(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.current().clone() {
            return Ok(current);
        }
        let client = self.inner.resolver.primary().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.inner.config)
            .await?;
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let mut current = self.current();
        // Another caller may have resolved meanwhile: keep theirs, so every caller shares one.
        Ok(current.get_or_insert((generation, conn)).clone())
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<(u64, MultiplexedConnection)>> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// After an error: forget the connection if it is broken or leads to a demoted node.
    fn judge<T>(&self, generation: u64, result: &RedisResult<T>) {
        if let Err(e) = result
            && (is_transient(e)
                || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
        {
            let mut current = self.current();
            if current.as_ref().is_some_and(|(g, _)| *g == generation) {
                tracing::info!(error = %e, "the Sentinel primary's connection failed; asking the sentinels again");
                *current = None;
            }
        }
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.get().await?;
            let result = conn.req_packed_command(cmd).await;
            self.judge(generation, &result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.get().await?;
            let result = conn.req_packed_commands(cmd, offset, count).await;
            self.judge(generation, &result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.resolver.db
    }
}
