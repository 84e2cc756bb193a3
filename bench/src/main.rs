//! `paywatch-bench`: paywatch's benchmarks, each side by side with its peer (BullMQ,
//! `bench/bullmq/bench.mjs`) where there is one, and `all`, which runs them all and writes
//! BENCHMARKS.md with its plots (`just bench`).
//!
//! - `compare` (+ `preload`, `work`, `lateness`, `memory`, `clean`): the queue alone, each
//!   measurement in its own process printing one JSON object as its last stdout line.
//! - `e2e`, `webhook`, `idle`, `scale`, `cluster`: the fleet (modules of the same names).
//! - `network`: `e2e` through a latency proxy at several round-trip times to Redis ([`proxy`]).
//! - `economy`: provider calls against detection lag per polling policy ([`economy`],
//!   docs/polling.md).
//! - `all`: every benchmark, the report and the plots ([`suite`]).

mod affinity;
mod cluster;
mod e2e;
mod economy;
mod fleet;
mod idle;
mod measure;
mod network;
mod plot;
mod proxy;
mod report;
mod scale;
mod servers;
mod suite;
mod webhook;

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
    /// Directory of the `paywatch-worker` and `paywatch-producer` executables the fleet
    /// benchmarks start (default: this executable runs them itself, see `fleet`).
    #[arg(long, global = true)]
    bin_dir: Option<PathBuf>,
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
    /// Check-payment throughput end to end, paywatch's fleet against BullMQ (JSON).
    E2e {
        #[command(flatten)]
        opts: e2e::E2eOpts,
        /// Runs of each side.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Directory of bench.mjs.
        #[arg(long, default_value = "bench/bullmq")]
        bullmq_dir: PathBuf,
        /// Run one side alone (to profile it); both by default.
        #[arg(long, value_enum)]
        only: Option<e2e::Side>,
    },
    /// The end-to-end comparison through a latency proxy at several round-trip times to Redis,
    /// with round trips per order counted for both sides (JSON; --out writes a Markdown table).
    Network {
        #[command(flatten)]
        opts: network::NetworkOpts,
    },
    /// The webhook fast path's latency (JSON).
    Webhook {
        #[command(flatten)]
        opts: webhook::WebhookOpts,
    },
    /// Redis commands per second of idle workers (JSON).
    Idle {
        #[command(flatten)]
        opts: idle::IdleOpts,
        /// Directory of bench.mjs.
        #[arg(long, default_value = "bench/bullmq")]
        bullmq_dir: PathBuf,
    },
    /// A million pending orders and a spike of checks due in one second (JSON).
    Scale {
        #[command(flatten)]
        opts: scale::ScaleOpts,
    },
    /// The end-to-end run on a three-master Cluster against one Redis (JSON).
    Cluster {
        #[command(flatten)]
        opts: e2e::E2eOpts,
        /// Runs of each topology.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Every benchmark; writes BENCHMARKS.md and its plots.
    All {
        #[command(flatten)]
        opts: suite::SuiteOpts,
    },
    /// Runs `paywatch-worker` or `paywatch-producer` from this executable (what the fleet
    /// benchmarks start when no --bin-dir is given).
    #[command(hide = true)]
    Fleet {
        /// `paywatch-worker` or `paywatch-producer`.
        program: String,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
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
    let fleet = fleet::Fleet {
        bin_dir: cli.bin_dir.clone(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let result = match cli.command {
        // A fleet program builds the runtime its own `main` would (this one stays idle).
        Command::Fleet { program, args } => return fleet::run(&program, args),
        Command::E2e {
            opts,
            runs,
            bullmq_dir,
            only,
        } => serde_json::to_value(e2e::harness_runtime()?.block_on(e2e::compare(
            &fleet,
            &bullmq_dir,
            &opts,
            runs,
            only,
        ))?)?,
        Command::Network { opts } => {
            serde_json::to_value(e2e::harness_runtime()?.block_on(network::run(&fleet, &opts))?)?
        }
        Command::Webhook { opts } => {
            serde_json::to_value(runtime.block_on(webhook::run(&fleet, &opts))?)?
        }
        Command::Idle { opts, bullmq_dir } => {
            serde_json::to_value(runtime.block_on(idle::run(&fleet, &bullmq_dir, &opts))?)?
        }
        Command::Scale { opts } => {
            serde_json::to_value(runtime.block_on(scale::run(&fleet, &opts))?)?
        }
        Command::Cluster { opts, runs } => serde_json::to_value(
            e2e::harness_runtime()?.block_on(cluster::run(&fleet, &opts, runs))?,
        )?,
        Command::All { opts } => {
            drop(runtime);
            let report = suite::run(&opts, &fleet, &cli.redis)?;
            eprintln!("{report}");
            eprintln!("report written to {}", opts.out.display());
            return Ok(());
        }
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
