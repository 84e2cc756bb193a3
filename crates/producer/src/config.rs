//! The producer's command line and environment.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use paywatch_core::SecretUrl;

/// The producer's command line.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "paywatch-producer: accepts orders (HTTP API, or one with `enqueue`) and provider \
             webhooks, and enqueues their payment checks; `admin` holds the operator's tools.",
    long_about = None
)]
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
    /// Redis URL (its password is never printed).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true,
        hide_env_values = true
    )]
    pub redis_url: SecretUrl,
    /// Key prefix of this deployment (not empty).
    #[arg(long, env = "PAYWATCH_PREFIX", default_value = paywatch_core::queues::DEFAULT_PREFIX, global = true,
        value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub prefix: String,
    /// Shards the orders are spread over (the same for every producer and worker of a
    /// deployment; fixed once orders exist).
    #[arg(long, env = "PAYWATCH_SHARDS", default_value_t = paywatch_core::store::DEFAULT_SHARDS,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(paywatch_core::store::MAX_SHARDS)), global = true)]
    pub shards: u32,
    /// A directory of provider definition files (`*.toml`, docs/providers.md): the same as the
    /// workers', so their providers' orders can be read back and their webhooks served.
    #[arg(long, env = "PAYWATCH_PROVIDERS_DIR", global = true)]
    pub providers_dir: Option<std::path::PathBuf>,
    /// Acknowledge an order (202) only once this many replicas have it (Redis `WAIT`); 0 does
    /// not wait. See docs/durability.md.
    #[arg(
        long,
        env = "PAYWATCH_DURABLE_REPLICAS",
        default_value_t = 0,
        global = true
    )]
    pub durable_replicas: u32,
    /// Also acknowledge only once the primary's append-only file has the order on disk
    /// (`WAITAOF`, Redis 7.2+; skipped with a warning on older servers).
    #[arg(
        long,
        env = "PAYWATCH_DURABLE_FSYNC",
        default_value_t = false,
        global = true
    )]
    pub durable_fsync: bool,
    /// How long to wait for replicas (or the disk) before answering 503 "not durable yet".
    #[arg(long, env = "PAYWATCH_DURABLE_TIMEOUT", default_value = "1s",
        value_parser = paywatch_core::durations::parse_duration, global = true)]
    pub durable_timeout: std::time::Duration,
}

impl RedisArgs {
    /// The durability acknowledgements wait for.
    pub fn durability(&self) -> paywatch_core::store::Durability {
        paywatch_core::store::Durability {
            replicas: self.durable_replicas,
            local_fsync: self.durable_fsync,
            timeout: self.durable_timeout,
        }
    }
}

/// The producer's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Enqueue one order and exit.
    Enqueue(EnqueueArgs),
    /// The operator's tools: queue stats, dead letters (list, show, retry, purge), an order's
    /// record and timeline. Tables by default, `--json` for scripts.
    Admin(crate::admin::cli::AdminArgs),
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
    /// The least time between two checks of one order that provider webhooks can cause: a
    /// storm of webhooks costs a few provider calls, not one each.
    #[arg(long, env = "PAYWATCH_WEBHOOK_MIN_GAP", default_value = "2s", value_parser = paywatch_core::durations::parse_duration)]
    pub webhook_min_gap: std::time::Duration,
    /// API tokens accepted on /v1/* as `Authorization: Bearer <token>`, comma-separated (several
    /// at once to rotate them); at least 24 characters each.
    #[arg(
        long,
        env = "PAYWATCH_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_tokens: Vec<String>,
    /// Secret that signs each order's events link, so a browser can follow one order's status
    /// without an API token (unset: the events stream needs a token too).
    #[arg(long, env = "PAYWATCH_EVENTS_SECRET", hide_env_values = true)]
    pub events_secret: Option<String>,
    /// How long a signed events link works after the API hands it out (1s to 30d); the expiry
    /// is inside the signature.
    #[arg(long, env = "PAYWATCH_EVENTS_LINK_TTL", default_value = "1h",
        value_parser = crate::events::parse_link_ttl)]
    pub events_link_ttl: std::time::Duration,
    /// Events streams one order may have open at once on one producer (1 to 100), so a leaked
    /// link cannot take the producer's streams.
    #[arg(long, env = "PAYWATCH_EVENTS_STREAMS_PER_ORDER", default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=crate::events::MAX_STREAMS_PER_ORDER as i64))]
    pub events_streams_per_order: u32,
    /// HandCash app secret, to authenticate HandCash webhooks (refused when unset).
    #[arg(long, env = "HANDCASH_APP_SECRET", hide_env_values = true)]
    pub handcash_app_secret: Option<String>,
}

// By hand because the HandCash secret is a plain string here (main.rs wraps it in a `Secret`).
impl ServeArgs {
    /// The API's own settings: its tokens, events secret, HandCash secret and webhook gap,
    /// checked. Consumes the secrets; called before anything connects, so a bad setting is
    /// reported first and changes nothing.
    pub fn api(&mut self) -> Result<ApiSettings, crate::auth::AuthConfigError> {
        Ok(ApiSettings {
            auth: crate::auth::ApiAuth::new(
                std::mem::take(&mut self.api_tokens),
                self.events_secret.take(),
            )?
            .with_link_rules(crate::events::LinkRules {
                ttl: self.events_link_ttl,
                streams_per_order: self.events_streams_per_order as usize,
            }),
            handcash: self
                .handcash_app_secret
                .take()
                .map(paywatch_core::Secret::new),
            webhook_min_gap: self.webhook_min_gap,
            declared: Vec::new(),
        })
    }
}

impl RedisArgs {
    /// The provider definitions of PAYWATCH_PROVIDERS_DIR (none when unset), each provider
    /// registered in this process; the error names the file, the line and the field.
    pub fn definitions(
        &self,
    ) -> Result<Vec<std::sync::Arc<paywatch_core::declared::Definition>>, String> {
        match &self.providers_dir {
            None => Ok(Vec::new()),
            Some(dir) => paywatch_core::declared::load_dir(dir)
                .map_err(|e| format!("PAYWATCH_PROVIDERS_DIR: {e}")),
        }
    }
}

/// The checked settings of the HTTP API, from [`ServeArgs::api`] (its secrets print redacted).
#[derive(Debug)]
pub struct ApiSettings {
    auth: crate::auth::ApiAuth,
    handcash: Option<paywatch_core::Secret>,
    webhook_min_gap: std::time::Duration,
    declared: Vec<crate::declared_webhooks::DeclaredWebhook>,
}

impl ApiSettings {
    /// The API on `producer`.
    pub fn router(self, producer: crate::Producer) -> axum::Router {
        let producer = producer.with_webhook_gap(self.webhook_min_gap);
        let declared = crate::declared_webhooks::router(producer.clone(), self.declared);
        crate::http::router(producer, self.handcash, self.auth).merge(declared)
    }

    /// These settings serving the webhooks of `definitions` (secrets from the environment).
    pub fn with_declared(
        mut self,
        definitions: &[std::sync::Arc<paywatch_core::declared::Definition>],
    ) -> Self {
        self.declared =
            crate::declared_webhooks::DeclaredWebhook::from_definitions(definitions, |name| {
                std::env::var(name).ok()
            });
        self
    }
}

impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("webhook_min_gap", &self.webhook_min_gap)
            .field(
                "api_tokens",
                &format!(
                    "{} tokens, {}",
                    self.api_tokens.len(),
                    paywatch_core::secret::REDACTED
                ),
            )
            .field(
                "events_secret",
                &self
                    .events_secret
                    .as_ref()
                    .map(|_| paywatch_core::secret::REDACTED),
            )
            .field("events_link_ttl", &self.events_link_ttl)
            .field("events_streams_per_order", &self.events_streams_per_order)
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
    /// The provider: cashless, handcash, miraclecash or foxreload (judged by the submit function,
    /// as over HTTP).
    #[arg(long)]
    pub provider: String,
    /// The provider's payment id.
    #[arg(long)]
    pub payment_id: String,
    /// Email address to notify.
    #[arg(long)]
    pub email: Option<String>,
    /// Telegram chat id to notify (an integer).
    #[arg(long, allow_hyphen_values = true)]
    pub telegram_chat_id: Option<String>,
    /// Webhook URL to notify.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Metadata, a JSON object, stored and echoed exactly as written.
    #[arg(long, allow_hyphen_values = true)]
    pub metadata: Option<String>,
}

/// Whether `text` is one JSON number as written (RFC 8259), so it can go into a body unchanged.
fn is_json_number(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    digits(int)
        && (int == "0" || !int.starts_with('0'))
        && frac.is_none_or(digits)
        && exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
}

impl EnqueueArgs {
    /// The order these flags describe, as the JSON body of `POST /v1/orders`; the submit function
    /// judges it like any other door's, so the CLI refuses what HTTP refuses, in the same words.
    ///
    /// Nothing is judged or re-encoded here: `--provider` goes as a string, `--telegram-chat-id`
    /// as the number written (or a string, which the function refuses as not an integer), and
    /// `--metadata` is spliced in as its own text, so `1.50` stays `1.50` and duplicate keys
    /// reach the function. The one refusal of its own: metadata that is a JSON value with more
    /// text after it, which would otherwise add fields to the body.
    pub fn to_json(&self) -> Result<String, crate::FieldError> {
        let string = |s: &str| serde_json::Value::from(s).to_string();
        let mut body = String::from("{");
        if let Some(text) = self.metadata.as_deref() {
            // First: text that does not close what it opens leaves the body unclosed too, so it
            // cannot swallow the fields after it; the function then refuses the body.
            let mut values =
                serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
            if let Some(Ok(_)) = values.next()
                && !text[values.byte_offset()..].trim().is_empty()
            {
                return Err(crate::FieldError {
                    field: "metadata".into(),
                    message: "must be one JSON object, with nothing after it".into(),
                });
            }
            body.push_str(&format!(r#""metadata":{text},"#));
        }
        body.push_str(&format!(
            r#""order_id":{},"provider":{},"payment_id":{}"#,
            string(&self.order_id),
            string(&self.provider),
            string(&self.payment_id)
        ));
        let mut notify = Vec::new();
        if let Some(email) = &self.email {
            notify.push(format!(r#""email":{}"#, string(email)));
        }
        if let Some(chat) = self.telegram_chat_id.as_deref() {
            // A number goes as written (the function judges its range exactly); anything else as
            // text, which the function refuses as not an integer, as it would over HTTP.
            let chat = chat.trim();
            let value = if is_json_number(chat) {
                chat.to_owned()
            } else {
                string(chat)
            };
            notify.push(format!(r#""telegram_chat_id":{value}"#));
        }
        if let Some(url) = &self.webhook_url {
            notify.push(format!(r#""webhook_url":{}"#, string(url)));
        }
        if !notify.is_empty() {
            body.push_str(&format!(r#","notify":{{{}}}"#, notify.join(",")));
        }
        body.push('}');
        Ok(body)
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
            _ => unreachable!("parsed an enqueue"),
        }
    }

    #[test]
    fn the_cli_builds_the_api_body() {
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
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&args.to_json().expect("json"))
                .expect("JSON"),
            serde_json::json!({
                "order_id": "o-1", "provider": "foxreload", "payment_id": "fr_1",
                "notify": {"telegram_chat_id": -100}, "metadata": {"cart": 3}
            })
        );
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
            "--api-tokens",
            "api-t0ken-aaaaaaaaaaaaaaaaaaaa,api-t0ken-bbbbbbbbbbbbbbbbbbbb",
            "--events-secret",
            "ev-s3cret-cccccccccccccccccccc",
        ])
        .expect("parse");
        let text = format!("{cli:?}");
        for secret in ["r3dis-pw-779", "hc-s3cret-4410", "api-t0ken", "ev-s3cret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("redis.internal"), "{text}");
        assert_eq!(
            cli.redis.redis_url.expose(),
            "redis://default:r3dis-pw-779@redis.internal:6379"
        );
    }

    #[test]
    fn the_cli_hands_over_the_text_as_written() {
        let args = enqueue(&[
            "--order-id",
            "o-\"1",
            "--provider",
            "CASHLESS",
            "--payment-id",
            "p",
            "--telegram-chat-id",
            "99999999999999999999999",
            "--metadata",
            r#"{"a":1,"a":1.50e400}"#,
        ]);
        assert_eq!(
            args.to_json().expect("body"),
            r#"{"metadata":{"a":1,"a":1.50e400},"order_id":"o-\"1","provider":"CASHLESS","payment_id":"p","notify":{"telegram_chat_id":99999999999999999999999}}"#
        );
        for (text, number) in [
            ("0", true),
            ("-12", true),
            ("1.50", true),
            ("1E+3", true),
            ("01", false),
            ("1.", false),
            ("abc", false),
            ("", false),
            ("-", false),
            ("1e", false),
        ] {
            assert_eq!(is_json_number(text), number, "{text}");
        }
    }

    #[test]
    fn unreadable_metadata_names_the_field() {
        let args = enqueue(&[
            "--order-id",
            "o",
            "--provider",
            "cashless",
            "--payment-id",
            "p",
            "--metadata",
            "{nope",
        ]);
        // Not JSON: left to the function, which says so as it does over HTTP.
        assert!(
            args.to_json()
                .expect("body")
                .starts_with(r#"{"metadata":{nope,"#)
        );
        let smuggled = enqueue(&[
            "--order-id",
            "o",
            "--provider",
            "cashless",
            "--payment-id",
            "p",
            "--metadata",
            r#"{},"notify":{"email":"x@example.com"}"#,
        ]);
        assert_eq!(smuggled.to_json().expect_err("refused").field, "metadata");
    }

    #[test]
    fn admin_commands_parse_and_purge_all_is_explicit() {
        use crate::admin::cli::{AdminCommand, DeadCommand};
        let parse =
            |args: &[&str]| Cli::try_parse_from(["paywatch-producer", "admin"].iter().chain(args));
        let cli = parse(&[
            "dead",
            "retry",
            "a",
            "b",
            "--queue",
            "notify-email",
            "--json",
        ])
        .expect("retry ids");
        let Command::Admin(admin) = cli.command else {
            panic!("not admin")
        };
        assert!(admin.json);
        let AdminCommand::Dead(DeadCommand::Retry(targets)) = admin.command else {
            panic!("not retry")
        };
        assert_eq!(targets.ids, ["a", "b"]);
        // Ids or --all, not both, not neither; a queue always.
        assert!(parse(&["dead", "retry", "--queue", "notify-email"]).is_err());
        assert!(parse(&["dead", "retry", "a", "--all", "--queue", "q"]).is_err());
        assert!(parse(&["dead", "purge", "--all"]).is_err());
        assert!(parse(&["dead", "purge", "--all", "--queue", "q"]).is_ok());
        assert!(parse(&["dead", "show", "x"]).is_err());
        assert!(parse(&["order", "o-1"]).is_ok());
        assert!(parse(&["stats"]).is_ok());
    }

    #[test]
    fn shards_are_bounded() {
        let err = Cli::try_parse_from(["paywatch-producer", "--shards", "0", "serve"]);
        assert!(err.is_err());
    }
}
