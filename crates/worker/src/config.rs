//! The worker's configuration: flags and environment variables, validated at start-up.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use paywatch_core::adapters::{CashlessConfig, FoxReloadConfig, HandCashConfig, MiracleCashConfig};
use paywatch_core::declared::{Definition, Resolved};
use paywatch_core::durations::parse_duration;
use paywatch_core::schedule::Budget;
use paywatch_core::{
    ClientBuildError, PollPolicies, PollPolicy, Provider, ProviderClient, ProvidersConfig, Secret,
    SecretUrl, queues, targets,
};
use url::Url;

use crate::gate::breaker::BreakerConfig;
use crate::gate::budget::RateLimits;
use crate::notify::deliver::NotifyContext;
use crate::notify::email::{EmailConfig, EmailConfigError, EmailSender};
use crate::notify::telegram::{TelegramConfig, TelegramConfigError, TelegramSender};
use crate::notify::webhook::{WebhookConfig, WebhookConfigError, WebhookSender};
use crate::ops::OpsTargets;
use crate::schedules::{PollMode, ScheduleConfig};

/// The sandbox's default bot token, used with `--sandbox-url` when none is configured.
const SANDBOX_TELEGRAM_TOKEN: &str = "123456:sandbox-bot-token";

/// The worker's settings, from its flags and environment.
// Every credential is a `Secret` or `SecretUrl`, so the derived `Debug` (and any log line that
// formats the config, or the `App` holding it) shows `[redacted]`. The about text is what
// `--help` opens with, for operators; this comment is for developers.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "paywatch-worker: checks payments with their providers until they settle, and \
             delivers the notifications (email, Telegram, webhooks, ops digests).",
    long_about = None,
    after_help = "Every flag can also be set by the environment variable shown beside it; \
                  docs/configuration.md describes them all."
)]
pub struct WorkerConfig {
    /// Redis URL.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: SecretUrl,
    /// Key prefix of this deployment (not empty).
    #[arg(long, env = "PAYWATCH_PREFIX", default_value = queues::DEFAULT_PREFIX,
        value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub prefix: String,
    /// Shards the orders are spread over (the same for every producer and worker of a
    /// deployment; fixed once orders exist).
    #[arg(long, env = "PAYWATCH_SHARDS", default_value_t = paywatch_core::store::DEFAULT_SHARDS)]
    pub shards: u32,
    /// The shards whose checks this process runs, comma-separated (all when unset).
    #[arg(long, env = "PAYWATCH_CHECK_SHARDS", value_delimiter = ',')]
    pub check_shards: Vec<u32>,
    /// Queues this process serves, comma-separated.
    #[arg(long, env = "PAYWATCH_QUEUES", value_delimiter = ',', default_value = queues::CHECK_PAYMENT)]
    pub queues: Vec<String>,
    /// Jobs run at once, per queue.
    #[arg(long, env = "PAYWATCH_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,
    /// Threads this process runs its jobs on (default: one per CPU core). With one process per
    /// core, 1 runs each on a single thread and saves the hand-offs between threads.
    #[arg(long, env = "PAYWATCH_THREADS", value_parser = threads)]
    pub threads: Option<NonZeroUsize>,
    /// This worker's name in logs (default: the host name and the process id).
    #[arg(long, env = "PAYWATCH_WORKER_NAME",
        value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub name: Option<String>,
    /// How long a job may run before its lease expires and another worker re-runs it
    /// (leases are extended while the job is running).
    #[arg(long, env = "PAYWATCH_LEASE", default_value = "30s", value_parser = duration)]
    pub lease: Duration,
    /// How long in-flight jobs may take to finish after SIGTERM before their leases are
    /// handed back.
    #[arg(long, env = "PAYWATCH_GRACE_PERIOD", default_value = "20s", value_parser = duration)]
    pub grace_period: Duration,
    /// Multiplier on every poll policy duration (1.0 in production; tests and the demo use less).
    #[arg(long, env = "PAYWATCH_TIME_SCALE", default_value_t = 1.0)]
    pub time_scale: f64,
    /// Poll policies as JSON, replacing the seed defaults for the providers it names
    /// (see docs/configuration.md); PAYWATCH_TIME_SCALE still applies on top.
    #[arg(long, env = "PAYWATCH_POLICIES", value_parser = policies)]
    pub policies: Option<PollPolicies>,
    /// How pending orders' checks are spaced: `fixed` (the seed policies) or `adaptive` (placed
    /// by a plan learned from the provider's history of when orders settle; docs/polling.md).
    #[arg(long, env = "PAYWATCH_POLL_MODE", value_enum, default_value_t = PollMode::Fixed)]
    pub poll_mode: PollMode,
    /// What an adaptive plan may spend: `fixed` (the calls per order the fixed policy would make
    /// on the same history; `fixed*0.5` for half), a number of calls per order, or
    /// `p90:<duration>` (the fewest calls for that p90 detection lag).
    #[arg(long, env = "PAYWATCH_POLL_BUDGET", default_value = "fixed", value_parser = poll_budget)]
    pub poll_budget: Budget,
    /// Orders a provider's history needs before an adaptive plan replaces its fixed policy.
    #[arg(long, env = "PAYWATCH_POLL_MIN_SAMPLES", default_value_t = 200)]
    pub poll_min_samples: u64,
    /// How often adaptive plans are rebuilt from the fleet's history.
    #[arg(long, env = "PAYWATCH_POLL_REFRESH", default_value = "1m", value_parser = duration)]
    pub poll_refresh: Duration,
    /// The longest an adaptive plan leaves an open order unchecked (before PAYWATCH_TIME_SCALE).
    #[arg(long, env = "PAYWATCH_POLL_MAX_INTERVAL", default_value = "1h", value_parser = duration)]
    pub poll_max_interval: Duration,
    /// Fleet-wide request budgets per provider credential, as JSON over the defaults (FoxReload
    /// 100/min): `{"foxreload":"100/min","cashless":"600/min","handcash":"off"}`.
    #[arg(long, env = "PAYWATCH_RATE_LIMITS", value_parser = rate_limits)]
    pub rate_limits: Option<RateLimits>,
    /// The share of each budget only young orders (in their fast phase) may use, 0 to 1.
    #[arg(long, env = "PAYWATCH_RATE_YOUNG_SHARE", default_value_t = 0.2)]
    pub rate_young_share: f64,
    /// Consecutive transient provider failures (fleet-wide) that pause the provider's checks;
    /// 0 turns the circuit breaker off.
    #[arg(long, env = "PAYWATCH_BREAKER_FAILURES", default_value_t = 5)]
    pub breaker_failures: u32,
    /// The first pause of an open circuit; each failed probe doubles it.
    #[arg(long, env = "PAYWATCH_BREAKER_PAUSE", default_value = "10s", value_parser = duration)]
    pub breaker_pause: Duration,
    /// The longest pause of an open circuit.
    #[arg(long, env = "PAYWATCH_BREAKER_MAX_PAUSE", default_value = "5m", value_parser = duration)]
    pub breaker_max_pause: Duration,
    /// Durable mode: a final status is announced (its notifications enqueued) only once this
    /// many replicas have it (Redis `WAIT`), and a notifier fetches its next job only once this
    /// many have its last acknowledgements; 0 does not wait. See docs/durability.md.
    #[arg(long, env = "PAYWATCH_DURABLE_REPLICAS", default_value_t = 0)]
    pub durable_replicas: u32,
    /// Durable mode: also wait until the primary's append-only file has them (`WAITAOF`, where
    /// the server has it; replicas only, with a warning, where not).
    #[arg(long, env = "PAYWATCH_DURABLE_FSYNC", default_value_t = false)]
    pub durable_fsync: bool,
    /// How long one wait for replicas (or the disk) blocks before it is asked again; work that
    /// waits is not dropped, it waits on.
    #[arg(long, env = "PAYWATCH_DURABLE_TIMEOUT", default_value = "1s", value_parser = duration)]
    pub durable_timeout: Duration,
    /// Where the Prometheus metrics endpoint listens (none when unset).
    #[arg(long, env = "PAYWATCH_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Point every provider at a paywatch-sandbox at this URL, with its default credentials.
    #[arg(long, env = "PAYWATCH_SANDBOX_URL")]
    pub sandbox_url: Option<Url>,
    /// A directory of provider definition files (`*.toml`, docs/providers.md); a declared
    /// provider is configured when the base URL variable its file names is set (or with
    /// PAYWATCH_SANDBOX_URL).
    #[arg(long, env = "PAYWATCH_PROVIDERS_DIR")]
    pub providers_dir: Option<std::path::PathBuf>,
    /// Provider endpoints and credentials.
    #[command(flatten)]
    pub providers: ProviderArgs,
    /// Notification channels.
    #[command(flatten)]
    pub channels: ChannelArgs,
}

/// Notification channel settings; each is needed only by the workers serving its queue.
#[derive(Debug, Clone, clap::Args)]
pub struct ChannelArgs {
    /// SMTP server for notify-email (`smtp://host:port`, `smtps://user:pass@host`, …).
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<SecretUrl>,
    /// The From mailbox of notification emails.
    #[arg(long, env = "PAYWATCH_EMAIL_FROM")]
    pub email_from: Option<String>,
    /// An optional Reply-To mailbox.
    #[arg(long, env = "PAYWATCH_EMAIL_REPLY_TO")]
    pub email_reply_to: Option<String>,
    /// Telegram bot token for notify-telegram.
    #[arg(long, env = "TELEGRAM_BOT_TOKEN", hide_env_values = true)]
    pub telegram_bot_token: Option<Secret>,
    /// Telegram Bot API base URL (the sandbox's fake one with --sandbox-url).
    #[arg(long, env = "TELEGRAM_API_BASE")]
    pub telegram_api_base: Option<Url>,
    /// At most one message per chat per this long, across the fleet.
    #[arg(long, env = "PAYWATCH_TELEGRAM_CHAT_INTERVAL", default_value = "1s", value_parser = duration)]
    pub telegram_chat_interval: Duration,
    /// At most this many messages per second per bot, across the fleet.
    #[arg(long, env = "PAYWATCH_TELEGRAM_PER_SECOND", default_value_t = 30)]
    pub telegram_per_second: u32,
    /// Webhook signing secret (`whsec_<base64>`) for notify-webhook.
    #[arg(long, env = "PAYWATCH_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,
    /// More signing secrets during a key rotation, comma-separated.
    #[arg(
        long,
        env = "PAYWATCH_WEBHOOK_EXTRA_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub webhook_extra_secrets: Vec<Secret>,
    /// Hosts, IPs or CIDRs webhooks may reach despite the SSRF guard, comma-separated.
    #[arg(long, env = "PAYWATCH_WEBHOOK_ALLOW_HOSTS", value_delimiter = ',')]
    pub webhook_allow_hosts: Vec<String>,
    /// Multiplier on the webhook retry schedule (tests use tiny values).
    #[arg(long, env = "PAYWATCH_WEBHOOK_SCHEDULE_SCALE", default_value_t = 1.0)]
    pub webhook_schedule_scale: f64,
    /// Ops email address (digests of unresolved orders and dead letters).
    #[arg(long, env = "PAYWATCH_OPS_EMAIL")]
    pub ops_email: Option<String>,
    /// Ops Telegram chat id.
    #[arg(
        long,
        env = "PAYWATCH_OPS_TELEGRAM_CHAT_ID",
        allow_hyphen_values = true
    )]
    pub ops_telegram_chat_id: Option<i64>,
    /// Ops webhook URL.
    #[arg(long, env = "PAYWATCH_OPS_WEBHOOK_URL")]
    pub ops_webhook_url: Option<String>,
    /// Shortest time between two ops digests.
    #[arg(long, env = "PAYWATCH_OPS_INTERVAL", default_value = "5m", value_parser = duration)]
    pub ops_interval: Duration,
}

/// Provider endpoints and credentials; a provider is configured when its base URL is set.
#[derive(Debug, Clone, clap::Args)]
pub struct ProviderArgs {
    /// Cashless API base URL.
    #[arg(long, env = "CASHLESS_BASE_URL")]
    pub cashless_base_url: Option<Url>,
    /// Cashless API key.
    #[arg(long, env = "CASHLESS_API_KEY", hide_env_values = true)]
    pub cashless_api_key: Option<Secret>,
    /// Cashless API secret.
    #[arg(long, env = "CASHLESS_API_SECRET", hide_env_values = true)]
    pub cashless_api_secret: Option<Secret>,
    /// HandCash API base URL.
    #[arg(long, env = "HANDCASH_BASE_URL")]
    pub handcash_base_url: Option<Url>,
    /// HandCash app id.
    #[arg(long, env = "HANDCASH_APP_ID", hide_env_values = true)]
    pub handcash_app_id: Option<Secret>,
    /// HandCash app secret.
    #[arg(long, env = "HANDCASH_APP_SECRET", hide_env_values = true)]
    pub handcash_app_secret: Option<Secret>,
    /// MiracleCash API base URL.
    #[arg(long, env = "MIRACLECASH_BASE_URL")]
    pub miraclecash_base_url: Option<Url>,
    /// MiracleCash client id.
    #[arg(long, env = "MIRACLECASH_CLIENT_ID", hide_env_values = true)]
    pub miraclecash_client_id: Option<Secret>,
    /// MiracleCash API key.
    #[arg(long, env = "MIRACLECASH_API_KEY", hide_env_values = true)]
    pub miraclecash_api_key: Option<Secret>,
    /// FoxReload API base URL.
    #[arg(long, env = "FOXRELOAD_BASE_URL")]
    pub foxreload_base_url: Option<Url>,
    /// FoxReload API key.
    #[arg(long, env = "FOXRELOAD_API_KEY", hide_env_values = true)]
    pub foxreload_api_key: Option<Secret>,
}

/// `PAYWATCH_POLICIES`: an object of providers' policies. Names serde would skip (a provider
/// that does not exist, a misspelt field) are refused: a typo must not leave the default policy
/// silently in force.
fn policies(text: &str) -> Result<PollPolicies, String> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("not valid poll policies JSON: {e}"))?;
    let fields = serde_json::to_value(PollPolicy::cashless())
        .ok()
        .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
        .unwrap_or_default();
    for (name, policy) in &object {
        // Exactly as serde reads the names: lowercase.
        if !Provider::ALL.iter().any(|p| p.as_str() == name) {
            return Err(format!(
                "unknown provider {name:?}; known: {}",
                Provider::names()
            ));
        }
        let Some(policy) = policy.as_object() else {
            return Err(format!("{name}: must be an object of policy fields"));
        };
        if let Some(field) = policy.keys().find(|k| !fields.contains(k)) {
            return Err(format!(
                "{name}: unknown field {field:?}; known: {}",
                fields.join(", ")
            ));
        }
    }
    serde_json::from_str(text).map_err(|e| format!("not valid poll policies JSON: {e}"))
}

fn poll_budget(text: &str) -> Result<Budget, String> {
    crate::schedules::parse_budget(text)
}

fn rate_limits(text: &str) -> Result<RateLimits, String> {
    RateLimits::parse_overrides(text)
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

fn threads(text: &str) -> Result<NonZeroUsize, String> {
    text.parse::<usize>()
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| "must be a whole number, at least 1".into())
}

/// A configuration value that cannot work, named by its environment variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable (or flag) at fault.
    pub variable: &'static str,
    /// What is wrong.
    pub problem: String,
}

fn bad(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

fn secret(value: &Option<Secret>, variable: &'static str) -> Result<Secret, ConfigError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err(bad(
            variable,
            "is required when the provider's base URL is set",
        )),
    }
}

impl WorkerConfig {
    /// The async runtime this process runs on: PAYWATCH_THREADS threads, or one per core. One
    /// thread is a current-thread runtime: no work stealing, no wake-ups across threads, which
    /// in `just bench e2e` (two processes on two cores) cut a worker's CPU per order by a fifth.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.threads.map(NonZeroUsize::get) {
            Some(1) => tokio::runtime::Builder::new_current_thread(),
            Some(n) => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(n);
                builder
            }
            None => tokio::runtime::Builder::new_multi_thread(),
        };
        builder.enable_all().build()
    }

    /// Checks the configuration; the error names the variable at fault. [`check`](Self::check)
    /// does this and builds what the checks need.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map(drop)
    }

    /// Checks every setting and builds everything that needs no Redis: the first step of
    /// start-up, so that a bad setting is refused before the process connects (and so before
    /// it writes anything). The error names the variable at fault.
    pub fn check(&self) -> Result<Checked, ConfigError> {
        self.check_settings()?;
        let definitions = self.definitions()?;
        let providers_config = self.providers_config()?;
        let providers = ProviderClient::new(&providers_config).map_err(provider_error)?;
        let policies = self.poll_policies()?;
        let c = &self.channels;
        let webhook_allow = if self.queues.iter().any(|q| q == queues::NOTIFY_WEBHOOK) {
            // Submissions are judged by the allow-list this notifier delivers under.
            Some(
                crate::notify::webhook::published_allow_list(&c.webhook_allow_hosts)
                    .map_err(webhook_error)?,
            )
        } else {
            None
        };
        let email = match (&c.smtp_url, &c.email_from) {
            (Some(smtp_url), Some(from)) => Some(
                EmailSender::new(EmailConfig {
                    smtp_url: smtp_url.expose().to_owned(),
                    from: from.clone(),
                    reply_to: c.email_reply_to.clone(),
                    timeout: Duration::from_secs(30),
                })
                .map_err(|e| {
                    let variable = match &e {
                        EmailConfigError::InvalidMailbox { field, .. } if *field == "reply_to" => {
                            "PAYWATCH_EMAIL_REPLY_TO"
                        }
                        EmailConfigError::InvalidMailbox { .. } => "PAYWATCH_EMAIL_FROM",
                        _ => "SMTP_URL",
                    };
                    bad(variable, e.to_string())
                })?,
            ),
            _ => None,
        };
        let telegram = match self.telegram_token() {
            Some(token) => {
                let mut config = TelegramConfig::new(token);
                if let Some(base) = c.telegram_api_base.clone().or_else(|| {
                    self.sandbox_url
                        .as_ref()
                        .and_then(|s| s.join("telegram").ok())
                }) {
                    config.api_base = base;
                }
                config.per_chat_interval = c.telegram_chat_interval;
                config.per_bot_per_second = c.telegram_per_second;
                config.check().map_err(telegram_error)?;
                Some(config)
            }
            None => None,
        };
        let webhook = match &c.webhook_secret {
            Some(secret) => {
                let mut config = WebhookConfig::new(secret.clone());
                config.extra_secrets = c.webhook_extra_secrets.clone();
                config.allow_hosts = c.webhook_allow_hosts.clone();
                config.schedule_scale = c.webhook_schedule_scale;
                Some(WebhookSender::new(config).map_err(webhook_error)?)
            }
            None => None,
        };
        // The ops webhook is judged as the door judges a shop's, under this notifier's
        // allow-list (validate_settings required a sender whenever the URL is set).
        if let (Some(url), Some(sender)) = (&c.ops_webhook_url, &webhook)
            && let Some(problem) = sender.url_problem(url)
        {
            return Err(bad("PAYWATCH_OPS_WEBHOOK_URL", problem));
        }
        Ok(Checked {
            providers,
            providers_config,
            definitions,
            policies,
            webhook_allow,
            email,
            telegram,
            webhook,
        })
    }

    /// The checks of single settings and of settings that go together.
    fn check_settings(&self) -> Result<(), ConfigError> {
        // Parsed (never connected to) here: a malformed URL is a setting to fix, not an outage
        // to wait out. Its errors never repeat the URL.
        paywatch_queue::RedisEndpoint::open(self.redis_url.expose()).map_err(|e| {
            let text = e.to_string();
            bad(
                "REDIS_URL",
                text.strip_prefix("REDIS_URL: ").unwrap_or(&text).to_owned(),
            )
        })?;
        if let Some(url) = &self.sandbox_url {
            let usable = matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some()
                && !url.cannot_be_a_base()
                && url.username().is_empty()
                && url.password().is_none();
            if !usable {
                return Err(bad(
                    "PAYWATCH_SANDBOX_URL",
                    "must be an http(s) URL with a host and no credentials, like \
                     http://127.0.0.1:8090",
                ));
            }
        }
        if self.queues.is_empty() {
            return Err(bad("PAYWATCH_QUEUES", "names no queue"));
        }
        for queue in &self.queues {
            if !queues::ALL.contains(&queue.as_str()) {
                let known = queues::ALL.join(", ");
                return Err(bad(
                    "PAYWATCH_QUEUES",
                    format!("unknown queue {queue:?}; known: {known}"),
                ));
            }
        }
        let serves = |q: &str| self.queues.iter().any(|s| s == q);
        let c = &self.channels;
        if serves(queues::NOTIFY_EMAIL) || c.ops_email.is_some() {
            if c.smtp_url.is_none() {
                return Err(bad(
                    "SMTP_URL",
                    "is required to send email (notify-email or PAYWATCH_OPS_EMAIL)",
                ));
            }
            if c.email_from.is_none() {
                return Err(bad("PAYWATCH_EMAIL_FROM", "is required to send email"));
            }
        }
        if (serves(queues::NOTIFY_TELEGRAM) || c.ops_telegram_chat_id.is_some())
            && self.telegram_token().is_none()
        {
            return Err(bad(
                "TELEGRAM_BOT_TOKEN",
                "is required to send Telegram messages",
            ));
        }
        if (serves(queues::NOTIFY_WEBHOOK) || c.ops_webhook_url.is_some())
            && c.webhook_secret.is_none()
        {
            return Err(bad(
                "PAYWATCH_WEBHOOK_SECRET",
                "is required to send webhooks (whsec_…)",
            ));
        }
        if serves(queues::NOTIFY_OPS) && !self.ops_targets().any() {
            return Err(bad(
                "PAYWATCH_OPS_EMAIL",
                "notify-ops needs an ops destination: PAYWATCH_OPS_EMAIL, PAYWATCH_OPS_TELEGRAM_CHAT_ID or PAYWATCH_OPS_WEBHOOK_URL",
            ));
        }
        // The door's rules for a shop's targets apply to the operators' too.
        if let Some(problem) = c.ops_email.as_deref().and_then(targets::email_problem) {
            return Err(bad("PAYWATCH_OPS_EMAIL", problem));
        }
        if let Some(problem) = c
            .ops_telegram_chat_id
            .and_then(targets::telegram_chat_problem)
        {
            return Err(bad("PAYWATCH_OPS_TELEGRAM_CHAT_ID", problem));
        }
        if let Some(problem) = c
            .ops_webhook_url
            .as_deref()
            .and_then(targets::webhook_url_problem)
        {
            return Err(bad("PAYWATCH_OPS_WEBHOOK_URL", problem));
        }
        if c.ops_interval < Duration::from_secs(1) {
            return Err(bad("PAYWATCH_OPS_INTERVAL", "must be at least 1s"));
        }
        if !(1..=paywatch_core::store::MAX_SHARDS).contains(&self.shards) {
            return Err(bad(
                "PAYWATCH_SHARDS",
                format!("must be 1 to {}", paywatch_core::store::MAX_SHARDS),
            ));
        }
        if let Some(s) = self.check_shards.iter().find(|s| **s >= self.shards) {
            return Err(bad(
                "PAYWATCH_CHECK_SHARDS",
                format!(
                    "shard {s} does not exist (PAYWATCH_SHARDS is {})",
                    self.shards
                ),
            ));
        }
        if self.concurrency == 0 {
            return Err(bad("PAYWATCH_CONCURRENCY", "must be at least 1"));
        }
        if self.lease < Duration::from_millis(500) {
            return Err(bad("PAYWATCH_LEASE", "must be at least 500ms"));
        }
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return Err(bad("PAYWATCH_TIME_SCALE", "must be a positive number"));
        }
        if !(0.0..=1.0).contains(&self.rate_young_share) {
            return Err(bad("PAYWATCH_RATE_YOUNG_SHARE", "must be between 0 and 1"));
        }
        if self.breaker_pause < Duration::from_millis(10) {
            return Err(bad("PAYWATCH_BREAKER_PAUSE", "must be at least 10ms"));
        }
        if self.breaker_max_pause < self.breaker_pause {
            return Err(bad(
                "PAYWATCH_BREAKER_MAX_PAUSE",
                "must be at least PAYWATCH_BREAKER_PAUSE",
            ));
        }
        if self.poll_refresh < Duration::from_millis(10) {
            return Err(bad("PAYWATCH_POLL_REFRESH", "must be at least 10ms"));
        }
        if self.poll_max_interval < Duration::from_secs(1) {
            return Err(bad("PAYWATCH_POLL_MAX_INTERVAL", "must be at least 1s"));
        }
        if self.durability().is_required() {
            if self.durable_timeout < Duration::from_millis(1) {
                return Err(bad("PAYWATCH_DURABLE_TIMEOUT", "must be at least 1ms"));
            }
            // WAIT counts the writes of one primary; a Cluster's writes spread over several.
            if paywatch_queue::RedisEndpoint::open(self.redis_url.expose())
                .is_ok_and(|e| e.is_cluster())
            {
                return Err(bad(
                    "PAYWATCH_DURABLE_REPLICAS",
                    "durable mode is not supported on a Redis Cluster yet",
                ));
            }
        }
        Ok(())
    }

    /// Durable mode's settings (PAYWATCH_DURABLE_*): what a final status and a notifier's
    /// acknowledgements wait for.
    pub fn durability(&self) -> paywatch_core::store::Durability {
        paywatch_core::store::Durability {
            replicas: self.durable_replicas,
            local_fsync: self.durable_fsync,
            timeout: self.durable_timeout,
        }
    }

    /// The same settings for a queue's settles.
    pub fn durable_settles(&self) -> paywatch_queue::DurableSettles {
        paywatch_queue::DurableSettles {
            replicas: self.durable_replicas,
            local_fsync: self.durable_fsync,
            timeout: self.durable_timeout,
        }
    }

    /// The request budgets: the configured ones over the defaults.
    pub fn rate_limits(&self) -> RateLimits {
        self.rate_limits.clone().unwrap_or_default()
    }

    /// The circuit breaker's settings; a probe may take as long as two provider requests.
    pub fn breaker(&self, request_timeout: Duration) -> BreakerConfig {
        BreakerConfig {
            failures: self.breaker_failures,
            first_pause: self.breaker_pause,
            max_pause: self.breaker_max_pause,
            probe_lease: request_timeout * 2,
        }
    }

    /// The shards whose check queues this process serves.
    pub fn served_shards(&self) -> Vec<u32> {
        if self.check_shards.is_empty() {
            (0..self.shards).collect()
        } else {
            let mut shards = self.check_shards.clone();
            shards.sort_unstable();
            shards.dedup();
            shards
        }
    }

    /// The adaptive polling settings.
    pub fn schedule_config(&self) -> ScheduleConfig {
        ScheduleConfig {
            mode: self.poll_mode,
            budget: self.poll_budget,
            min_samples: self.poll_min_samples,
            refresh: self.poll_refresh,
            max_interval: self.poll_max_interval,
        }
    }

    /// The provider definitions of PAYWATCH_PROVIDERS_DIR (none when unset), each provider
    /// registered in this process; the error names the file, the line and the field.
    pub fn definitions(&self) -> Result<Vec<Arc<Definition>>, ConfigError> {
        match &self.providers_dir {
            None => Ok(Vec::new()),
            Some(dir) => paywatch_core::declared::load_dir(dir)
                .map_err(|e| bad("PAYWATCH_PROVIDERS_DIR", e.to_string())),
        }
    }

    /// The poll policies, time-scaled (declared providers' from their files).
    pub fn poll_policies(&self) -> Result<PollPolicies, ConfigError> {
        let mut policies = self.policies.clone().unwrap_or_default();
        policies.time_scale = self.time_scale;
        for definition in self.definitions()? {
            policies
                .declared
                .insert(definition.provider, definition.policy.clone());
        }
        let variable = if self.policies.is_some() {
            "PAYWATCH_POLICIES"
        } else {
            "PAYWATCH_TIME_SCALE"
        };
        policies
            .validate()
            .map_err(|e| bad(variable, e.to_string()))?;
        Ok(policies)
    }

    /// Provider endpoints and credentials.
    pub fn providers_config(&self) -> Result<ProvidersConfig, ConfigError> {
        let mut config = match &self.sandbox_url {
            Some(url) => ProvidersConfig::sandbox(url),
            None => ProvidersConfig::default(),
        };
        let p = &self.providers;
        if let Some(base_url) = &p.cashless_base_url {
            config.cashless = Some(CashlessConfig {
                base_url: base_url.clone(),
                api_key: secret(&p.cashless_api_key, "CASHLESS_API_KEY")?,
                api_secret: secret(&p.cashless_api_secret, "CASHLESS_API_SECRET")?,
            });
        }
        if let Some(base_url) = &p.handcash_base_url {
            config.handcash = Some(HandCashConfig {
                base_url: base_url.clone(),
                app_id: secret(&p.handcash_app_id, "HANDCASH_APP_ID")?,
                app_secret: secret(&p.handcash_app_secret, "HANDCASH_APP_SECRET")?,
            });
        }
        if let Some(base_url) = &p.miraclecash_base_url {
            config.miraclecash = Some(MiracleCashConfig {
                base_url: base_url.clone(),
                client_id: secret(&p.miraclecash_client_id, "MIRACLECASH_CLIENT_ID")?,
                api_key: secret(&p.miraclecash_api_key, "MIRACLECASH_API_KEY")?,
            });
        }
        if let Some(base_url) = &p.foxreload_base_url {
            config.foxreload = Some(FoxReloadConfig {
                base_url: base_url.clone(),
                api_key: secret(&p.foxreload_api_key, "FOXRELOAD_API_KEY")?,
            });
        }
        for definition in self.definitions()? {
            let env = |name: &str| std::env::var(name).ok();
            let resolved = if env(&definition.base_url_env).is_some() {
                Resolved::from_env(definition, env).map_err(|e| {
                    // ConfigError names variables statically; a file's are few and read once.
                    let variable: &'static str = Box::leak(e.variable.clone().into_boxed_str());
                    bad(
                        variable,
                        format!("{} ({} for {})", e.problem, e.file, e.provider),
                    )
                })?
            } else if let Some(url) = &self.sandbox_url {
                Resolved::sandbox(definition, url)
            } else {
                // Not configured here, like a built-in without its base URL.
                continue;
            };
            config.declared.push(resolved);
        }
        Ok(config)
    }

    fn telegram_token(&self) -> Option<Secret> {
        self.channels.telegram_bot_token.clone().or_else(|| {
            self.sandbox_url
                .as_ref()
                .map(|_| Secret::new(SANDBOX_TELEGRAM_TOKEN))
        })
    }

    /// Where ops digests go.
    pub fn ops_targets(&self) -> OpsTargets {
        OpsTargets {
            email: self.channels.ops_email.clone(),
            telegram_chat_id: self.channels.ops_telegram_chat_id,
            webhook_url: self.channels.ops_webhook_url.clone(),
            interval: self.channels.ops_interval,
        }
    }

    /// This worker's name: the configured one, or `<host name>-<pid>`. The host name is the
    /// system's (shells do not export `HOSTNAME` to the programs they start).
    pub fn worker_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let host = hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "worker".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// What [`WorkerConfig::check`] built: every part of a worker that needs no Redis, checked.
#[derive(Debug)]
pub struct Checked {
    /// The provider clients.
    pub providers: ProviderClient,
    /// The providers' endpoints and credentials (request budgets are per credential).
    pub providers_config: ProvidersConfig,
    /// The poll policies, time-scaled.
    pub policies: PollPolicies,
    /// The provider definitions of PAYWATCH_PROVIDERS_DIR.
    pub definitions: Vec<Arc<Definition>>,
    /// The allow-list to publish for the submit function, when this process serves
    /// notify-webhook.
    pub webhook_allow: Option<String>,
    email: Option<EmailSender>,
    telegram: Option<TelegramConfig>,
    webhook: Option<WebhookSender>,
}

impl Checked {
    /// The senders of every channel that has settings; Telegram's pace through Redis on `conn`
    /// under `prefix`. Their settings were checked already: only building an HTTP client can
    /// still fail.
    pub fn notify_context(
        &self,
        conn: paywatch_queue::RedisConn,
        prefix: &str,
    ) -> Result<NotifyContext, ConfigError> {
        let telegram = match &self.telegram {
            Some(config) => Some(
                TelegramSender::new(config.clone(), conn, format!("{prefix}:telegram"))
                    .map_err(telegram_error)?,
            ),
            None => None,
        };
        Ok(NotifyContext {
            email: self.email.clone(),
            telegram,
            webhook: self.webhook.clone(),
        })
    }
}

/// A Telegram setting's error, named by its variable.
fn telegram_error(e: TelegramConfigError) -> ConfigError {
    let variable = match &e {
        TelegramConfigError::InvalidApiBase(_) => "TELEGRAM_API_BASE",
        TelegramConfigError::InvalidChatInterval(_) => "PAYWATCH_TELEGRAM_CHAT_INTERVAL",
        TelegramConfigError::InvalidBotRate(_) => "PAYWATCH_TELEGRAM_PER_SECOND",
        TelegramConfigError::EmptyKeyPrefix => "PAYWATCH_PREFIX",
        _ => "TELEGRAM_BOT_TOKEN",
    };
    bad(variable, e.to_string())
}

/// A webhook setting's error, named by its variable.
fn webhook_error(e: WebhookConfigError) -> ConfigError {
    let variable = match &e {
        WebhookConfigError::SecretPrefix { field }
        | WebhookConfigError::SecretBase64 { field }
        | WebhookConfigError::SecretTooShort { field, .. }
            if field.starts_with("extra_secrets") =>
        {
            "PAYWATCH_WEBHOOK_EXTRA_SECRETS"
        }
        WebhookConfigError::AllowHost { .. } => "PAYWATCH_WEBHOOK_ALLOW_HOSTS",
        WebhookConfigError::ScheduleScale(_) => "PAYWATCH_WEBHOOK_SCHEDULE_SCALE",
        _ => "PAYWATCH_WEBHOOK_SECRET",
    };
    bad(variable, e.to_string())
}

/// A provider client's error, named by the variable of the setting at fault.
fn provider_error(e: ClientBuildError) -> ConfigError {
    let variable = match &e {
        ClientBuildError::BadBaseUrl { provider, .. } => match provider {
            Provider::Cashless => "CASHLESS_BASE_URL",
            Provider::HandCash => "HANDCASH_BASE_URL",
            Provider::MiracleCash => "MIRACLECASH_BASE_URL",
            Provider::FoxReload => "FOXRELOAD_BASE_URL",
            Provider::Declared(_) => "PAYWATCH_PROVIDERS_DIR",
        },
        ClientBuildError::EmptyCredential { provider, field }
        | ClientBuildError::InvalidCredential { provider, field } => {
            credential_variable(*provider, field)
        }
        _ => "PAYWATCH_SANDBOX_URL",
    };
    // BadBaseUrl's text starts with its variable already.
    let text = e.to_string();
    let text = text
        .strip_prefix(variable)
        .and_then(|t| t.strip_prefix(": "))
        .unwrap_or(&text);
    bad(variable, text)
}

/// The variable of a provider's credential field.
fn credential_variable(provider: Provider, field: &str) -> &'static str {
    match (provider, field) {
        (Provider::Cashless, "api_secret") => "CASHLESS_API_SECRET",
        // One header carries both.
        (Provider::Cashless, "api_key/api_secret") => "CASHLESS_API_KEY or CASHLESS_API_SECRET",
        (Provider::Cashless, _) => "CASHLESS_API_KEY",
        (Provider::HandCash, "app_secret") => "HANDCASH_APP_SECRET",
        (Provider::HandCash, _) => "HANDCASH_APP_ID",
        (Provider::MiracleCash, "client_id") => "MIRACLECASH_CLIENT_ID",
        (Provider::MiracleCash, _) => "MIRACLECASH_API_KEY",
        (Provider::FoxReload, _) => "FOXRELOAD_API_KEY",
        // The file names its variables; its errors say which.
        (Provider::Declared(_), _) => "PAYWATCH_PROVIDERS_DIR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> WorkerConfig {
        WorkerConfig::try_parse_from(std::iter::once("paywatch-worker").chain(args.iter().copied()))
            .expect("parse")
    }

    #[test]
    fn durable_mode_is_refused_on_a_cluster_naming_the_variable() {
        let cluster = "redis://127.0.0.1:7000,redis://127.0.0.1:7001";
        let e = parse(&["--redis-url", cluster, "--durable-replicas", "1"])
            .validate()
            .expect_err("durable mode on a Cluster");
        assert_eq!(e.variable, "PAYWATCH_DURABLE_REPLICAS", "{e}");
        // Without durable mode the Cluster is fine, and durable mode on one server too.
        parse(&["--redis-url", cluster])
            .validate()
            .expect("a Cluster");
        let single = parse(&["--durable-replicas", "1", "--durable-fsync"]);
        single.validate().expect("one server");
        assert!(single.durable_settles().is_required());
        assert!(!parse(&[]).durable_settles().is_required());
    }

    #[test]
    fn threads_pick_the_runtime() {
        use tokio::runtime::RuntimeFlavor;
        let flavor = |args: &[&str]| {
            let runtime = parse(args).runtime().expect("runtime");
            (
                runtime.handle().runtime_flavor(),
                runtime.metrics().num_workers(),
            )
        };
        assert_eq!(
            flavor(&["--threads", "1"]),
            (RuntimeFlavor::CurrentThread, 1)
        );
        assert_eq!(flavor(&["--threads", "3"]), (RuntimeFlavor::MultiThread, 3));
        assert_eq!(flavor(&[]).0, RuntimeFlavor::MultiThread);
        // No runtime without threads: refused when the flags are read, naming the flag.
        let e = WorkerConfig::try_parse_from(["paywatch-worker", "--threads", "0"])
            .expect_err("zero threads");
        assert!(e.to_string().contains("--threads"), "{e}");
        assert!(e.to_string().contains("at least 1"), "{e}");
    }

    #[test]
    fn errors_name_the_variable() {
        let c = parse(&["--cashless-base-url", "http://127.0.0.1:1/cashless"]);
        let e = c.validate().expect_err("missing key");
        assert_eq!(e.variable, "CASHLESS_API_KEY");
        let e = parse(&["--queues", "bogus"])
            .validate()
            .expect_err("bad queue");
        assert_eq!(e.variable, "PAYWATCH_QUEUES");
        let e = parse(&["--time-scale", "0"])
            .validate()
            .expect_err("bad scale");
        assert_eq!(e.variable, "PAYWATCH_TIME_SCALE");
        let e = parse(&["--poll-max-interval", "10ms"])
            .validate()
            .expect_err("bad interval");
        assert_eq!(e.variable, "PAYWATCH_POLL_MAX_INTERVAL");
        let c = parse(&["--poll-mode", "adaptive", "--poll-budget", "p90:5s"]);
        assert_eq!(c.schedule_config().mode, PollMode::Adaptive);
        assert_eq!(c.schedule_config().budget, Budget::P90Lag(5.0));
        assert!(
            WorkerConfig::try_parse_from(["paywatch-worker", "--poll-budget", "lots"]).is_err()
        );
        parse(&["--sandbox-url", "http://127.0.0.1:8090"])
            .validate()
            .expect("sandbox ok");
    }

    #[test]
    fn ops_destinations_follow_the_door_and_the_allow_list() {
        let check = |extra: &[&str]| {
            let mut args = vec![
                "--queues",
                "notify-ops",
                "--webhook-secret",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ];
            args.extend_from_slice(extra);
            parse(&args).check().map(drop).map_err(|e| e.variable)
        };
        let url = "--ops-webhook-url";
        assert_eq!(check(&[url, "https://ops.example/hook"]), Ok(()));
        assert_eq!(
            check(&[url, "http://10.0.0.1/hook"]),
            Err("PAYWATCH_OPS_WEBHOOK_URL")
        );
        // The allow-list that lets the notifier deliver there lets the setting through.
        assert_eq!(
            check(&[
                url,
                "http://10.0.0.1/hook",
                "--webhook-allow-hosts",
                "10.0.0.0/8"
            ]),
            Ok(())
        );
        assert_eq!(
            check(&[url, "https://a:b@ops.example/"]),
            Err("PAYWATCH_OPS_WEBHOOK_URL")
        );
        let chat = [url, "https://ops.example/hook", "--ops-telegram-chat-id"];
        let token = ["--telegram-bot-token", "123:tg-token"];
        assert_eq!(
            check(&[&chat[..], &["0"], &token[..]].concat()),
            Err("PAYWATCH_OPS_TELEGRAM_CHAT_ID")
        );
        assert_eq!(check(&[&chat[..], &["-100"], &token[..]].concat()), Ok(()));
    }

    #[test]
    fn policies_name_only_providers_and_fields() {
        let policies = |json: &str| {
            WorkerConfig::try_parse_from(["paywatch-worker", "--policies", json])
                .map(drop)
                .map_err(|e| e.to_string())
        };
        let full = r#"{"first_delay":"1s","multiplier":1.5,"max_delay":"30s","fast_window":"10m"}"#;
        assert_eq!(policies(&format!(r#"{{"cashless":{full}}}"#)), Ok(()));
        let e = policies(&format!(r#"{{"paypal":{full}}}"#)).expect_err("unknown provider");
        assert!(e.contains("unknown provider \"paypal\""), "{e}");
        let e = policies(&format!(r#"{{"Cashless":{full}}}"#)).expect_err("serde's spelling");
        assert!(e.contains("unknown provider"), "{e}");
        let e = policies(r#"{"cashless":{"first_delay":"1s","multiplier":1.5,"max_delay":"30s","fast_window":"10m","dedline":"1h"}}"#)
            .expect_err("misspelt field");
        assert!(e.contains("unknown field \"dedline\""), "{e}");
    }

    /// Every credential flag with a recognizable value.
    const SECRETS: &[(&str, &str)] = &[
        (
            "--redis-url",
            "redis://default:r3dis-pw-1029@redis.internal:6380",
        ),
        ("--smtp-url", "smtps://mailer:smtp-pw-5531@mail.example:465"),
        ("--telegram-bot-token", "123:tg-token-8842"),
        ("--webhook-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        (
            "--webhook-extra-secrets",
            "whsec_b2xkLW9sZC1vbGQtb2xkLXNlY3JldA==",
        ),
        ("--cashless-api-key", "cl-key-7731"),
        ("--cashless-api-secret", "cl-secret-6620"),
        ("--handcash-app-id", "hc-app-4419"),
        ("--handcash-app-secret", "hc-secret-3308"),
        ("--miraclecash-client-id", "mc-client-2297"),
        ("--miraclecash-api-key", "mc-key-1186"),
        ("--foxreload-api-key", "fr-key-0075"),
    ];

    /// The part of each secret that must never show (a URL's password, a key's value).
    const NEEDLES: &[&str] = &[
        "r3dis-pw-1029",
        "smtp-pw-5531",
        "tg-token-8842",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "b2xkLW9sZC1vbGQtb2xkLXNlY3JldA",
        "cl-key-7731",
        "cl-secret-6620",
        "hc-app-4419",
        "hc-secret-3308",
        "mc-client-2297",
        "mc-key-1186",
        "fr-key-0075",
    ];

    fn with_every_secret() -> WorkerConfig {
        let mut args = vec![
            "--cashless-base-url",
            "http://127.0.0.1:1/cashless",
            "--handcash-base-url",
            "http://127.0.0.1:1/handcash",
            "--miraclecash-base-url",
            "http://127.0.0.1:1/miraclecash",
            "--foxreload-base-url",
            "http://127.0.0.1:1/foxreload",
        ];
        for (flag, value) in SECRETS {
            args.extend([*flag, *value]);
        }
        parse(&args)
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = with_every_secret();
        let providers = c.providers_config().expect("config");
        let text = format!("{c:?} {c:#?} {providers:?} {:?}", c.channels);
        for needle in NEEDLES {
            assert!(!text.contains(needle), "{needle} in {text}");
        }
        // Still useful: the Redis host shows, and the values reach the code that needs them.
        assert!(text.contains("redis.internal:6380"), "{text}");
        assert_eq!(
            c.channels.telegram_bot_token.as_ref().map(Secret::expose),
            Some("123:tg-token-8842")
        );
        assert!(c.redis_url.expose().contains("r3dis-pw-1029"));
    }
}
