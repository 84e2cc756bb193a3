//! Building the workers a process runs, and draining them on shutdown.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::*;
use futures::FutureExt;
use futures::future::BoxFuture;
use paywatch_core::store::{OrderStore, StoredOrder, check_queue};
use paywatch_core::{Channel, Notification, queues};
use paywatch_queue::{QueueConfig, QueueError, RedisQueue};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::check::{CheckContext, check_payment};
use crate::config::WorkerConfig;
use crate::fanout::Fanout;
use crate::gate::Gate;
use crate::notify::deliver::{self, NotifyContext, deliver};
use crate::ops::{self, OpsDigest, OpsWatcher, deliver_digest};
use crate::schedules::{PollMode, Schedules};

/// A worker process: its queues and what their handlers need.
#[derive(Debug)]
pub struct App {
    config: WorkerConfig,
    conn: paywatch_queue::RedisConn,
    /// Shard 0's check queue: the connection every other queue handle is a sibling of.
    base: RedisQueue<StoredOrder>,
    check_context: CheckContext,
    notify_context: NotifyContext,
    /// The providers this process has credentials for.
    providers_configured: Vec<paywatch_core::Provider>,
}

/// Something that hands back the leases a process still holds on one queue.
type Release = Box<dyn Fn() -> BoxFuture<'static, Result<usize, QueueError>> + Send + Sync>;

fn releaser<T: 'static>(queue: &RedisQueue<T>) -> Release {
    let queue = queue.clone();
    Box::new(move || {
        let queue = queue.clone();
        Box::pin(async move { queue.release_held().await })
    })
}

/// Stops a worker when the shared stop signal turns true.
fn stopper(stop: watch::Receiver<bool>) -> Stopper {
    Box::new(move |ctx| {
        let mut stop = stop.clone();
        Box::pin(async move {
            let _ = stop.wait_for(|s| *s).await;
            ctx.stop()?;
            Ok(())
        })
    })
}

impl App {
    /// Checks the configuration, connects and wires everything, in three steps: (1) every
    /// setting is checked and everything that needs no Redis is built, so a bad setting
    /// (named by its variable) is refused before anything connects; (2) connect; (3) publish
    /// to Redis (the function library, the shard count, the webhook allow-list), last, once
    /// nothing but serving is left.
    pub async fn build(config: WorkerConfig) -> anyhow::Result<Self> {
        // (1) Check: nothing below needs Redis.
        let checked = config.check()?;

        // (2) Connect.
        let base: RedisQueue<StoredOrder> =
            RedisQueue::connect(&config.redis_url, Self::check_queue_config(&config, 0))
                .await
                .context("REDIS_URL")?;
        // The queues' connection, shared: one socket (or one per Cluster node) per process.
        let conn = base.connection();
        let notify_context = checked.notify_context(conn.clone(), &config.prefix)?;
        let mut store = OrderStore::new(conn.clone(), &config.prefix, config.shards);
        if let Some(published) = checked.webhook_allow {
            // Submissions are judged by the allow-list this notifier delivers under.
            store = store.with_webhook_allow(published);
        }
        if config.queues.iter().any(|q| q == queues::CHECK_PAYMENT) {
            // The submit function accepts a declared provider's orders once a checker serves it.
            let declared = checked.providers_config.declared.iter();
            store = store.with_declared_providers(
                declared
                    .map(|r| r.definition.provider.as_str().to_owned())
                    .collect(),
            );
        }
        if config.durability().is_required() {
            // Durable mode: a final status is on the replicas before it is announced.
            let endpoint = paywatch_queue::RedisEndpoint::open(config.redis_url.expose())
                .context("REDIS_URL")?;
            store = store
                .with_durability(&endpoint, config.durability())
                .context("PAYWATCH_DURABLE_REPLICAS")?;
        }
        let rate_limits = checked
            .definitions
            .iter()
            .fold(config.rate_limits(), |limits, d| {
                limits.with_declared(d.provider, d.rate_limit)
            });
        let gate = Gate::new(
            conn.clone(),
            &config.prefix,
            &checked.providers_config,
            &rate_limits,
            config.rate_young_share,
            config.breaker(checked.providers_config.request_timeout),
        );
        let providers_configured = configured(&checked.providers_config);
        let policies = checked.policies;
        let check_context = CheckContext {
            providers: checked.providers,
            gate,
            schedules: Schedules::new(config.schedule_config(), &config.prefix, &policies),
            policies,
            store,
            fanout: Fanout::new(&base),
            rejected: Arc::new(Mutex::new(HashSet::new())),
            conn: conn.clone(),
            prefix: config.prefix.clone(),
        };

        // (3) Publish, last: a process that stopped above has written nothing.
        check_context.store.prepare_when_ready().await?;
        Ok(Self {
            config,
            conn,
            base,
            check_context,
            notify_context,
            providers_configured,
        })
    }

    fn check_queue_config(config: &WorkerConfig, shard: u32) -> QueueConfig {
        QueueConfig::new(check_queue(shard))
            .with_prefix(&config.prefix)
            .with_lease(config.lease)
            .with_batch_size(config.concurrency)
    }

    fn serves(&self, queue: &str) -> bool {
        self.config.queues.iter().any(|q| q == queue)
    }

    /// Runs until `shutdown` completes, then stops fetching, lets in-flight jobs finish within
    /// the grace period and hands back the leases of those that did not.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let name = self.config.worker_name();
        let concurrency = self.config.concurrency;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut pools = Pools::new(&name, stop_rx.clone());
        pools.helper(self.health_reporter(&name).run(stop_rx.clone()));
        if self.serves(queues::CHECK_PAYMENT) {
            let start = starter!(
                check_payment,
                Arc::new(self.check_context.clone()),
                concurrency
            );
            // One pool per shard: each shard's queue is served as fairly as any other.
            let shards = self
                .config
                .served_shards()
                .into_iter()
                .map(|shard| {
                    self.base
                        .sibling(Self::check_queue_config(&self.config, shard).with_holder(&name))
                })
                .collect();
            pools.pool(shards, start);
            if self.config.poll_mode == PollMode::Adaptive {
                let schedules = self.check_context.schedules.clone();
                pools.helper(schedules.run_refresh(self.conn.clone(), stop_rx.clone()));
            }
        }
        for channel in [Channel::Email, Channel::Telegram, Channel::Webhook] {
            if self.serves(channel.queue()) {
                // Durable mode: a delivery's ack is on the replicas before the next fetch.
                let config = deliver::queue_config(channel, &self.config.prefix)
                    .with_lease(self.config.lease)
                    .with_batch_size(concurrency)
                    .with_holder(&name)
                    .with_durable_settles(self.config.durable_settles());
                let queue: RedisQueue<Notification> = self.base.sibling(config);
                pools.pool(
                    vec![queue],
                    starter!(deliver, Arc::new(self.notify_context.clone()), concurrency),
                );
            }
        }
        if self.serves(queues::NOTIFY_OPS) {
            let queue: RedisQueue<OpsDigest> = self
                .base
                .sibling(ops::queue_config(&self.config.prefix).with_holder(&name));
            let start = starter!(
                deliver_digest,
                Arc::new(self.notify_context.clone()),
                OPS_CONCURRENCY
            );
            pools.pool(vec![queue.clone()], start);
            pools.helper(self.ops_watcher(&name, queue).run(stop_rx));
        }
        tracing::info!(worker = %name, queues = ?self.config.queues, concurrency, "worker started");
        pools
            .drain(shutdown, stop_tx, self.config.grace_period)
            .await
    }

    /// This process's health report: its queues and, when it checks payments, the breakers of
    /// the providers it has credentials for.
    fn health_reporter(&self, name: &str) -> crate::health::Reporter {
        let breakers = if self.serves(queues::CHECK_PAYMENT) {
            let configured = &self.providers_configured;
            self.check_context
                .gate
                .breaker_keys()
                .into_iter()
                .filter(|(p, _)| configured.contains(p))
                .collect()
        } else {
            Vec::new()
        };
        crate::health::Reporter {
            conn: self.conn.clone(),
            prefix: self.config.prefix.clone(),
            name: name.to_owned(),
            queues: self.config.queues.clone(),
            breakers,
        }
    }

    /// The fleet's ops watcher candidate in this process: it reports every other queue's dead
    /// letters through `ops`.
    fn ops_watcher(&self, name: &str, ops: RedisQueue<OpsDigest>) -> OpsWatcher {
        let shards = (0..self.config.shards).map(check_queue);
        let watched = queues::ALL
            .iter()
            .filter(|q| **q != queues::NOTIFY_OPS && **q != queues::CHECK_PAYMENT)
            .map(|q| q.to_string())
            .chain(shards)
            .map(|q| {
                self.base
                    .sibling(QueueConfig::new(q).with_prefix(&self.config.prefix))
            })
            .collect();
        OpsWatcher {
            conn: self.conn.clone(),
            prefix: self.config.prefix.clone(),
            name: name.to_owned(),
            targets: self.config.ops_targets(),
            ops,
            watched,
        }
    }
}

/// The providers `config` has credentials for.
fn configured(config: &paywatch_core::ProvidersConfig) -> Vec<paywatch_core::Provider> {
    use paywatch_core::Provider;
    [
        (Provider::Cashless, config.cashless.is_some()),
        (Provider::HandCash, config.handcash.is_some()),
        (Provider::MiracleCash, config.miraclecash.is_some()),
        (Provider::FoxReload, config.foxreload.is_some()),
    ]
    .into_iter()
    .filter_map(|(p, on)| on.then_some(p))
    .chain(config.declared.iter().map(|r| r.definition.provider))
    .collect()
}

/// Digests are rare (at most one per interval and destination): two at once is plenty.
const OPS_CONCURRENCY: usize = 2;

/// How often each queue's depth gauges are refreshed.
const DEPTH_INTERVAL: Duration = Duration::from_secs(10);

/// A running worker pool.
type Running = JoinHandle<Result<(), WorkerError>>;

/// How a pool starts its worker: given the worker's name, its queue handle and the stop signal,
/// the future that runs it until stopped.
type Start<T> =
    Box<dyn Fn(String, RedisQueue<T>, Stopper) -> BoxFuture<'static, Result<(), WorkerError>>>;

/// What stops one worker: the closure apalis runs beside it.
type Stopper = Box<dyn FnMut(WorkerContext) -> BoxFuture<'static, Result<(), WorkerError>> + Send>;

/// The [`Start`] for pools running `handler` with `data` (cloned per worker, and by apalis per
/// job: hence an `Arc`, not the context itself), panics caught and `concurrency` jobs at once.
/// A macro, not a function: spelled out generically, apalis' bounds on a layered worker service
/// run to a dozen lines per type parameter.
macro_rules! starter {
    ($handler:expr, $data:expr, $concurrency:expr) => {{
        let data = $data;
        let concurrency: usize = $concurrency;
        Box::new(move |name: String, queue, stop: Stopper| {
            WorkerBuilder::new(name)
                .backend(queue)
                .data(data.clone())
                .catch_panic()
                .concurrency(concurrency)
                .build($handler)
                .run_with_ctx(stop)
                .boxed()
        }) as Start<_>
    }};
}
use starter;

/// The worker pools of a process, and what shutdown needs to drain them.
struct Pools {
    /// The process's worker name; each pool is `<name>/<queue>`.
    name: String,
    /// Turns true when the process shuts down.
    stop: watch::Receiver<bool>,
    /// One entry per pool.
    running: Vec<Running>,
    /// Hands back the leases each pool's queue still holds, for after the grace period.
    releases: Vec<Release>,
    /// Background tasks that end with the process (depth gauges, the ops watcher).
    helpers: Vec<JoinHandle<()>>,
}

impl Pools {
    fn new(name: &str, stop: watch::Receiver<bool>) -> Self {
        Self {
            name: name.to_owned(),
            stop,
            running: Vec::new(),
            releases: Vec::new(),
            helpers: Vec::new(),
        }
    }

    /// Starts one worker pool per queue handle (for example one per shard of a queue), each
    /// named after its queue, drained on shutdown and publishing its queue's depth.
    fn pool<T: Send + Sync + 'static>(&mut self, queues: Vec<RedisQueue<T>>, start: Start<T>) {
        for queue in queues {
            let name = format!("{}/{}", self.name, queue.config().name);
            let run = start(name, queue.clone(), stopper(self.stop.clone()));
            self.running.push(tokio::spawn(run));
            self.releases.push(releaser(&queue));
            self.helper(export_depth(queue, self.stop.clone()));
        }
    }

    /// Runs `task` until the process ends.
    fn helper(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.helpers.push(tokio::spawn(task));
    }

    /// Waits for `shutdown`, then stops every pool, gives in-flight jobs `grace` to finish and
    /// hands back the leases of those that did not.
    async fn drain(
        self,
        shutdown: impl Future<Output = ()> + Send,
        stop: watch::Sender<bool>,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let aborts: Vec<_> = self.running.iter().map(JoinHandle::abort_handle).collect();
        let all_done = futures::future::join_all(self.running);
        tokio::pin!(all_done);
        tokio::select! {
            _ = shutdown => {}
            results = &mut all_done => {
                // Workers only end by themselves on a bug: surface it rather than idle.
                return Err(anyhow::anyhow!("workers stopped unexpectedly: {results:?}"));
            }
        }
        tracing::info!(?grace, "shutting down: finishing in-flight jobs");
        let _ = stop.send(true);
        if tokio::time::timeout(grace, &mut all_done).await.is_ok() {
            tracing::info!("in-flight jobs finished");
        } else {
            for task in &aborts {
                task.abort();
            }
            let mut released = 0;
            for release in &self.releases {
                released += release().await.unwrap_or(0);
            }
            tracing::warn!(
                released,
                "grace period over; handed unfinished jobs back to the queue"
            );
        }
        for helper in self.helpers {
            helper.abort();
        }
        Ok(())
    }
}

/// Publishes a queue's depth per state as gauges, for dashboards, alerts and autoscalers.
async fn export_depth<T>(queue: RedisQueue<T>, stop: watch::Receiver<bool>) {
    paywatch_queue::export_depth(queue, DEPTH_INTERVAL, stop).await
}
