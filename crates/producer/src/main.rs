//! `paywatch-producer serve | enqueue | admin`.

use anyhow::Context;
use std::process::ExitCode;

use paywatch_producer::config::{Cli, Command};
use paywatch_producer::{Producer, ProducerError, Submitted, telemetry};

/// mimalloc rather than the system allocator, as in `paywatch-worker`: every request allocates
/// (JSON in and out, the submit call), and glibc's malloc was a large share of the workers' profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long `enqueue` and `admin` wait for Redis before giving up.
const CLI_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    // clap's errors, reworded to name the environment variable at fault.
    let mut cli: Cli = paywatch_core::cli::parse();
    // Logs, and traces when OTEL_EXPORTER_OTLP_ENDPOINT is set (flushed before exiting).
    let traces = paywatch_core::telemetry::init("paywatch-producer")?;
    // Settings that need no Redis are checked before connecting to it. Provider definitions
    // first: loading one registers its provider, which reading an order may name.
    let definitions = cli.redis.definitions().map_err(anyhow::Error::msg)?;
    let api = match &mut cli.command {
        Command::Serve(args) => Some(args.api()?.with_declared(&definitions)),
        _ => None,
    };
    // Reading REDIS_URL and the durability settings contacts nothing: Redis may come later.
    let producer = Producer::open(&cli.redis.redis_url, &cli.redis.prefix, cli.redis.shards)?
        .with_durability(cli.redis.durability())?;
    if !matches!(cli.command, Command::Serve(_)) {
        // A one-shot command waits a while for Redis, not forever: it is run by a person or a
        // script that wants an answer.
        tokio::time::timeout(CLI_WAIT, producer.prepare_when_ready())
            .await
            .map_err(|_| {
                anyhow::anyhow!("REDIS_URL: Redis did not answer within {CLI_WAIT:?}")
            })??;
    }
    match cli.command {
        Command::Serve(args) => {
            // A Redis that can never serve (no Functions, another shard count, no permission) is
            // refused before anything listens; one that is not there yet is waited for below.
            producer.try_prepare().await?;
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
            let router = api.context("API settings")?.router(producer.clone());
            // Serve at once (not ready, 503s) and prepare Redis as soon as it answers; what
            // waiting cannot mend (no Functions, wrong shard count, no permission) ends the process.
            let serve =
                paywatch_producer::serve(listener, router, paywatch_core::shutdown::signal());
            tokio::pin!(serve);
            tokio::select! {
                prepared = producer.prepare_when_ready() => {
                    prepared?;
                    serve.await?;
                }
                served = &mut serve => served?,
            }
        }
        Command::Enqueue(args) => {
            // Refusals read as the other doors word them: `<field>: <message>`.
            let refused = |verdict: &dyn std::fmt::Display| {
                eprintln!("error: {verdict}");
                Ok(ExitCode::FAILURE)
            };
            let body = match args.to_json() {
                Ok(body) => body,
                Err(verdict) => return refused(&verdict),
            };
            match producer.submit_json(body.as_bytes()).await {
                Ok(Submitted::Created) => {
                    println!("{}: created, first check due now", args.order_id)
                }
                Ok(Submitted::Existing { status, phase }) => {
                    println!(
                        "{}: already accepted (status {status}, {phase:?})",
                        args.order_id
                    )
                }
                Err(ProducerError::Invalid(verdict)) => return refused(&verdict),
                Err(ProducerError::Conflict(_)) => {
                    return refused(&format!("order_id: {}", paywatch_producer::http::CONFLICT));
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
    traces.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
