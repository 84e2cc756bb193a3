//! `paywatch-producer serve | enqueue`.

use anyhow::Context;
use clap::Parser;
use paywatch_producer::config::{Cli, Command};
use paywatch_producer::{Producer, Submitted, http, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    paywatch_core::telemetry::init_logs()?;
    let producer = Producer::connect(&cli.redis.redis_url, &cli.redis.prefix)
        .await
        .context("REDIS_URL")?;
    match cli.command {
        Command::Serve(args) => {
            if let Some(addr) = args.metrics_listen {
                let bound = telemetry::serve(addr, &cli.redis.redis_url, &cli.redis.prefix)
                    .await
                    .context("PAYWATCH_PRODUCER_METRICS_LISTEN")?;
                tracing::info!(addr = %bound, "metrics, health and readiness listening");
            }
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| {
                    format!("PAYWATCH_PRODUCER_LISTEN: cannot listen on {}", args.listen)
                })?;
            tracing::info!(addr = %listener.local_addr()?, "producer API listening");
            let handcash = args.handcash_app_secret.map(paywatch_core::Secret::new);
            axum::serve(listener, http::router(producer, handcash))
                .with_graceful_shutdown(shutdown_signal())
                .await?;
        }
        Command::Enqueue(args) => {
            let spec = args
                .to_spec()
                .map_err(|e| anyhow::anyhow!("invalid order: {e}"))?;
            match producer.enqueue_order(&spec).await? {
                Submitted::Created => println!("{}: created, first check enqueued", spec.order_id),
                Submitted::Existing(status) => {
                    println!("{}: already accepted (status {status})", spec.order_id)
                }
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
