//! The producer's command line and environment.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use paywatch_core::Provider;

/// paywatch-producer: accept orders and enqueue their payment checks.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Connection shared by every command.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the queues live.
#[derive(Debug, Args)]
pub struct RedisArgs {
    /// Redis URL.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    pub redis_url: String,
    /// Key prefix of this deployment.
    #[arg(long, env = "PAYWATCH_PREFIX", default_value = paywatch_core::queues::DEFAULT_PREFIX, global = true)]
    pub prefix: String,
}

/// The producer's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Enqueue one order and exit.
    Enqueue(EnqueueArgs),
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address the API listens on.
    #[arg(
        long,
        env = "PAYWATCH_PRODUCER_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Address the Prometheus metrics endpoint listens on (none when unset).
    #[arg(long, env = "PAYWATCH_PRODUCER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// HandCash app secret, to authenticate HandCash webhooks (refused when unset).
    #[arg(long, env = "HANDCASH_APP_SECRET", hide_env_values = true)]
    pub handcash_app_secret: Option<String>,
}

/// `enqueue` options.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The shop's order id.
    #[arg(long)]
    pub order_id: String,
    /// The provider: cashless, handcash, miraclecash or foxreload.
    #[arg(long)]
    pub provider: Provider,
    /// The provider's payment id.
    #[arg(long)]
    pub payment_id: String,
    /// Email address to notify.
    #[arg(long)]
    pub email: Option<String>,
    /// Telegram chat id to notify.
    #[arg(long, allow_hyphen_values = true)]
    pub telegram_chat_id: Option<i64>,
    /// Webhook URL to notify.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Metadata, a JSON object.
    #[arg(long)]
    pub metadata: Option<String>,
}
