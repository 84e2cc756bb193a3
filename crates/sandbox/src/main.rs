//! `paywatch-sandbox`: serves the fake payment providers and Telegram Bot API until stopped.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use paywatch_sandbox::{Credentials, RateLimit, Sandbox, SandboxConfig, SandboxError};

/// Fake Cashless, HandCash, MiracleCash, FoxReload and Telegram APIs for local runs.
#[derive(Parser)]
#[command(
    version,
    about = "paywatch-sandbox: fake Cashless, HandCash, MiracleCash, FoxReload and Telegram Bot \
             APIs for local runs, tests and benchmarks, scripted through /_admin.",
    long_about = None
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SANDBOX_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Base URL provider webhooks are POSTed to (`{target}/webhooks/{provider}`).
    #[arg(long, env = "SANDBOX_WEBHOOK_TARGET")]
    webhook_target: Option<String>,
    /// Timeline speed: 1.0 is real time, 0.1 runs ten times faster (a positive number).
    #[arg(long, env = "SANDBOX_TIME_SCALE", default_value_t = 1.0)]
    time_scale: f64,
    /// Each provider key's request limit, e.g. `100/min` or `100/6s` (429 with Retry-After past it).
    #[arg(long, env = "SANDBOX_RATE_LIMIT")]
    rate_limit: Option<RateLimit>,
    /// A directory of provider definition files (docs/providers.md): each provider is served
    /// at `/{name}` from its file, its payments scripted with `POST /_admin/declared/payments`.
    #[arg(long, env = "PAYWATCH_PROVIDERS_DIR")]
    providers_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    credentials: CredentialArgs,
}

/// Credentials come from the environment by preference; values are never printed in `--help`.
#[derive(clap::Args)]
struct CredentialArgs {
    #[arg(
        long,
        env = "SANDBOX_CASHLESS_API_KEY",
        default_value = "sandbox-cashless-key",
        hide_env_values = true
    )]
    cashless_api_key: String,
    #[arg(
        long,
        env = "SANDBOX_CASHLESS_API_SECRET",
        default_value = "sandbox-cashless-secret",
        hide_env_values = true,
        hide_default_value = true
    )]
    cashless_api_secret: String,
    #[arg(
        long,
        env = "SANDBOX_HANDCASH_APP_ID",
        default_value = "sandbox-handcash-app",
        hide_env_values = true
    )]
    handcash_app_id: String,
    #[arg(
        long,
        env = "SANDBOX_HANDCASH_APP_SECRET",
        default_value = "sandbox-handcash-secret",
        hide_env_values = true,
        hide_default_value = true
    )]
    handcash_app_secret: String,
    #[arg(
        long,
        env = "SANDBOX_MIRACLECASH_CLIENT_ID",
        default_value = "sandbox-miracle-client",
        hide_env_values = true
    )]
    miraclecash_client_id: String,
    #[arg(
        long,
        env = "SANDBOX_MIRACLECASH_API_KEY",
        default_value = "sandbox-miracle-key",
        hide_env_values = true,
        hide_default_value = true
    )]
    miraclecash_api_key: String,
    #[arg(
        long,
        env = "SANDBOX_FOXRELOAD_API_KEY",
        default_value = "sandbox-foxreload-key",
        hide_env_values = true,
        hide_default_value = true
    )]
    foxreload_api_key: String,
    #[arg(
        long,
        env = "SANDBOX_TELEGRAM_BOT_TOKEN",
        default_value = "123456:sandbox-bot-token",
        hide_env_values = true,
        hide_default_value = true
    )]
    telegram_bot_token: String,
}

impl From<CredentialArgs> for Credentials {
    fn from(c: CredentialArgs) -> Self {
        Self {
            cashless_api_key: c.cashless_api_key,
            cashless_api_secret: c.cashless_api_secret,
            handcash_app_id: c.handcash_app_id,
            handcash_app_secret: c.handcash_app_secret,
            miraclecash_client_id: c.miraclecash_client_id,
            miraclecash_api_key: c.miraclecash_api_key,
            foxreload_api_key: c.foxreload_api_key,
            telegram_bot_token: c.telegram_bot_token,
        }
    }
}

impl Args {
    /// Checks what the sandbox itself would refuse, naming the variable (the library's own
    /// errors name its fields).
    fn check(&self) -> anyhow::Result<()> {
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            anyhow::bail!(
                "SANDBOX_TIME_SCALE: must be a positive number (1.0 is real time, 0.1 ten times \
                 faster)"
            );
        }
        if let Some(target) = &self.webhook_target {
            let usable = reqwest::Url::parse(target).is_ok_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some()
                    && !url.cannot_be_a_base()
            });
            if !usable {
                anyhow::bail!(
                    "SANDBOX_WEBHOOK_TARGET: must be an http:// or https:// URL with a host (the \
                     producer's base URL, like http://127.0.0.1:8080)"
                );
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // clap's errors, reworded to name the environment variable at fault.
    let args: Args = paywatch_core::cli::parse();
    paywatch_core::telemetry::init_logs()?;
    args.check()?;
    let definitions = match &args.providers_dir {
        Some(dir) => paywatch_core::declared::load_dir(dir).context("PAYWATCH_PROVIDERS_DIR")?,
        None => Vec::new(),
    };
    let config = SandboxConfig {
        credentials: args.credentials.into(),
        webhook_target: args.webhook_target,
        time_scale: args.time_scale,
        rate_limit: args.rate_limit,
    };
    let webhooks = config.webhook_target.as_deref().map(redact_userinfo);
    let sandbox = Sandbox::start_with(config, args.listen, &definitions)
        .await
        .map_err(|e| match e {
            SandboxError::Bind { .. } => anyhow::Error::new(e).context("SANDBOX_LISTEN"),
            other => anyhow::Error::new(other).context("starting the sandbox"),
        })?;
    tracing::info!(
        base_url = %sandbox.base_url(),
        webhook_target = webhooks.as_deref().unwrap_or("none"),
        time_scale = args.time_scale,
        "paywatch sandbox ready"
    );
    shutdown_signal()
        .await
        .context("waiting for a shutdown signal")?;
    tracing::info!("shutting down");
    sandbox
        .shutdown()
        .await
        .context("shutting the sandbox down")?;
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what `docker stop` and process managers send).
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            res = tokio::signal::ctrl_c() => res,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// A webhook URL may embed credentials (`http://user:pass@host`); logs get only the host part.
fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://<redacted>@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}
