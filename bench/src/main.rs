//! `paywatch-bench`: the paywatch side of `just bench queue`, and the driver that runs it side by
//! side with BullMQ (`bench/bullmq/bench.mjs`) on the same Redis and prints the ratios.
//!
//! Each measurement runs in its own process, which prints one JSON object as its last line of
//! stdout (the same contract as `bench.mjs`), so peak RSS is the worker's alone.

mod economy;
mod measure;
mod report;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    /// Redis URL (the same one for both queues).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true,
        hide_env_values = true
    )]
    redis: String,
    /// Key prefix (default: a random one).
    #[arg(long, global = true)]
    prefix: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add N no-op jobs.
    Preload {
        #[arg(long, default_value_t = 50_000)]
        jobs: usize,
    },
    /// Process N already-queued no-op jobs in one worker process; report jobs/s and peak RSS.
    Work {
        #[arg(long, default_value_t = 50_000)]
        jobs: usize,
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
    },
    /// N jobs delayed uniformly over [0, S) ms; report lateness percentiles and early runs.
    Lateness {
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        #[arg(long, default_value_t = 2_000)]
        spread_ms: u64,
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
    },
    /// Redis bytes per pending delayed job (used_memory delta over N jobs), then clean up.
    Memory {
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        /// `small` ({"i":N}) or `order` ({"order_id":"ord-N","provider":"cashless"}).
        #[arg(long, default_value = "order")]
        payload: String,
    },
    /// Delete the queue's keys.
    Clean,
    /// The polling economy: provider calls against detection lag for fixed, adaptive and
    /// webhook-driven schedules on one seeded workload (docs/polling.md).
    Economy(economy::EconomyArgs),
    /// Run every scenario for paywatch and BullMQ and print the comparison table.
    Compare {
        /// How many times to run the throughput scenario (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Directory of bench.mjs.
        #[arg(long, default_value = "bench/bullmq")]
        bullmq_dir: PathBuf,
        /// Where to write the Markdown table too.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Scale every scenario's job count down (e.g. 0.1 for a quick look).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let prefix = cli.prefix.clone().unwrap_or_else(|| {
        format!(
            "pwbench:{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    });
    let runtime = tokio::runtime::Runtime::new()?;
    let result = match cli.command {
        Command::Preload { jobs } => {
            runtime.block_on(measure::preload(&cli.redis, &prefix, jobs))?
        }
        Command::Work { jobs, concurrency } => {
            runtime.block_on(measure::work(&cli.redis, &prefix, jobs, concurrency))?
        }
        Command::Lateness {
            jobs,
            spread_ms,
            concurrency,
        } => runtime.block_on(measure::lateness(
            &cli.redis,
            &prefix,
            jobs,
            spread_ms,
            concurrency,
        ))?,
        Command::Memory { jobs, payload } => {
            runtime.block_on(measure::memory(&cli.redis, &prefix, jobs, &payload))?
        }
        Command::Clean => runtime.block_on(measure::clean(&cli.redis, &prefix))?,
        Command::Economy(args) => {
            let text = runtime.block_on(economy::run(&cli.redis, args))?;
            println!("{text}");
            return Ok(());
        }
        Command::Compare {
            runs,
            bullmq_dir,
            out,
            scale,
        } => {
            drop(runtime);
            return report::compare(&cli.redis, runs, &bullmq_dir, out.as_deref(), scale);
        }
    };
    println!("{result}");
    Ok(())
}
