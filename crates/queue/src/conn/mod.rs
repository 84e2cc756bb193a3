//! One Redis, a Redis Cluster, or a Sentinel-watched primary: the connections every paywatch
//! process uses.
//!
//! `REDIS_URL` is read in one place ([`RedisEndpoint::open`], see `url.rs` for the forms). Callers
//! get a [`RedisConn`], a cheap-to-clone multiplexed connection that opens on first use and
//! reconnects by itself: to one server, it reconnects to the same address; on a Cluster it
//! routes each command by its keys (which is why every script of paywatch touches keys of one
//! hash tag only) and follows the Cluster's topology; through Sentinel it asks the sentinels
//! for the primary again after a failover. Nothing here waits for Redis: [`until_ready`] does,
//! where a process starts.

mod ready;
mod sentinel;
mod url;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value};

pub use self::ready::{is_transient, until_ready};
pub use self::sentinel::SentinelConn;
pub use self::sentinel::SentinelResolver;
use self::url::Target;
pub use self::url::UrlError;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is: one server, a Cluster's seed nodes, or the sentinels of a primary.
// A process holds a handful of these, made once at start-up: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum RedisEndpoint {
    /// One server.
    Single(redis::Client),
    /// A Redis Cluster (boxed: its client is much larger than a server's).
    Cluster(Box<ClusterClient>),
    /// A primary found through Sentinel.
    Sentinel(Arc<SentinelResolver>),
}

impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs may carry passwords: say only which kind.
        f.write_str(match self {
            Self::Single(_) => "RedisEndpoint::Single",
            Self::Cluster(_) => "RedisEndpoint::Cluster",
            Self::Sentinel(_) => "RedisEndpoint::Sentinel",
        })
    }
}

/// A multiplexed connection to one server, a Cluster, or a Sentinel-named primary.
#[derive(Clone)]
pub enum RedisConn {
    /// To one server, reconnecting by itself.
    Single(ConnectionManager),
    /// To a Cluster, routing by key and following the Cluster's topology; opened on first use.
    Cluster(LazyCluster),
    /// To the primary Sentinel names now.
    Sentinel(SentinelConn),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConn::Single",
            Self::Cluster(_) => "RedisConn::Cluster",
            Self::Sentinel(_) => "RedisConn::Sentinel",
        })
    }
}

impl RedisConn {
    /// `INFO <sections>` of every primary: the one server, the primary Sentinel names now, or
    /// each primary of a Cluster (named by its address; the others are named `primary`). Read
    /// only, for the operator's view of Redis's health.
    pub async fn info_per_primary(&self, sections: &[&str]) -> RedisResult<Vec<(String, String)>> {
        let mut cmd = redis::cmd("INFO");
        for section in sections {
            cmd.arg(*section);
        }
        match self {
            Self::Cluster(lazy) => {
                use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
                let mut conn = lazy.get().await?;
                let reply = conn
                    .route_command(
                        cmd,
                        RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
                    )
                    .await?;
                let Value::Map(nodes) = reply else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Parse,
                        "INFO of every primary: not a map of nodes",
                    )));
                };
                let mut infos = Vec::with_capacity(nodes.len());
                for (node, info) in nodes {
                    let node: String = redis::from_redis_value(node)?;
                    let info: String = redis::from_redis_value(info)?;
                    infos.push((node, info));
                }
                infos.sort();
                Ok(infos)
            }
            _ => {
                let info: String = cmd.query_async(&mut self.clone()).await?;
                Ok(vec![("primary".to_owned(), info)])
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
        }
    }
}

/// A Cluster connection opened on first use (and retried on the next use until it opens), so
/// a process can start before the Cluster answers.
#[derive(Clone)]
pub struct LazyCluster {
    client: Box<ClusterClient>,
    config: redis::cluster::ClusterConfig,
    conn: Arc<tokio::sync::OnceCell<ClusterConnection>>,
}

impl std::fmt::Debug for LazyCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LazyCluster")
    }
}

impl LazyCluster {
    async fn get(&self) -> RedisResult<ClusterConnection> {
        self.conn
            .get_or_try_init(|| {
                self.client
                    .get_async_connection_with_config(self.config.clone())
            })
            .await
            .cloned()
    }
}

impl ConnectionLike for LazyCluster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move { self.get().await?.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.get()
                .await?
                .req_packed_commands(cmd, offset, count)
                .await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl RedisEndpoint {
    /// Reads `REDIS_URL` (one server, a Cluster's comma-separated seed nodes, or
    /// `redis+sentinel://…`); contacts nothing.
    pub fn open(url: &str) -> Result<Self, UrlError> {
        let invalid = |e: redis::RedisError| {
            UrlError(format!(
                "cannot be used ({})",
                e.detail().unwrap_or_else(|| e.category())
            ))
        };
        Ok(match url::parse(url)? {
            Target::Single(info) => Self::Single(redis::Client::open(info).map_err(invalid)?),
            Target::Cluster(nodes) => Self::Cluster(Box::new(
                ClusterClient::builder(nodes)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(Duration::from_secs(5))
                    .build()
                    .map_err(invalid)?,
            )),
            Target::Sentinel(target) => {
                Self::Sentinel(Arc::new(SentinelResolver::new(target).map_err(invalid)?))
            }
        })
    }

    /// Whether this is a Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The shared connection; opens on first use (a process may start before Redis does).
    pub fn managed(&self, config: ConnectionManagerConfig) -> RedisResult<RedisConn> {
        Ok(match self {
            Self::Single(client) => RedisConn::Single(ConnectionManager::new_lazy_with_config(
                client.clone(),
                config,
            )?),
            Self::Cluster(client) => RedisConn::Cluster(LazyCluster {
                client: client.clone(),
                config: redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(Duration::from_secs(5)),
                conn: Arc::default(),
            }),
            Self::Sentinel(resolver) => {
                RedisConn::Sentinel(SentinelConn::new(resolver.clone(), Duration::from_secs(5)))
            }
        })
    }

    /// A connection of its own, for blocking commands (`BLPOP`) that would hold up a shared one.
    pub async fn dedicated(&self, response_timeout: Duration) -> RedisResult<RedisConn> {
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(0);
                Ok(RedisConn::Single(
                    ConnectionManager::new_with_config(client.clone(), config).await?,
                ))
            }
            Self::Cluster(client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(response_timeout);
                Ok(RedisConn::Cluster(LazyCluster {
                    conn: Arc::new(tokio::sync::OnceCell::new_with(Some(
                        client
                            .get_async_connection_with_config(config.clone())
                            .await?,
                    ))),
                    client: client.clone(),
                    config,
                }))
            }
            Self::Sentinel(resolver) => Ok(RedisConn::Sentinel(SentinelConn::new(
                resolver.clone(),
                response_timeout,
            ))),
        }
    }

    /// A plain connection to the primary (one server, or the one Sentinel names now) that no
    /// other request shares: for `WAIT`, which counts the writes of the connection that asks.
    /// `None` on a Cluster, where a write's primary depends on its key.
    pub async fn exclusive(
        &self,
        response_timeout: Duration,
    ) -> Option<RedisResult<MultiplexedConnection>> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        Some(match self {
            Self::Single(client) => {
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
            }
            Self::Sentinel(resolver) => match resolver.primary().await {
                Ok(client) => {
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                }
                Err(e) => Err(e),
            },
            Self::Cluster(_) => return None,
        })
    }
}
