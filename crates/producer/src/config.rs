//! The producer's command line and environment.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use paywatch_core::{Provider, SecretUrl};

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
        global = true,
        hide_env_values = true
    )]
    pub redis_url: SecretUrl,
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
#[derive(Args)]
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

// By hand because the HandCash secret is a plain string here (main.rs wraps it in a `Secret`).
impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field(
                "handcash_app_secret",
                &self
                    .handcash_app_secret
                    .as_ref()
                    .map(|_| paywatch_core::secret::REDACTED),
            )
            .finish()
    }
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

impl EnqueueArgs {
    /// The order these flags describe, validated like an API request.
    pub fn to_spec(&self) -> Result<paywatch_core::OrderSpec, crate::validate::FieldError> {
        let metadata = match self.metadata.as_deref() {
            None => serde_json::Value::Null,
            Some(text) => serde_json::from_str(text).map_err(|e| crate::validate::FieldError {
                field: "metadata".into(),
                message: format!("is not JSON: {e}"),
            })?,
        };
        crate::validate::order_spec(&serde_json::json!({
            "order_id": self.order_id,
            "provider": self.provider,
            "payment_id": self.payment_id,
            "notify": {
                "email": self.email,
                "telegram_chat_id": self.telegram_chat_id,
                "webhook_url": self.webhook_url,
            },
            "metadata": metadata,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enqueue(args: &[&str]) -> EnqueueArgs {
        let cli = Cli::try_parse_from(["paywatch-producer", "enqueue"].iter().chain(args))
            .expect("parse");
        match cli.command {
            Command::Enqueue(args) => args,
            Command::Serve(_) => unreachable!("parsed an enqueue"),
        }
    }

    #[test]
    fn the_cli_builds_the_same_order_as_the_api() {
        let args = enqueue(&[
            "--order-id",
            "o-1",
            "--provider",
            "foxreload",
            "--payment-id",
            "fr_1",
            "--telegram-chat-id",
            "-100",
            "--metadata",
            r#"{"cart":3}"#,
        ]);
        let spec = args.to_spec().expect("valid");
        assert_eq!(spec.notify.telegram_chat_id, Some(-100));
        assert_eq!(spec.metadata, Some(serde_json::json!({"cart": 3})));
    }

    #[test]
    fn debug_shows_no_secret() {
        let cli = Cli::try_parse_from([
            "paywatch-producer",
            "--redis-url",
            "redis://default:r3dis-pw-779@redis.internal:6379",
            "serve",
            "--handcash-app-secret",
            "hc-s3cret-4410",
        ])
        .expect("parse");
        let text = format!("{cli:?}");
        for secret in ["r3dis-pw-779", "hc-s3cret-4410"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("redis.internal"), "{text}");
        assert_eq!(
            cli.redis.redis_url.expose(),
            "redis://default:r3dis-pw-779@redis.internal:6379"
        );
    }

    #[test]
    fn cli_errors_name_the_field() {
        let bad_email = enqueue(&[
            "--order-id",
            "o",
            "--provider",
            "cashless",
            "--payment-id",
            "p",
            "--email",
            "nope",
        ]);
        assert_eq!(
            bad_email.to_spec().expect_err("invalid").field,
            "notify.email"
        );
        let bad_meta = enqueue(&[
            "--order-id",
            "o",
            "--provider",
            "cashless",
            "--payment-id",
            "p",
            "--metadata",
            "{",
        ]);
        assert_eq!(bad_meta.to_spec().expect_err("invalid").field, "metadata");
    }
}
