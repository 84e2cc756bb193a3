//! One Redis, or a Redis Cluster: the connections every paywatch process uses.
//!
//! `REDIS_URL` names one server (`redis://host:6379`) or, comma-separated, the seed nodes of a
//! Cluster (`redis://a:7000,redis://b:7001,redis://c:7002`). Either way callers get a
//! [`RedisConn`], a cheap-to-clone multiplexed connection that reconnects by itself; on a Cluster
//! it routes each command by its keys, which is why every script of paywatch touches keys of one
//! hash tag only.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// Where Redis is: one server, or a Cluster's seed nodes.
#[derive(Clone)]
pub enum RedisEndpoint {
    /// One server.
    Single(redis::Client),
    /// A Redis Cluster (boxed: its client is much larger than a server's).
    Cluster(Box<ClusterClient>),
}

impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs may carry passwords: say only which kind.
        f.write_str(match self {
            Self::Single(_) => "RedisEndpoint::Single",
            Self::Cluster(_) => "RedisEndpoint::Cluster",
        })
    }
}

/// A multiplexed connection to one server or to a Cluster.
#[derive(Clone)]
pub enum RedisConn {
    /// To one server, reconnecting by itself.
    Single(ConnectionManager),
    /// To a Cluster, routing by key and following the Cluster's topology.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConn::Single",
            Self::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
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
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisEndpoint {
    /// Parses `REDIS_URL`: one URL, or several comma-separated for a Cluster's seed nodes.
    pub fn open(url: &str) -> RedisResult<Self> {
        let urls: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.len() > 1 {
            Ok(Self::Cluster(Box::new(
                ClusterClient::builder(urls)
                    .connection_timeout(Duration::from_secs(2))
                    .response_timeout(Duration::from_secs(5))
                    .build()?,
            )))
        } else {
            Ok(Self::Single(redis::Client::open(url.trim())?))
        }
    }

    /// Whether this is a Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The shared connection: lazy for one server (a process may start before Redis does).
    pub async fn managed(&self, config: ConnectionManagerConfig) -> RedisResult<RedisConn> {
        match self {
            Self::Single(client) => Ok(RedisConn::Single(ConnectionManager::new_lazy_with_config(
                client.clone(),
                config,
            )?)),
            Self::Cluster(client) => Ok(RedisConn::Cluster(client.get_async_connection().await?)),
        }
    }

    /// A connection of its own, for blocking commands (`BLPOP`) that would hold up a shared one.
    pub async fn dedicated(&self, response_timeout: Duration) -> RedisResult<RedisConn> {
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(0);
                Ok(RedisConn::Single(
                    ConnectionManager::new_with_config(client.clone(), config).await?,
                ))
            }
            Self::Cluster(client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(response_timeout);
                Ok(RedisConn::Cluster(
                    client.get_async_connection_with_config(config).await?,
                ))
            }
        }
    }
}
