//! paywatch's own processes as the benchmarks run them: `paywatch-worker` and
//! `paywatch-producer`, each a separate OS process.
//!
//! `just bench` passes `--bin-dir` with the release binaries cargo built, so the real executables
//! run. Without it (the smoke test in `cargo test`, which cannot ask cargo for other packages'
//! binaries) this executable re-runs itself as `paywatch-bench fleet <program> ARGS`, which runs
//! the same library entry points the binaries' `main` functions run.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

/// Where paywatch's executables come from.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The directory holding `paywatch-worker` and `paywatch-producer`; `None` runs this
    /// executable's `fleet` subcommand instead.
    pub bin_dir: Option<PathBuf>,
}

/// The log line each program prints once it serves (see `ready_line`).
fn ready_line(program: &str) -> &'static str {
    match program {
        "paywatch-producer" => "producer API listening",
        _ => "worker started",
    }
}

/// Only the start-up line is logged: per-order info lines would cost the measured processes
/// time the BullMQ side does not spend.
fn log_filter(program: &str) -> &'static str {
    match program {
        "paywatch-producer" => "warn,paywatch_producer=info",
        _ => "warn,paywatch_worker::app=info",
    }
}

impl Fleet {
    fn command(&self, program: &str) -> anyhow::Result<Command> {
        Ok(match &self.bin_dir {
            Some(dir) => Command::new(dir.join(program)),
            None => {
                let mut cmd = Command::new(std::env::current_exe()?);
                cmd.args(["fleet", program]);
                cmd
            }
        })
    }

    /// Starts `program` with `args` and waits (up to 30 s) until it logs that it serves.
    pub fn spawn(&self, program: &str, args: &[String]) -> anyhow::Result<Proc> {
        let mut child = self
            .command(program)?
            .args(args)
            .env("RUST_LOG", log_filter(program))
            .env("LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let stderr = child.stderr.take().context("piped stderr")?;
        let (tx, rx) = mpsc::channel();
        let ready = ready_line(program);
        // Reads the log until the process ends: first to see it ready, then so it never blocks
        // on a full pipe. Warnings and errors are passed on.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut tail: Vec<String> = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(ready) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                } else if tx.is_some() {
                    tail.push(line);
                } else if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("  | {line}");
                }
            }
            if let Some(tx) = tx {
                let _ = tx.send(Err(tail.join("\n")));
            }
        });
        let mut proc = Proc { child };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(proc),
            Ok(Err(log)) => bail!("{program} exited before serving:\n{log}"),
            Err(_) => {
                proc.kill();
                bail!("{program} did not start within 30 s")
            }
        }
    }
}

/// A running paywatch process, killed when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set so far, kB (`VmHWM`).
    pub fn peak_rss_kb(&self) -> u64 {
        peak_rss_kb_of(self.pid())
    }

    /// Kills it (SIGKILL: the benchmark's Redis is thrown away afterwards).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Peak resident set of process `pid`, kB (`VmHWM` from /proc), 0 when unknown.
pub fn peak_rss_kb_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) process `pid` has used so far, seconds.
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the state field.
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

/// The whole machine's CPU time so far, all cores together, seconds: (busy, total), from the
/// first line of `/proc/stat` (busy is everything but idle and iowait).
pub fn machine_cpu_seconds() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0.0, 0.0);
    };
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    let hz = clock_ticks_per_second();
    ((total - idle) / hz, total / hz)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// `paywatch-bench fleet PROGRAM ARGS`: what `PROGRAM ARGS` runs, on the runtime it builds.
pub fn run(program: &str, args: Vec<String>) -> anyhow::Result<()> {
    match program {
        "paywatch-worker" => run_worker(args),
        "paywatch-producer" => tokio::runtime::Runtime::new()?.block_on(run_producer(args)),
        other => bail!("unknown fleet program {other:?}"),
    }
}

/// `paywatch-bench fleet paywatch-worker ARGS`: what `paywatch-worker ARGS` runs, on the
/// runtime it would build (`--threads`).
fn run_worker(args: Vec<String>) -> anyhow::Result<()> {
    use paywatch_worker::{app::App, config::WorkerConfig, telemetry};
    let config =
        WorkerConfig::try_parse_from(std::iter::once("paywatch-worker".to_string()).chain(args))?;
    config.runtime()?.block_on(async {
        telemetry::init(&config)?;
        let app = App::build(config).await?;
        app.run_until(paywatch_core::shutdown::signal()).await
    })
}

/// `paywatch-bench fleet paywatch-producer serve ARGS`: what `paywatch-producer serve ARGS` runs
/// (the parts the benchmarks use: the API and the provider webhooks, no metrics listener).
async fn run_producer(args: Vec<String>) -> anyhow::Result<()> {
    use paywatch_producer::Producer;
    use paywatch_producer::config::{Cli, Command};
    let cli = Cli::try_parse_from(std::iter::once("paywatch-producer".to_string()).chain(args))?;
    paywatch_core::telemetry::init_logs()?;
    let Command::Serve(mut args) = cli.command else {
        bail!("the benchmarks run only `paywatch-producer serve`");
    };
    let api = args.api()?;
    let producer =
        Producer::connect_sharded(&cli.redis.redis_url, &cli.redis.prefix, cli.redis.shards)
            .await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let router = api.router(producer);
    paywatch_producer::serve(listener, router, paywatch_core::shutdown::signal()).await?;
    Ok(())
}
