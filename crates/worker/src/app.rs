//! Building the workers a process runs, and draining them on shutdown.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::*;
use futures::future::BoxFuture;
use paywatch_core::store::{OrderStore, StoredOrder, check_queue};
use paywatch_core::{Channel, Notification, ProviderClient, queues};
use paywatch_queue::{QueueConfig, QueueError, RedisQueue};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::check::{CheckContext, check_payment};
use crate::config::WorkerConfig;
use crate::fanout::Fanout;
use crate::notify::deliver::{self, NotifyContext, deliver};
use crate::ops::{self, OpsDigest, OpsWatcher, deliver_digest};

/// A worker process: its queues and what their handlers need.
#[derive(Debug)]
pub struct App {
    config: WorkerConfig,
    conn: redis::aio::ConnectionManager,
    /// Shard 0's check queue: the connection every other queue handle is a sibling of.
    base: RedisQueue<StoredOrder>,
    check_context: CheckContext,
    notify_context: NotifyContext,
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
fn stopper(
    stop: watch::Receiver<bool>,
) -> impl FnMut(WorkerContext) -> BoxFuture<'static, Result<(), WorkerError>> + Send + 'static {
    move |ctx| {
        let mut stop = stop.clone();
        Box::pin(async move {
            let _ = stop.wait_for(|s| *s).await;
            ctx.stop()?;
            Ok(())
        })
    }
}

impl App {
    /// Connects and wires everything; fails on bad configuration, naming the variable.
    pub async fn build(config: WorkerConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let base: RedisQueue<StoredOrder> =
            RedisQueue::connect(&config.redis_url, Self::check_queue_config(&config, 0)).await?;
        let client = redis::Client::open(config.redis_url.as_str())?;
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(
            client,
            redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_number_of_retries(2),
        )?;
        let store = OrderStore::new(conn.clone(), &config.prefix, config.shards);
        store.prepare().await?;
        let check_context = CheckContext {
            providers: ProviderClient::new(&config.providers_config()?)?,
            policies: config.poll_policies()?,
            store,
            fanout: Fanout::new(&base),
            rejected: Arc::new(Mutex::new(HashSet::new())),
            conn: conn.clone(),
            prefix: config.prefix.clone(),
        };
        let notify_context = config.notify_context(conn.clone())?;
        Ok(Self {
            config,
            conn,
            base,
            check_context,
            notify_context,
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
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut running: Vec<(&str, JoinHandle<Result<(), WorkerError>>)> = Vec::new();
        let mut releases: Vec<Release> = Vec::new();
        let mut helpers: Vec<JoinHandle<()>> = Vec::new();
        let concurrency = self.config.concurrency;

        if self.serves(queues::CHECK_PAYMENT) {
            // One pool per shard: each shard's queue is served as fairly as any other.
            for shard in self.config.served_shards() {
                let queue: RedisQueue<StoredOrder> = self
                    .base
                    .sibling(Self::check_queue_config(&self.config, shard));
                let worker = WorkerBuilder::new(format!("{name}/{}", queue.config().name))
                    .backend(queue.clone())
                    .data(self.check_context.clone())
                    .catch_panic()
                    .concurrency(concurrency)
                    .build(check_payment);
                running.push((
                    queues::CHECK_PAYMENT,
                    tokio::spawn(worker.run_with_ctx(stopper(stop_rx.clone()))),
                ));
                releases.push(releaser(&queue));
                helpers.push(tokio::spawn(export_depth(queue, stop_rx.clone())));
            }
        }
        for channel in [Channel::Email, Channel::Telegram, Channel::Webhook] {
            if !self.serves(channel.queue()) {
                continue;
            }
            let queue: RedisQueue<Notification> = self.base.sibling(
                deliver::queue_config(channel, &self.config.prefix)
                    .with_lease(self.config.lease)
                    .with_batch_size(concurrency),
            );
            let worker = WorkerBuilder::new(format!("{name}/{}", channel.queue()))
                .backend(queue.clone())
                .data(self.notify_context.clone())
                .catch_panic()
                .concurrency(concurrency)
                .build(deliver);
            running.push((
                channel.queue(),
                tokio::spawn(worker.run_with_ctx(stopper(stop_rx.clone()))),
            ));
            releases.push(releaser(&queue));
            helpers.push(tokio::spawn(export_depth(queue, stop_rx.clone())));
        }
        if self.serves(queues::NOTIFY_OPS) {
            let queue: RedisQueue<OpsDigest> =
                self.base.sibling(ops::queue_config(&self.config.prefix));
            let worker = WorkerBuilder::new(format!("{name}/{}", queues::NOTIFY_OPS))
                .backend(queue.clone())
                .data(self.notify_context.clone())
                .catch_panic()
                .concurrency(2)
                .build(deliver_digest);
            running.push((
                queues::NOTIFY_OPS,
                tokio::spawn(worker.run_with_ctx(stopper(stop_rx.clone()))),
            ));
            releases.push(releaser(&queue));
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
            let watcher = OpsWatcher {
                conn: self.conn.clone(),
                prefix: self.config.prefix.clone(),
                name: name.clone(),
                targets: self.config.ops_targets(),
                ops: queue,
                watched,
            };
            helpers.push(tokio::spawn(watcher.run(stop_rx.clone())));
        }
        tracing::info!(worker = %name, queues = ?self.config.queues, concurrency, "worker started");

        let aborts: Vec<_> = running
            .iter()
            .map(|(_, task)| task.abort_handle())
            .collect();
        let all_done = futures::future::join_all(running.into_iter().map(|(_, task)| task));
        tokio::pin!(all_done);
        tokio::select! {
            _ = shutdown => {}
            results = &mut all_done => {
                // Workers only end by themselves on a bug: surface it rather than idle.
                return Err(anyhow::anyhow!("workers stopped unexpectedly: {results:?}"));
            }
        }
        tracing::info!(grace = ?self.config.grace_period, "shutting down: finishing in-flight jobs");
        let _ = stop_tx.send(true);
        if tokio::time::timeout(self.config.grace_period, &mut all_done)
            .await
            .is_ok()
        {
            tracing::info!("in-flight jobs finished");
        } else {
            for task in &aborts {
                task.abort();
            }
            let mut released = 0;
            for release in &releases {
                released += release().await.unwrap_or(0);
            }
            tracing::warn!(
                released,
                "grace period over; handed unfinished jobs back to the queue"
            );
        }
        for helper in helpers {
            helper.abort();
        }
        Ok(())
    }
}

/// Publishes a queue's depth per state as gauges, for dashboards, alerts and autoscalers.
async fn export_depth<T>(queue: RedisQueue<T>, stop: watch::Receiver<bool>) {
    paywatch_queue::metrics::export_depth(queue, DEPTH_EVERY, stop).await
}

/// How often a worker reads the depth of the queues it serves (one small script each).
const DEPTH_EVERY: Duration = Duration::from_secs(5);
