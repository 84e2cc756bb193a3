//! `paywatch-producer serve | enqueue | admin`.

use anyhow::Context;
use std::process::ExitCode;

use clap::Parser;
use paywatch_producer::config::{Cli, Command};
use paywatch_producer::{Producer, Submitted, telemetry};

/// mimalloc rather than the system allocator, as in `paywatch-worker`: every request allocates
/// (JSON in and out, the submit call), and glibc's malloc was a large share of the workers' profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let mut cli = Cli::parse();
    paywatch_core::telemetry::init_logs()?;
    // Settings that need no Redis are checked before connecting to it.
    let api = match &mut cli.command {
        Command::Serve(args) => Some(args.api()?),
        _ => None,
    };
    let producer =
        Producer::connect_sharded(&cli.redis.redis_url, &cli.redis.prefix, cli.redis.shards)
            .await
            .context("REDIS_URL")?
            .with_durability(&cli.redis.redis_url, cli.redis.durability())
            .context("REDIS_URL")?;
    match cli.command {
        Command::Serve(args) => {
            if let Some(addr) = args.metrics_listen {
                let bound = telemetry::serve(
                    addr,
                    &cli.redis.redis_url,
                    &cli.redis.prefix,
                    cli.redis.shards,
                )
                .await
                .context("PAYWATCH_PRODUCER_METRICS_LISTEN")?;
                tracing::info!(addr = %bound, "metrics, health and readiness listening");
            }
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| {
                    format!("PAYWATCH_PRODUCER_LISTEN: cannot listen on {}", args.listen)
                })?;
            let router = api.context("API settings")?.router(producer);
            paywatch_producer::serve(listener, router, paywatch_core::shutdown::signal()).await?;
        }
        Command::Enqueue(args) => {
            let body = args
                .to_json()
                .map_err(|e| anyhow::anyhow!("invalid order: {e}"))?;
            let body = serde_json::to_vec(&body)?;
            match producer.submit_json(&body).await {
                Ok(Submitted::Created) => {
                    println!("{}: created, first check due now", args.order_id)
                }
                Ok(Submitted::Existing { status, phase }) => {
                    println!(
                        "{}: already accepted (status {status}, {phase:?})",
                        args.order_id
                    )
                }
                Err(e) => anyhow::bail!("{e}"),
            }
        }
        Command::Admin(args) => {
            let admin = paywatch_producer::admin::Admin::new(producer);
            let out = &mut std::io::stdout().lock();
            // An operator's mistake (unknown queue or id) is a message and a status, not a trace.
            if let Err(e) = paywatch_producer::admin::cli::run(&admin, &args, out).await {
                eprintln!("error: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
