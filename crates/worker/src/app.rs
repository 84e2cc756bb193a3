//! Building the workers a process runs, and draining them on shutdown.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use apalis::prelude::*;
use paywatch_core::store::{OrderSpec, OrderStore};
use paywatch_core::{ProviderClient, queues};
use paywatch_queue::{QueueConfig, RedisQueue};
use tokio::sync::watch;

use crate::check::{CheckContext, check_payment};
use crate::config::WorkerConfig;
use crate::fanout::Fanout;

/// A worker process: its queues and what their handlers need.
#[derive(Debug)]
pub struct App {
    config: WorkerConfig,
    checks: RedisQueue<OrderSpec>,
    context: CheckContext,
}

impl App {
    /// Connects and wires everything; fails on bad configuration, naming the variable.
    pub async fn build(config: WorkerConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let queue_config = QueueConfig::new(queues::CHECK_PAYMENT)
            .with_prefix(&config.prefix)
            .with_lease(config.lease)
            .with_batch_size(config.concurrency);
        let checks: RedisQueue<OrderSpec> =
            RedisQueue::connect(&config.redis_url, queue_config).await?;
        let client = redis::Client::open(config.redis_url.as_str())?;
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(
            client,
            redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
                .set_number_of_retries(2),
        )?;
        let context = CheckContext {
            providers: ProviderClient::new(&config.providers_config()?)?,
            policies: config.poll_policies()?,
            store: OrderStore::new(conn, &config.prefix),
            fanout: Fanout::new(&checks),
            rejected: Arc::new(Mutex::new(HashSet::new())),
        };
        Ok(Self {
            config,
            checks,
            context,
        })
    }

    /// Runs until `shutdown` completes, then stops fetching, lets in-flight jobs finish within
    /// the grace period and hands back the leases of those that did not.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let name = self.config.worker_name();
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = WorkerBuilder::new(format!("{name}/{}", queues::CHECK_PAYMENT))
            .backend(self.checks.clone())
            .data(self.context.clone())
            .catch_panic()
            .concurrency(self.config.concurrency)
            .build(check_payment);
        let mut running = tokio::spawn(worker.run_with_ctx(move |ctx| {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
                ctx.stop()?;
                Ok(())
            }
        }));
        tracing::info!(worker = %name, queues = ?self.config.queues, concurrency = self.config.concurrency, "worker started");
        let gauges = tokio::spawn(export_depth(self.checks.clone(), stop_tx.subscribe()));
        tokio::select! {
            _ = shutdown => {}
            result = &mut running => {
                // The worker only ends by itself on a bug: surface it rather than idle.
                return Err(anyhow::anyhow!("worker stopped unexpectedly: {result:?}"));
            }
        }
        tracing::info!(grace = ?self.config.grace_period, "shutting down: finishing in-flight jobs");
        let _ = stop_tx.send(true);
        match tokio::time::timeout(self.config.grace_period, &mut running).await {
            Ok(_) => tracing::info!("in-flight jobs finished"),
            Err(_) => {
                running.abort();
                let released = self.checks.release_held().await.unwrap_or(0);
                tracing::warn!(
                    released,
                    "grace period over; handed unfinished jobs back to the queue"
                );
            }
        }
        gauges.abort();
        Ok(())
    }
}

/// Publishes the queue's depth per state as gauges, for dashboards, alerts and autoscalers.
async fn export_depth<T>(queue: RedisQueue<T>, mut stop: watch::Receiver<bool>) {
    let name = queue.config().name.clone();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Ok(stats) = queue.stats().await {
            for (state, value) in [
                ("ready", stats.ready),
                ("scheduled", stats.scheduled),
                ("active", stats.active),
                ("dead", stats.dead),
            ] {
                metrics::gauge!("paywatch_queue_jobs", "queue" => name.clone(), "state" => state)
                    .set(value as f64);
            }
        }
    }
}
