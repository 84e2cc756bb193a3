//! `paywatch-chaos` (`just chaos`): the whole product under `kill -9` and Redis restarts (or a
//! primary's `kill -9` and failover: `--scenario failover`, `--scenario cluster-failover`), with
//! every order and notification accounted for. Prints one summary line; exits non-zero when
//! anything was lost, wrong, duplicated outside its channel's window or stranded.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use paywatch_tests::chaos::{self, ChaosConfig, Scenario};

/// Run paywatch under fault injection and account for every order and notification.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Orders to submit.
    #[arg(long, default_value_t = 10_000)]
    orders: usize,
    /// Orders submitted per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Check worker processes.
    #[arg(long, default_value_t = 3)]
    checkers: usize,
    /// Notifier worker processes.
    #[arg(long, default_value_t = 2)]
    notifiers: usize,
    /// Mean seconds between two `kill -9`s of a random worker.
    #[arg(long, default_value_t = 3.0)]
    kill_every: f64,
    /// Shards the orders are spread over (default 2; 4 for `cluster-failover`, which puts them
    /// on all three masters).
    #[arg(long)]
    shards: Option<u32>,
    /// Seed of the workload and of the choice of victims.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Give up (and fail) after this many seconds.
    #[arg(long, default_value_t = 600)]
    time_limit: u64,
    /// Where the workers' logs go.
    #[arg(long, default_value = "target/chaos")]
    logs: PathBuf,
    /// Print the views of the N orders found final the latest.
    #[arg(long, default_value_t = 0)]
    slowest: usize,
    /// The worker binary (default: `pw-worker` next to this program).
    #[arg(long)]
    worker: Option<PathBuf>,
    /// What to do to the fleet: `restarts` kills workers and restarts one Redis; `failover`
    /// kills a Sentinel-watched primary once; `cluster-failover` kills a Cluster master once.
    #[arg(long, value_enum, default_value_t = Scenario::Restarts)]
    scenario: Scenario,
    /// Durable mode (`PAYWATCH_DURABLE_REPLICAS=1` on the producer and the workers, `WAIT` after
    /// each `FCALL`): default `on` for `failover`, `off` otherwise (a Cluster refuses it).
    #[arg(long, value_parser = ["on", "off"])]
    durable: Option<String>,
    /// `failover`: the replicas reach the first primary over a link that delays its stream by
    /// this many milliseconds (0: directly), so they lag as a replica in another zone does.
    #[arg(long, default_value_t = 50)]
    link_delay_ms: u64,
    /// The producer binary the failover scenarios run (default: `paywatch-producer` next to
    /// this program).
    #[arg(long)]
    producer: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.orders > 0, "--orders: must be at least 1");
    anyhow::ensure!(args.rate > 0.0, "--rate: must be positive");
    anyhow::ensure!(
        args.checkers > 0 && args.notifiers > 0,
        "--checkers and --notifiers: at least one of each"
    );
    anyhow::ensure!(args.kill_every > 0.0, "--kill-every: must be positive");
    let beside = |name: &str, flag: &str| {
        std::env::current_exe()?
            .parent()
            .map(|dir| dir.join(name))
            .ok_or_else(|| anyhow::anyhow!("cannot locate {name}; pass {flag}"))
    };
    let worker_binary = match args.worker {
        Some(path) => path,
        None => beside("pw-worker", "--worker")?,
    };
    let producer_binary = match args.producer {
        Some(path) => path,
        None => beside("paywatch-producer", "--producer")?,
    };
    let durable = match args.durable.as_deref() {
        Some(on) => on == "on",
        None => args.scenario == Scenario::Failover,
    };
    let report = chaos::run(ChaosConfig {
        orders: args.orders,
        rate: args.rate,
        checkers: args.checkers,
        notifiers: args.notifiers,
        kill_every: Duration::from_secs_f64(args.kill_every),
        shards: args.shards.unwrap_or(match args.scenario {
            Scenario::ClusterFailover => 4,
            _ => 2,
        }),
        seed: args.seed,
        time_limit: Duration::from_secs(args.time_limit),
        worker_binary,
        logs: args.logs.clone(),
        scenario: args.scenario,
        durable,
        producer_binary,
        link_delay: Duration::from_millis(args.link_delay_ms),
    })
    .await?;
    if args.slowest > 0 {
        for (lag, id, view) in report.slowest(args.slowest) {
            eprintln!(
                "chaos: {id} found final {:.2}s late: {view}",
                lag.as_secs_f64()
            );
        }
    }
    for problem in report.problems() {
        eprintln!("chaos: {problem}");
    }
    println!("{report}");
    if !report.problems().is_empty() {
        eprintln!("chaos: worker logs in {}", args.logs.display());
        std::process::exit(1);
    }
    Ok(())
}
