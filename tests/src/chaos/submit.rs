//! How the run's orders go in, as shops send them: `POST /v1/orders` to the producer's API, and
//! `FCALL paywatch_submit` from the shop's own Redis client (docs/enqueue-from-any-language.md),
//! each retried until it is acknowledged. In durable mode an `FCALL` counts as acknowledged only
//! once `WAIT` on the same connection says a replica has it, as that page tells shops to do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use paywatch_core::store::{ShardKeys, shard_of};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use tokio::sync::Semaphore;

use super::scenario::PlannedOrder;
use super::topology::SERVICE;
use crate::stack::Stack;

/// How long a shop's `WAIT` for one replica blocks before the shop asks again.
const WAIT_MS: u64 = 500;

/// Connections a shop keeps to the primary: `WAIT` blocks the connection it is sent on, so one
/// connection would hold every submission behind each wait.
const POOL: usize = 8;

/// The door an order goes in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `POST /v1/orders`.
    Http,
    /// `FCALL paywatch_submit` from the shop's Redis client.
    Fcall,
}

/// What the submitter saw: acknowledgements, and how soon each door answered again after the
/// failover.
#[derive(Debug, Default)]
pub struct Acks {
    /// Orders acknowledged so far.
    pub count: AtomicUsize,
    /// Of those, per door: HTTP, FCALL.
    pub per_door: [AtomicUsize; 2],
    /// When each order was acknowledged (by plan index).
    pub at: Mutex<Vec<Option<DateTime<Utc>>>>,
    /// The moment the primary was killed, once it was.
    pub kill: OnceLock<Instant>,
    /// The shards the killed node served (all of them behind Sentinel; on a Cluster, those whose
    /// slot the killed master held), set just before the kill.
    pub affected: OnceLock<Vec<u32>>,
    /// Per door (HTTP, FCALL): from the kill to the first acknowledgement of a request sent
    /// after it, for an order of an affected shard.
    pub resumed: Mutex<[Option<Duration>; 2]>,
}

impl Acks {
    /// Room for `n` orders.
    pub fn new(n: usize) -> Self {
        Self {
            at: Mutex::new(vec![None; n]),
            ..Self::default()
        }
    }

    fn acknowledged(&self, index: usize, shard: u32, door: Door, sent: Instant) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.per_door[door as usize].fetch_add(1, Ordering::SeqCst);
        if let Some(slot) = self
            .at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(index)
        {
            *slot = Some(Utc::now());
        }
        if let Some(kill) = self.kill.get()
            && sent >= *kill
            && self.affected.get().is_some_and(|a| a.contains(&shard))
        {
            let mut resumed = self.resumed.lock().unwrap_or_else(|e| e.into_inner());
            let slot = &mut resumed[door as usize];
            slot.get_or_insert(kill.elapsed());
        }
    }

    /// Orders acknowledged before `moment`, by plan index.
    pub fn before(&self, moment: DateTime<Utc>) -> Vec<(usize, DateTime<Utc>)> {
        self.at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .enumerate()
            .filter_map(|(i, at)| at.filter(|at| *at < moment).map(|at| (i, at)))
            .collect()
    }
}

/// A shop's Redis client for the `FCALL` door: one server, a Sentinel-named primary (redis-rs's
/// own Sentinel client), or a Cluster (redis-rs's Cluster client, routing by the shard key).
pub enum ShopClient {
    /// One server.
    Single(redis::Client, Vec<Cached<MultiplexedConnection>>),
    /// The primary the sentinels name; a connection is dropped on any error and the sentinels
    /// asked again.
    Sentinel(
        tokio::sync::Mutex<SentinelClient>,
        Vec<Cached<MultiplexedConnection>>,
    ),
    /// A Cluster.
    Cluster(Box<ClusterClient>, Cached<ClusterConnection>),
}

/// A connection opened on first use and forgotten when it fails.
type Cached<C> = tokio::sync::Mutex<Option<C>>;

fn pool<C>() -> Vec<Cached<C>> {
    (0..POOL).map(|_| Default::default()).collect()
}

impl std::fmt::Debug for ShopClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShopClient")
    }
}

fn config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_millis(WAIT_MS + 2000)))
}

impl ShopClient {
    /// A client for one server (`redis://…`).
    pub fn single(url: &str) -> redis::RedisResult<Self> {
        Ok(Self::Single(redis::Client::open(url)?, pool()))
    }

    /// A client for the primary the sentinels on `ports` name.
    pub fn sentinel(ports: &[u16]) -> redis::RedisResult<Self> {
        let sentinels: Vec<String> = ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        let client = SentinelClient::build(sentinels, SERVICE, None, SentinelServerType::Master)?;
        Ok(Self::Sentinel(tokio::sync::Mutex::new(client), pool()))
    }

    /// A client for the Cluster whose nodes are on `ports`.
    pub fn cluster(ports: &[u16]) -> redis::RedisResult<Self> {
        let nodes: Vec<String> = ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        let client = ClusterClient::builder(nodes)
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(2))
            .build()?;
        Ok(Self::Cluster(Box::new(client), Default::default()))
    }

    /// Submits one order; `Ok(true)` once it is acknowledged (and, when `durable`, a replica
    /// has it), `Ok(false)` when the shop should ask again, `Err` for a refusal.
    async fn submit(
        &self,
        slot: usize,
        key: &str,
        body: &str,
        durable: bool,
    ) -> Result<bool, String> {
        let mut fcall = redis::cmd("FCALL");
        fcall.arg("paywatch_submit").arg(1).arg(key).arg(body);
        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(WAIT_MS);
        match self {
            Self::Single(client, pool) => {
                let cached = &pool[slot % POOL];
                let mut conn = match connection(cached, || async {
                    client
                        .get_multiplexed_async_connection_with_config(&config())
                        .await
                })
                .await
                {
                    Some(conn) => conn,
                    None => return Ok(false),
                };
                answer(&mut conn, cached, &fcall, durable.then_some(&wait)).await
            }
            Self::Sentinel(sentinel, pool) => {
                let cached = &pool[slot % POOL];
                let mut conn = match connection(cached, || async {
                    let client = sentinel.lock().await.async_get_client().await?;
                    client
                        .get_multiplexed_async_connection_with_config(&config())
                        .await
                })
                .await
                {
                    Some(conn) => conn,
                    None => return Ok(false),
                };
                answer(&mut conn, cached, &fcall, durable.then_some(&wait)).await
            }
            Self::Cluster(client, cached) => {
                let mut conn = match connection(cached, || client.get_async_connection()).await {
                    Some(conn) => conn,
                    None => return Ok(false),
                };
                // Durable mode is refused on a Cluster; the run never asks for it there.
                answer(&mut conn, cached, &fcall, None).await
            }
        }
    }
}

/// The cached connection, or a new one (`None` while nothing answers).
async fn connection<C, F, Fut>(cached: &Cached<C>, open: F) -> Option<C>
where
    C: Clone,
    F: FnOnce() -> Fut,
    Fut: Future<Output = redis::RedisResult<C>>,
{
    let mut slot = cached.lock().await;
    if slot.is_none() {
        *slot = open().await.ok();
    }
    slot.clone()
}

/// Sends the `FCALL` (and the `WAIT`), forgetting the connection when it failed.
async fn answer<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    cached: &Cached<C>,
    fcall: &redis::Cmd,
    wait: Option<&redis::Cmd>,
) -> Result<bool, String> {
    match fcall.query_async::<Vec<String>>(conn).await {
        Ok(_) => {}
        // The function's own verdicts; the run sends only valid orders.
        Err(e) if e.to_string().contains("paywatch:") => return Err(e.to_string()),
        Err(_) => {
            *cached.lock().await = None;
            return Ok(false);
        }
    }
    let Some(wait) = wait else { return Ok(true) };
    match wait.query_async::<u64>(conn).await {
        Ok(replicas) => Ok(replicas >= 1),
        Err(_) => {
            *cached.lock().await = None;
            Ok(false)
        }
    }
}

/// Submits every planned order at `rate` per second, each retried until it is acknowledged (a
/// Redis restart or failover makes the doors fail for a moment). With a shop client, every
/// second order goes in by `FCALL`, the others over HTTP.
#[allow(clippy::too_many_arguments)]
pub async fn submit_all(
    stack: Arc<Stack>,
    api: String,
    plan: Arc<Vec<PlannedOrder>>,
    webhook_url: String,
    rate: f64,
    shop: Option<Arc<ShopClient>>,
    durable: bool,
    acks: Arc<Acks>,
) {
    let in_flight = Arc::new(Semaphore::new(32));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    for i in 0..plan.len() {
        tick.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (stack, api, plan, url, acks, shop) = (
            stack.clone(),
            api.clone(),
            plan.clone(),
            webhook_url.clone(),
            acks.clone(),
            shop.clone(),
        );
        tokio::spawn(async move {
            let order = &plan[i];
            let payment_id = stack.payment(order.payment.clone());
            let body = order.body(&payment_id, &url);
            let door = match &shop {
                Some(_) if i % 2 == 1 => Door::Fcall,
                _ => Door::Http,
            };
            let shard = shard_of(&order.order_id, stack.shards);
            let key = ShardKeys::new(&stack.prefix, shard).base;
            let text = body.to_string();
            loop {
                let sent = Instant::now();
                let verdict = match (door, &shop) {
                    (Door::Fcall, Some(shop)) => shop.submit(i, &key, &text, durable).await,
                    _ => match stack
                        .http
                        .post(format!("{api}/v1/orders"))
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => Ok(true),
                        Ok(r) if r.status().is_client_error() => Err(r.status().to_string()),
                        _ => Ok(false),
                    },
                };
                match verdict {
                    Ok(true) => {
                        acks.acknowledged(i, shard, door, sent);
                        break;
                    }
                    Err(refusal) => {
                        eprintln!("chaos: {} refused: {refusal}", order.order_id);
                        break;
                    }
                    Ok(false) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            drop(permit);
        });
    }
}
