//! `paywatch-worker provider check FILE [--payment-id ID]`: lints a provider definition file
//! and, given a payment id, makes one real status request and prints what paywatch would
//! conclude. Credentials come from the variables the file names (or from the sandbox with
//! `--sandbox-url`); none is ever printed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use paywatch_core::declared::{Definition, Resolved};
use paywatch_core::{PaymentId, PollDecision, PollState, ProviderClient, ProvidersConfig};
use url::Url;

/// `paywatch-worker provider …`.
#[derive(Debug, Parser)]
#[command(
    name = "paywatch-worker provider",
    about = "Tools for provider definition files (docs/providers.md)."
)]
pub struct ProviderCli {
    /// What to do.
    #[command(subcommand)]
    pub command: ProviderCommand,
}

/// The provider tools.
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Lint a definition file; with --payment-id, ask the provider once and print the verdict.
    Check {
        /// The definition file.
        file: PathBuf,
        /// A payment id to look up (one real request).
        #[arg(long)]
        payment_id: Option<String>,
        /// Ask a paywatch-sandbox at this URL instead, with its credentials.
        #[arg(long, env = "PAYWATCH_SANDBOX_URL")]
        sandbox_url: Option<Url>,
    },
}

/// Whether `args` (the process's, program name first) ask for the provider tools.
pub fn wanted(args: &[String]) -> bool {
    args.get(1).is_some_and(|a| a == "provider")
}

/// Runs the provider tools with the process's arguments after `provider`; a definition with a
/// mistake is an error naming the file, the line and the field.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let cli = ProviderCli::parse_from(args.iter().skip(1));
    let ProviderCommand::Check {
        file,
        payment_id,
        sandbox_url,
    } = cli.command;
    let definition = Arc::new(paywatch_core::declared::load_file(&file)?);
    print_summary(&definition);
    let Some(payment_id) = payment_id else {
        println!("ok: {} is a valid definition", file.display());
        return Ok(());
    };
    let payment_id = PaymentId::new(payment_id).context("--payment-id")?;
    let resolved = match &sandbox_url {
        Some(url) => Resolved::sandbox(Arc::clone(&definition), url),
        None => Resolved::from_env(Arc::clone(&definition), |n| std::env::var(n).ok())?,
    };
    let config = ProvidersConfig {
        declared: vec![resolved],
        ..ProvidersConfig::default()
    };
    let client = ProviderClient::new(&config).context("building the request")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(client.check(definition.provider, &payment_id));
    let now = chrono::Utc::now();
    let mut state = PollState::new(&definition.policy, now);
    let decision = definition.policy.next(&mut state, result.as_ref(), now);
    match &result {
        Ok(seen) => println!(
            "answer: status {} (provider said {:?}){}{}",
            seen.status,
            seen.raw_status,
            seen.detail
                .as_deref()
                .map(|d| format!(", detail {d}"))
                .unwrap_or_default(),
            if seen.delivered_codes.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} delivered codes (not shown)",
                    seen.delivered_codes.len()
                )
            }
        ),
        Err(e) => println!("answer: {} error: {e}", e.kind()),
    }
    let verdict = match decision {
        PollDecision::Terminal(status) => format!("final: {status}; notifications go out"),
        PollDecision::CheckAgainIn(after) => format!("check again in {after:?}"),
        PollDecision::GiveUp(reason) => {
            format!("stop: {reason:?} (dead-lettered when an error is permanent)")
        }
    };
    println!("paywatch would: {verdict}");
    Ok(())
}

fn print_summary(d: &Definition) {
    println!("provider: {} ({})", d.provider, d.file.display());
    println!("base URL from: {}", d.base_url_env);
    let credentials: Vec<String> = d
        .credentials
        .iter()
        .map(|(name, var)| format!("{name} from {var}"))
        .collect();
    println!(
        "credentials: {}",
        if credentials.is_empty() {
            "none".into()
        } else {
            credentials.join(", ")
        }
    );
    println!(
        "request: {} with {} path segments",
        d.request.method,
        d.request.path.len()
    );
    let statuses: Vec<String> = d
        .answer
        .statuses
        .iter()
        .map(|(raw, status)| format!("{raw}→{status}"))
        .collect();
    println!("statuses: {}", statuses.join(", "));
    println!(
        "policy: first {:?} ×{} to {:?} for {:?}, then every {:?} until {:?}",
        d.policy.first_delay,
        d.policy.multiplier,
        d.policy.max_delay,
        d.policy.fast_window,
        d.policy.grace_interval,
        d.policy.deadline
    );
    match d.rate_limit {
        Some((limit, window)) => println!("rate budget: {limit} per {window:?}"),
        None => println!("rate budget: none"),
    }
    match &d.webhook {
        Some(w) => println!("webhook: POST {} (payment id at {})", w.path, w.payment_id),
        None => println!("webhook: none"),
    }
}
