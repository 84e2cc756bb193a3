//! `paywatch-bench all`: every benchmark in one command, written up as BENCHMARKS.md (the machine,
//! the command, tables with paywatch and its peer side by side, medians of several runs with
//! min–max) plus PNG plots.
//!
//! Each benchmark contributes one [`Section`]; [`run`] collects them in [`Part`] order and
//! [`write_report`] lays them out after the machine and a summary of the targets.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use clap::{Args, FromArgMatches};

use crate::e2e::{E2eOpts, SideResult};
use crate::fleet::Fleet;
use crate::idle::IdleOpts;
use crate::plot::{self, Bar};
use crate::scale::ScaleOpts;
use crate::webhook::WebhookOpts;

/// The benchmarks `all` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Queue only: no-op jobs/s, lateness, bytes per job, RSS (`paywatch-bench compare`).
    Queue,
    /// Check-payment throughput end to end against BullMQ.
    E2e,
    /// The webhook fast path's latency.
    Webhook,
    /// Redis commands per second of idle workers.
    Idle,
    /// A million pending orders and a spike of checks.
    Scale,
    /// The end-to-end run on a three-master Cluster against one Redis.
    Cluster,
}

/// `paywatch-bench all` options.
#[derive(Debug, Clone, Args)]
pub struct SuiteOpts {
    /// The benchmarks to run, comma-separated (all by default).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Part::Queue, Part::E2e, Part::Webhook, Part::Idle, Part::Scale, Part::Cluster])]
    pub only: Vec<Part>,
    /// Tiny numbers everywhere: proves every benchmark still runs, in seconds (CI).
    #[arg(long)]
    pub smoke: bool,
    /// Runs of each repeated measurement (medians with min–max are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// End-to-end orders.
    #[arg(long, default_value_t = 20_000)]
    pub e2e_orders: usize,
    /// Webhooks measured per run.
    #[arg(long, default_value_t = 200)]
    pub webhooks: usize,
    /// Seconds each idle worker is watched.
    #[arg(long, default_value_t = 30)]
    pub idle_seconds: u64,
    /// Pending orders of the scale run.
    #[arg(long, default_value_t = 1_000_000)]
    pub scale_orders: usize,
    /// Checks due in the same second in the scale run.
    #[arg(long, default_value_t = 100_000)]
    pub scale_spike: usize,
    /// Scale factor on the queue benchmark's job counts.
    #[arg(long, default_value_t = 1.0)]
    pub queue_scale: f64,
    /// Where the report goes.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Where the plots go (linked from the report relative to it).
    #[arg(long, default_value = "docs/bench")]
    pub plots: PathBuf,
    /// Directory of bench.mjs.
    #[arg(long, default_value = "bench/bullmq")]
    pub bullmq_dir: PathBuf,
    /// TrueType font for the plots' text.
    #[arg(long, default_value = plot::DEFAULT_FONT)]
    pub font: PathBuf,
    /// The command line to show in the report (default: this process's own).
    #[arg(long)]
    pub command: Option<String>,
    /// The load average when the run started (filled in by [`run`]).
    #[arg(skip)]
    pub load_at_start: Option<String>,
}

/// One benchmark's part of the report.
#[derive(Debug, Clone)]
pub struct Section {
    /// Heading.
    pub title: String,
    /// The command that runs it alone.
    pub command: String,
    /// Markdown: what it measures, its table, its plots.
    pub body: String,
    /// Summary rows: (what, target, result, met?).
    pub summary: Vec<(String, String, String, Option<bool>)>,
}

/// Median, min and max.
pub(crate) fn spread(xs: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn fmt_spread(xs: &[f64], digits: usize) -> String {
    let (m, lo, hi) = spread(xs);
    if xs.len() > 1 {
        format!("**{m:.digits$}** ({lo:.digits$}–{hi:.digits$})")
    } else {
        format!("**{m:.digits$}**")
    }
}

/// Nearest-rank percentile of ascending samples.
pub(crate) fn pct<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Defaults of a clap `Args` struct, as if no flag were given.
fn defaults<T: Args + FromArgMatches>() -> anyhow::Result<T> {
    let matches =
        T::augment_args(clap::Command::new("defaults")).try_get_matches_from(["defaults"])?;
    Ok(T::from_arg_matches(&matches)?)
}

/// Where a plot file is, as linked from the report.
struct Plots {
    dir: PathBuf,
    link_base: String,
}

impl Plots {
    fn new(out: &Path, dir: &Path) -> Self {
        let out_dir = out.parent().filter(|p| !p.as_os_str().is_empty());
        let link_base = match out_dir.and_then(|o| dir.strip_prefix(o).ok()) {
            Some(rel) => rel.display().to_string(),
            None if out_dir.is_none() => dir.display().to_string(),
            None => std::path::absolute(dir)
                .unwrap_or_else(|_| dir.to_path_buf())
                .display()
                .to_string(),
        };
        Self {
            dir: dir.to_path_buf(),
            link_base,
        }
    }

    fn path(&self, name: &str) -> anyhow::Result<PathBuf> {
        plot::into(&self.dir, name)
    }

    fn link(&self, name: &str, alt: &str) -> String {
        format!("![{alt}]({}/{name})\n", self.link_base)
    }
}

/// Runs the selected benchmarks and writes the report; returns its text.
pub fn run(o: &SuiteOpts, fleet: &Fleet, redis: &str) -> anyhow::Result<String> {
    let o = &SuiteOpts {
        load_at_start: load_average(),
        ..o.clone()
    };
    plot::use_font(&o.font)?;
    let plots = Plots::new(&o.out, &o.plots);
    let runs = if o.smoke { 1 } else { o.runs.max(1) };
    let mut sections = Vec::new();
    for part in &o.only {
        eprintln!("== {part:?}");
        let section = match part {
            // Synchronous: it runs every measurement in a process of its own.
            Part::Queue => queue_section(o, runs, redis)?,
            _ => {
                let runtime = match part {
                    Part::E2e | Part::Cluster => crate::e2e::harness_runtime()?,
                    _ => tokio::runtime::Runtime::new()?,
                };
                runtime.block_on(async_section(*part, o, runs, fleet, &plots))?
            }
        };
        sections.push(section);
    }
    if o.only.len() > 1 {
        sections.push(network_section());
        sections.push(economy_section());
    }
    let report = write_report(o, &sections)?;
    std::fs::write(&o.out, &report).with_context(|| format!("writing {}", o.out.display()))?;
    Ok(report)
}

/// The network sweep runs right after the suite in the same `just bench` (scripts/bench.sh) and
/// writes its own tables and plot next to the others; the report links them.
fn network_section() -> Section {
    Section {
        title: "Through a network: round trips per order, e2e at 0, 0.5 and 1 ms RTT".into(),
        command: "just bench network".into(),
        body: "The end-to-end run above with every process of both sides reaching Redis through \
               a latency proxy in `paywatch-bench` (0, 0.5 and 1 ms round trip), and the Redis \
               round trips per order counted for both sides against the floor a design could \
               reach. `just bench` writes its tables to \
               [docs/bench/network.md](docs/bench/network.md) right after this report, with the \
               plot.\n\n\
               ![orders/s against RTT](docs/bench/network.png)\n"
            .into(),
        summary: Vec::new(),
    }
}

/// The polling economy runs right after the suite in the same `just bench` (scripts/bench.sh) and
/// writes its own section and plot next to the others; the report links them.
fn economy_section() -> Section {
    Section {
        title: "The polling economy: provider calls against detection lag".into(),
        command: "just bench economy".into(),
        body: "Every polling policy (naive 5 s, the seeds' schedules, Hyperswitch-style, \
               paywatch's defaults with and without provider webhooks, and paywatch's adaptive \
               schedules learned from history) on one seeded workload against the sandbox: calls \
               per order and detection lag mean / p50 / p90 / p99, the webhook path and \
               FoxReload's shared budget on the real fleet. `just bench` writes its table to \
               [docs/bench/economy.md](docs/bench/economy.md) right after this report, with the \
               frontier plot; the method is in [docs/polling.md](docs/polling.md).\n\n\
               ![calls per order against lag](docs/bench/economy-frontier.png)\n"
            .into(),
        summary: Vec::new(),
    }
}

async fn async_section(
    part: Part,
    o: &SuiteOpts,
    runs: usize,
    fleet: &Fleet,
    plots: &Plots,
) -> anyhow::Result<Section> {
    match part {
        Part::Queue => unreachable!("the queue benchmark runs synchronously"),
        Part::E2e => e2e_section(o, runs, fleet, plots).await,
        Part::Webhook => webhook_section(o, runs, fleet, plots).await,
        Part::Idle => idle_section(o, fleet, plots).await,
        Part::Scale => scale_section(o, fleet, plots).await,
        Part::Cluster => cluster_section(o, runs, fleet, plots).await,
    }
}

fn e2e_opts(o: &SuiteOpts) -> anyhow::Result<E2eOpts> {
    let mut e: E2eOpts = defaults()?;
    e.orders = o.e2e_orders;
    if o.smoke {
        e = E2eOpts {
            orders: 60,
            pending: 1,
            delay_ms: 20,
            workers: 1,
            concurrency: 8,
            timeout_s: 60,
            ..e
        };
    }
    Ok(e)
}

fn queue_section(o: &SuiteOpts, runs: usize, redis: &str) -> anyhow::Result<Section> {
    let scale = if o.smoke { 0.0 } else { o.queue_scale };
    let table = crate::report::compare_table(redis, runs, &o.bullmq_dir, scale)?;
    let bytes = table
        .example_bytes
        .map(|(pw, bq)| {
            let met = pw <= 400.0 && pw * 2.0 <= bq;
            vec![(
                "Redis bytes per pending order (README example, all keys)".to_string(),
                "≤ 400 B and ≤ ½ of BullMQ's".to_string(),
                format!("{pw:.0} B vs BullMQ {bq:.0} B ({:.2}×)", pw / bq),
                Some(met),
            )]
        })
        .unwrap_or_default();
    let mut body = String::from(
        "paywatch-queue (our apalis backend) and BullMQ 6 with no-op jobs, in separate \
         processes on the same Redis (`REDIS_URL`). The last row is the end-to-end memory \
         figure: a pending order submitted through `paywatch_submit` (record, schedule, payment \
         index: every key it costs) against a BullMQ delayed job holding the same JSON.\n\n",
    );
    body.push_str(&table.markdown);
    Ok(Section {
        title: "Queue: no-op jobs, lateness, memory".into(),
        command: "just bench queue".into(),
        body,
        summary: bytes,
    })
}

fn side_table(rows: &[(&str, &[SideResult])], peer: Option<usize>) -> String {
    let mut t = String::from(
        "| | orders/s | first enqueue → last final, s | provider calls | worker CPU, s | Redis CPU per order, µs | worker peak RSS, MB |\n|---|---|---|---|---|---|---|\n",
    );
    for (name, runs) in rows {
        let col = |f: fn(&SideResult) -> f64| runs.iter().map(f).collect::<Vec<_>>();
        let _ = writeln!(
            t,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            fmt_spread(&col(|r| r.orders_per_sec), 0),
            fmt_spread(&col(|r| r.seconds), 2),
            fmt_spread(&col(|r| r.provider_calls as f64), 0),
            fmt_spread(&col(|r| r.worker_cpu_s), 1),
            fmt_spread(&col(SideResult::redis_us_per_order), 0),
            fmt_spread(&col(|r| r.worker_peak_rss_kb as f64 / 1024.0), 1),
        );
    }
    if let (Some(p), true) = (peer, rows.len() > 1) {
        let a = median_rate(rows[0].1);
        let b = median_rate(rows[p].1);
        let _ = writeln!(t, "| **ratio** | **{:.2}×** | | | | | |", a / b);
    }
    t
}

/// Where each side's CPU went, per order (medians): on a machine both sides saturate, the ratio
/// of throughputs cannot exceed the ratio of CPU spent per order.
fn cpu_paragraph(paywatch: &[SideResult], bullmq: &[SideResult], orders: usize) -> String {
    let med = |runs: &[SideResult], f: fn(&SideResult) -> f64| {
        spread(&runs.iter().map(f).collect::<Vec<_>>()).0
    };
    let per_order = |s: f64| s * 1e6 / orders.max(1) as f64;
    let (pw_worker, pw_redis) = (
        per_order(med(paywatch, |r| r.worker_cpu_s)),
        per_order(med(paywatch, |r| r.redis_cpu_s)),
    );
    let (bq_worker, bq_redis) = (
        per_order(med(bullmq, |r| r.worker_cpu_s)),
        per_order(med(bullmq, |r| r.redis_cpu_s)),
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let busy = (med(paywatch, |r| r.worker_cpu_s) + med(paywatch, |r| r.redis_cpu_s))
        / med(paywatch, |r| r.seconds).max(1e-9);
    let machine = |runs: &[SideResult]| 100.0 * med(runs, |r| r.machine_busy);
    format!(
        "CPU per order (medians): paywatch's workers {pw_worker:.0} µs and Redis {pw_redis:.0} µs, \
         {:.0} µs in all; BullMQ's workers {bq_worker:.0} µs and Redis {bq_redis:.0} µs, {:.0} µs \
         in all: **{:.2}×** less for paywatch. The sandbox answers the same calls for both. \
         During paywatch's runs its workers and Redis alone kept {busy:.1} of the machine's \
         {cores} cores busy, and the sandbox and the driver share the rest: the machine was \
         {:.0} % busy during paywatch's runs and {:.0} % during BullMQ's (`/proc/stat`, first \
         enqueue to last final). With the cores that close to full, the throughput ratio cannot \
         go much beyond the CPU ratio, whatever either side's design.\n\n",
        pw_worker + pw_redis,
        bq_worker + bq_redis,
        (bq_worker + bq_redis) / (pw_worker + pw_redis).max(1e-9),
        machine(paywatch),
        machine(bullmq),
    )
}

/// What limits a Cluster's gain on the benchmark machine (shown under its table), with the
/// one-Redis runs' own figures.
fn cluster_explanation(
    single: &[SideResult],
    orders: usize,
    submit_ratio: f64,
    (submit_cores, single_cores, driver_cores): (f64, f64, f64),
) -> String {
    let med = |f: fn(&SideResult) -> f64| spread(&single.iter().map(f).collect::<Vec<_>>()).0;
    let redis_us = med(|r| r.redis_cpu_s) * 1e6 / orders.max(1) as f64;
    let rate = med(|r| r.orders_per_sec);
    let busy = 100.0 * med(|r| r.machine_busy);
    format!(
        "A Cluster spreads Redis's single-threaded work over three processes, which pays when \
         Redis's one core is the bottleneck and there are cores to spare. On a 2-core machine \
         there are none: the three masters, the worker processes, the sandbox and the driver all \
         share the same two cores, and the workers (HTTP to the sandbox, JSON, the check logic) \
         use most of them already; on top of that every Cluster client keeps one connection per \
         master, so each batch of fetches and settles becomes three smaller ones. One Redis \
         spends {redis_us:.0} µs of CPU per order here at {rate:.0} orders/s, {:.2} of a core, \
         while the whole machine is {busy:.0} % busy: even a perfect split could only free part \
         of a core that the workers and the sandbox already need, so expect the two topologies \
         within noise of each other here. Where Redis alone is what runs out, as in the \
         submit-only run above (one Redis at {single_cores:.2} of a core, the driver at \
         {driver_cores:.2}), the three masters reach {submit_ratio:.2}× its rate on {submit_cores:.2} cores between them: \
         the Cluster scales with the cores it gets, and this machine has two. Its use is capacity \
         (command rate and memory beyond one server) on machines with a core per master.\n",
        redis_us * rate / 1e6,
    )
}

/// The cores a deployment needs per 10,000 orders per second, from the one-Redis end-to-end
/// runs (workers, per order) and the submit-only runs (Redis, per order).
fn sizing(single: &[SideResult], orders: usize, redis_submit_us: f64) -> String {
    let med = |f: fn(&SideResult) -> f64| spread(&single.iter().map(f).collect::<Vec<_>>()).0;
    let worker_us = med(|r| r.worker_cpu_s) * 1e6 / orders.max(1) as f64;
    let redis_us = med(|r| r.redis_cpu_s) * 1e6 / orders.max(1) as f64;
    let per_10k = |us: f64| us * 10_000.0 / 1e6;
    format!(
        "**Sizing.** Per order, end to end on one Redis (the workload above: four checks, three \
         notifications), the workers spent {worker_us:.0} µs of CPU and Redis {redis_us:.0} µs \
         (of which the submit is {redis_submit_us:.1} µs). So 10,000 orders per second need about \
         **{:.1} cores of workers** (spread over as many processes and machines as you like) and \
         **{:.1} cores of Redis**: one Redis core runs about {:.0} orders per second end to end, \
         and past that a Cluster's masters share it, each taking its shards' part, since the \
         Redis CPU per order stays flat across masters (table above). The provider's latency \
         does not change these figures; it changes how many checks are in flight \
         (`PAYWATCH_CONCURRENCY`), not the CPU per check.\n\n",
        per_10k(worker_us),
        per_10k(redis_us),
        1e6 / redis_us.max(1e-9),
    )
}

/// The median orders per second of a side's runs.
fn median_rate(runs: &[SideResult]) -> f64 {
    spread(&runs.iter().map(|r| r.orders_per_sec).collect::<Vec<_>>()).0
}

fn bars_of(rows: &[(&str, &[SideResult])]) -> Vec<Bar> {
    rows.iter()
        .map(|(name, runs)| {
            let (median, min, max) =
                spread(&runs.iter().map(|r| r.orders_per_sec).collect::<Vec<_>>());
            Bar {
                label: name.to_string(),
                median,
                min,
                max,
            }
        })
        .collect()
}

async fn e2e_section(
    o: &SuiteOpts,
    runs: usize,
    fleet: &Fleet,
    plots: &Plots,
) -> anyhow::Result<Section> {
    let e = e2e_opts(o)?;
    let r = crate::e2e::compare(fleet, &o.bullmq_dir, &e, runs, None).await?;
    let rows = [
        ("paywatch", r.paywatch.as_slice()),
        ("BullMQ 6", r.bullmq.as_slice()),
    ];
    plot::bars(
        &plots.path("e2e.png")?,
        &format!("Check-payment throughput, {} orders end to end", e.orders),
        "orders per second",
        &bars_of(&rows),
    )?;
    let pw = median_rate(&r.paywatch);
    let bq = median_rate(&r.bullmq);
    let mut body = format!(
        "{} orders (the README's example order, three notify targets), each a Cashless bill in the \
         sandbox that answers `NOT_PAID` {} times and then `FULLY_PAID` (so {} provider calls per \
         order on both sides), {} ms between two checks of an order (no jitter), {} worker processes \
         × concurrency {} on each side, HTTP keep-alive on both sides, the same private \
         `redis-server` and the same sandbox. paywatch: `paywatch-worker` processes with \
         `--threads {}` (Node runs a process's JavaScript on one thread), orders in through `FCALL paywatch_submit` pipelined 1000 at a time; each final order gets its final \
         record and three notification jobs. BullMQ: a `Worker` per Node process GETting the same \
         URL, `moveToDelayed` while pending, and on the final answer a final record plus three \
         notification jobs; orders in with `addBulk` 1000 at a time. The bench process serves the \
         sandbox on one runtime thread for both sides. Clock: first enqueue → last final answer. \
         Median of {runs} runs (min–max).\n\n",
        e.orders,
        e.pending,
        e.pending + 1,
        e.delay_ms,
        e.workers,
        e.concurrency,
        e.worker_threads,
    );
    body.push_str(&side_table(&rows, Some(1)));
    body.push('\n');
    body.push_str(&cpu_paragraph(&r.paywatch, &r.bullmq, e.orders));
    body.push_str(&plots.link("e2e.png", "end-to-end throughput"));
    Ok(Section {
        title: "End to end: check-payment throughput against BullMQ".into(),
        command: "just bench e2e".into(),
        body,
        summary: vec![(
            format!(
                "check-payment throughput vs BullMQ ({} orders end to end)",
                e.orders
            ),
            "≥ 3×".into(),
            format!("{:.2}× ({pw:.0} vs {bq:.0} orders/s)", pw / bq),
            Some(pw >= 3.0 * bq),
        )],
    })
}

async fn webhook_section(
    o: &SuiteOpts,
    runs: usize,
    fleet: &Fleet,
    plots: &Plots,
) -> anyhow::Result<Section> {
    let w = WebhookOpts {
        webhooks: if o.smoke { 5 } else { o.webhooks },
    };
    let mut results = Vec::new();
    for run in 1..=runs {
        let r = crate::webhook::run(fleet, &w).await?;
        eprintln!(
            "webhook {run}/{runs}: p50 {:.1} ms, p99 {:.1} ms",
            pct(&r.notified_ms, 50.0).unwrap_or(f64::NAN),
            pct(&r.notified_ms, 99.0).unwrap_or(f64::NAN)
        );
        results.push(r);
    }
    let stat = |f: &dyn Fn(&crate::webhook::WebhookResult) -> f64| {
        results.iter().map(f).collect::<Vec<_>>()
    };
    let p = |s: &[f64], q: f64| pct(s, q).unwrap_or(f64::NAN);
    let n50 = stat(&|r| p(&r.notified_ms, 50.0));
    let n99 = stat(&|r| p(&r.notified_ms, 99.0));
    let nmax = stat(&|r| p(&r.notified_ms, 100.0));
    let a50 = stat(&|r| p(&r.acked_ms, 50.0));
    let a99 = stat(&|r| p(&r.acked_ms, 99.0));
    let mut pooled: Vec<f64> = results.iter().flat_map(|r| r.notified_ms.clone()).collect();
    pooled.sort_by(f64::total_cmp);
    let mut acks: Vec<f64> = results.iter().flat_map(|r| r.acked_ms.clone()).collect();
    acks.sort_by(f64::total_cmp);
    plot::cdf(
        &plots.path("webhook.png")?,
        "Webhook fast path on loopback",
        "ms after the webhook was sent",
        &[
            ("producer answered 200".to_string(), acks),
            ("notification jobs in Redis".to_string(), pooled),
        ],
    )?;
    let (m99, _, _) = spread(&n99);
    let mut body = format!(
        "A Cashless webhook POSTed to `paywatch-producer` (one process) moves the order's check to \
         now; one `paywatch-worker` process runs it (the verifying call to the sandbox's API), \
         records the final status and enqueues the three notifications. Measured from sending \
         the webhook to the order's last notification job existing in Redis (polled every 1 ms, \
         so up to ~1 ms is polling), {} webhooks one after another per run, median of {runs} runs \
         (min–max). Each order's previous check was more than the producer's 2 s minimum gap \
         earlier, as for a payment made a while after the order.\n\n\
         | ms | p50 | p99 | max |\n|---|---|---|---|\n\
         | webhook → notification jobs in Redis | {} | {} | {} |\n\
         | webhook → producer's 200 | {} | {} | |\n\n",
        w.webhooks,
        fmt_spread(&n50, 1),
        fmt_spread(&n99, 1),
        fmt_spread(&nmax, 1),
        fmt_spread(&a50, 1),
        fmt_spread(&a99, 1),
    );
    body.push_str(
        "BullMQ has no counterpart to compare with here (it has no webhook intake); the target is \
         absolute.\n\n",
    );
    body.push_str(&plots.link("webhook.png", "webhook latency CDF"));
    Ok(Section {
        title: "Webhook fast path".into(),
        command: "just bench webhook".into(),
        body,
        summary: vec![(
            "webhook → verified final → notification enqueued, p99 (loopback)".into(),
            "≤ 20 ms".into(),
            format!("{m99:.1} ms"),
            Some(m99 <= 20.0),
        )],
    })
}

async fn idle_section(o: &SuiteOpts, fleet: &Fleet, plots: &Plots) -> anyhow::Result<Section> {
    let i = if o.smoke {
        IdleOpts {
            seconds: 2,
            warmup: 1,
        }
    } else {
        IdleOpts {
            seconds: o.idle_seconds,
            ..defaults()?
        }
    };
    let results = crate::idle::run(fleet, &o.bullmq_dir, &i).await?;
    let mut body = format!(
        "One worker process with nothing to do on a private `redis-server`; `CONFIG RESETSTAT` \
         after {} s, `INFO commandstats` {} s later (the measurement's own `INFO`/`CONFIG` left \
         out). *Sent* counts the commands the worker sends (a script is one, as in the queue's \
         own idle test, tests/it/crash.rs); *all* adds the commands those scripts run inside \
         Redis, which `INFO commandstats` counts too. Every command is listed.\n\n\
         | idle worker | sent/s | all/s | commands over {} s |\n|---|---|---|---|\n",
        i.warmup, i.seconds, i.seconds
    );
    for r in &results {
        let calls: Vec<String> = r.calls.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let _ = writeln!(
            body,
            "| {} | **{:.2}** | {:.2} | {} |",
            r.worker,
            r.per_sec,
            r.all_per_sec,
            calls.join(", ")
        );
    }
    body.push('\n');
    plot::bars(
        &plots.path("idle.png")?,
        "Commands per second one idle worker sends to Redis",
        "commands sent per second",
        &results
            .iter()
            .map(|r| Bar {
                label: r
                    .worker
                    .replace("paywatch-worker (check-payment)", "paywatch checker")
                    .replace(
                        "paywatch-worker (notify-email, notify-telegram, notify-webhook)",
                        "paywatch notifier",
                    )
                    .replace("BullMQ 6 Worker (defaults)", "BullMQ 6 Worker"),
                median: r.per_sec,
                min: r.per_sec,
                max: r.per_sec,
            })
            .collect::<Vec<_>>(),
    )?;
    body.push_str(&plots.link("idle.png", "idle commands per second"));
    let checker = results.first().map_or(f64::NAN, |r| r.per_sec);
    let all = results.first().map_or(f64::NAN, |r| r.all_per_sec);
    body.push_str(IDLE_NOTE);
    Ok(Section {
        title: "Idle cost".into(),
        command: "just bench idle".into(),
        body,
        summary: vec![(
            "Redis commands/s sent by one idle check-payment worker".into(),
            "≤ 2/s".into(),
            format!("{checker:.2}/s ({all:.1}/s counting the commands inside its scripts)"),
            Some(checker <= 2.0),
        )],
    })
}

async fn scale_section(o: &SuiteOpts, fleet: &Fleet, plots: &Plots) -> anyhow::Result<Section> {
    let mut s: ScaleOpts = defaults()?;
    s.orders = o.scale_orders;
    s.spike = o.scale_spike;
    if o.smoke {
        s.orders = 2_000;
        s.spike = 300;
        s.workers = 1;
        s.concurrency = 16;
    }
    let r = crate::scale::run(fleet, &s).await?;
    let l = |p: f64| pct(&r.lateness_ms, p).map_or("–".to_string(), |v| format!("{v}"));
    let over = r.slowlog.iter().filter(|e| e.micros > 10_000).count();
    let mut body = format!(
        "A private `redis-server` with `slowlog-log-slower-than 10000`. {} orders (the README's \
         example order) submitted through `FCALL paywatch_submit`, {} per pipeline, {} pipelines \
         in flight, no worker running. Then {} of them are made due within one second a few \
         seconds ahead (the rest an hour ahead), their bills pay on the first check, and {} \
         `paywatch-worker` processes × concurrency {} start. Lateness = the provider's answer in \
         hand − the check's due time. {}\n\n\
         | metric | value |\n|---|---|\n\
         | submit rate through the FCALL door | **{:.0} orders/s** |\n\
         | Redis bytes per pending order (`used_memory` delta) | **{:.0} B** |\n\
         | Redis `used_memory` with all of them pending | {:.0} MB |\n\
         | spike checks processed | **{} of {}** |\n\
         | spike: first due → last final | {:.1} s ({:.0} checks/s) |\n\
         | lateness p50 / p99 / max | {} / {} / {} ms |\n\
         | commands over 10 ms in SLOWLOG | **{over}** |\n\n",
        r.orders,
        s.pipeline,
        s.parallel,
        r.spike,
        s.workers,
        s.concurrency,
        own_core_sentence(r.redis_own_core.as_deref(), r.redis_prioritised),
        r.submit_per_sec,
        r.bytes_per_order,
        r.used_memory_mb,
        r.spike_done,
        r.spike,
        r.spike_seconds,
        r.spike_done as f64 / r.spike_seconds.max(0.001),
        l(50.0),
        l(99.0),
        l(100.0),
    );
    if r.slowlog.is_empty() {
        body.push_str("SLOWLOG was empty: no command took 10 ms or more.\n\n");
    } else {
        body.push_str(
            "SLOWLOG entries, each beside the mean of every call of the same command over the \
             run (`INFO commandstats`; `EVALSHA`'s mean is over every script the queue runs):\n\n| µs | command | that command's mean, µs |\n\
             |---|---|---|\n",
        );
        for e in &r.slowlog {
            let mean = e
                .command_mean_micros
                .map_or("unknown".into(), |m| format!("{m:.1}"));
            let _ = writeln!(body, "| {} | `{}` | {mean} |", e.micros, e.command);
        }
        let _ = write!(
            body,
            "\nSLOWLOG times a command by the wall clock while Redis runs it, so a Redis process \
             the kernel preempts shows up there too: the kernel took the CPU from this Redis {} \
             times during the run (its involuntary context switches). An entry \
             hundreds of times its command's mean, for a command whose work does not vary (one \
             submit, one enqueue), is such a pause rather than a slow script.\n",
            r.redis_preempted
        );
        body.push('\n');
    }
    body.push_str(
        "A spike cannot finish within its own second on this machine: lateness here is the time \
         to work through the backlog at the fleet's throughput (the checks run in due order, so \
         lateness grows linearly through the spike); no check ran early.\n\n",
    );
    let lat: Vec<f64> = r.lateness_ms.iter().map(|v| *v as f64).collect();
    plot::cdf(
        &plots.path("scale-lateness.png")?,
        &format!("Lateness of {} checks due in one second", r.spike),
        "ms after the due time",
        &[("spike checks".to_string(), lat)],
    )?;
    body.push_str(&plots.link("scale-lateness.png", "spike lateness CDF"));
    Ok(Section {
        title: format!(
            "Scale: {} pending orders, {} checks due in one second",
            r.orders, r.spike
        ),
        command: "just bench scale".into(),
        body,
        summary: vec![
            (
                format!(
                    "{} pending orders: spike of {} checks all processed",
                    r.orders, r.spike
                ),
                "all".into(),
                format!("{} of {}", r.spike_done, r.spike),
                Some(r.spike_done == r.spike),
            ),
            (
                "scripts over 10 ms in SLOWLOG during submit and spike".into(),
                "none".into(),
                format!("{over}"),
                Some(over == 0),
            ),
        ],
    })
}

async fn cluster_section(
    o: &SuiteOpts,
    runs: usize,
    fleet: &Fleet,
    plots: &Plots,
) -> anyhow::Result<Section> {
    let e = e2e_opts(o)?;
    let r = crate::cluster::run(fleet, &e, runs).await?;
    let rows = [
        ("three-master Cluster", r.cluster.as_slice()),
        ("one Redis", r.single.as_slice()),
    ];
    plot::bars(
        &plots.path("cluster.png")?,
        "paywatch end to end: Redis Cluster vs one Redis",
        "orders per second",
        &bars_of(&rows),
    )?;
    let c = median_rate(&r.cluster);
    let s = median_rate(&r.single);
    let mut body = format!(
        "paywatch's end-to-end run as above ({} orders, {} workers × {}), with `PAYWATCH_SHARDS={}` \
         on both topologies: three cluster-enabled `redis-server`s (two shards' hash tags on each \
         master) against one `redis-server`. Median of {runs} runs (min–max).\n\n",
        e.orders,
        e.workers,
        e.concurrency,
        crate::cluster::CLUSTER_SHARDS,
    );
    body.push_str(&side_table(&rows, Some(1)));
    body.push('\n');
    let submit = |runs: &[crate::cluster::SubmitRun], f: fn(&crate::cluster::SubmitRun) -> f64| {
        spread(&runs.iter().map(f).collect::<Vec<_>>())
    };
    let (sub_s, sub_s_min, sub_s_max) = submit(&r.submit_single, |s| s.orders_per_sec);
    let (sub_c, sub_c_min, sub_c_max) = submit(&r.submit_cluster, |s| s.orders_per_sec);
    let cores = |runs: &[crate::cluster::SubmitRun]| {
        (
            submit(runs, |s| s.redis_cores).0,
            submit(runs, |s| s.driver_cores).0,
        )
    };
    let ((redis_c, driver_c), (redis_s, driver_s)) =
        (cores(&r.submit_cluster), cores(&r.submit_single));
    // Redis CPU per order: what scales out. Flat from one master to three means the Cluster
    // adds no Redis work per order, so capacity grows with the masters' cores.
    let per_order = |runs: &[crate::cluster::SubmitRun]| {
        submit(runs, |s| s.redis_cores * 1e6 / s.orders_per_sec.max(1e-9)).0
    };
    let (us_c, us_s) = (per_order(&r.submit_cluster), per_order(&r.submit_single));
    let masters = crate::cluster::SLOTS.len() as f64;
    body.push_str(&format!(
        "Redis-bound, on the same servers: {} orders through `FCALL paywatch_submit` (pipelines of \
         1000, six in flight, no worker running), and the cores Redis and the driver (this \
         benchmark's process, which encodes the calls, routes them and reads the replies) used \
         meanwhile. Median of {runs} runs (min–max).\n\n\
         | | orders/s | Redis, cores | driver, cores | Redis CPU per order, all masters | per order per master |\n|---|---|---|---|---|---|\n\
         | three-master Cluster | **{sub_c:.0}** ({sub_c_min:.0}–{sub_c_max:.0}) | {redis_c:.2} | {driver_c:.2} | {us_c:.1} µs | {:.1} µs |\n\
         | one Redis | **{sub_s:.0}** ({sub_s_min:.0}–{sub_s_max:.0}) | {redis_s:.2} | {driver_s:.2} | {us_s:.1} µs | {us_s:.1} µs |\n\
         | **ratio** | **{:.2}×** | | | **{:.2}×** | |\n\n",
        r.submit_orders,
        us_c / masters,
        sub_c / sub_s.max(1e-9),
        us_c / us_s.max(1e-9),
    ));
    body.push_str(&sizing(&r.single, e.orders, us_s));
    body.push_str(&cluster_explanation(
        &r.single,
        e.orders,
        sub_c / sub_s.max(1e-9),
        (redis_c, redis_s, driver_s),
    ));
    body.push('\n');
    body.push_str(&plots.link("cluster.png", "cluster vs one Redis"));
    Ok(Section {
        title: "Redis Cluster against one Redis".into(),
        command: "just bench cluster".into(),
        body,
        summary: vec![
            (
                "Redis CPU per submitted order, 3 masters / one Redis".into(),
                "flat (≤ 1.25×): the Cluster adds no Redis work per order".into(),
                format!("{:.2}× ({us_c:.1} vs {us_s:.1} µs)", us_c / us_s.max(1e-9)),
                Some(us_c <= 1.25 * us_s),
            ),
            (
                "end-to-end throughput, 3-master Cluster / one Redis".into(),
                "(not a target on 2 cores: see the section)".into(),
                format!("{:.2}×", c / s),
                None,
            ),
            (
                "submit rate with nothing else running, 3-master Cluster / one Redis".into(),
                "(what the Cluster adds when Redis is the bottleneck)".into(),
                format!(
                    "{:.2}× ({sub_c:.0} vs {sub_s:.0} orders/s)",
                    sub_c / sub_s.max(1e-9)
                ),
                None,
            ),
        ],
    })
}

/// Why an idle worker sends what it sends (shown under the idle table).
const IDLE_NOTE: &str = "\nPer queue, an idle paywatch worker runs its fetch script once per \
    `idle_poll` (1 s): it is what reclaims the leases of a crashed worker in another process, \
    which nothing signals; everything else that makes work (an enqueue, a reschedule that \
    becomes the earliest, a webhook promotion) pushes a wake-up that one `BLPOP` per process \
    (5 s timeout) waits for. The depth gauges cost one script per queue every 10 s. A notifier \
    serves three queues, so it pays that three times. BullMQ's idle worker blocks in \
    `BZPOPMIN` (its `drainDelay`, 5 s) and runs its stalled-jobs check every 30 s.\n\n";

fn output(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn package_version(bullmq_dir: &Path, package: &str) -> String {
    std::fs::read_to_string(
        bullmq_dir
            .join("node_modules")
            .join(package)
            .join("package.json"),
    )
    .ok()
    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
    .and_then(|v| v["version"].as_str().map(str::to_owned))
    .unwrap_or_else(|| "unknown".into())
}

fn machine(o: &SuiteOpts) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or("unknown".into(), |kb| {
            format!("{:.0} GiB", kb / 1024.0 / 1024.0)
        });
    let redis = output(Command::new("redis-server").arg("--version"));
    let redis = redis
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or(&redis)
        .to_string();
    format!(
        "| | |\n|---|---|\n\
         | CPU | {model}, {cores} cores |\n\
         | memory | {mem_gb} |\n\
         | OS | {} |\n\
         | Redis | {redis} (every benchmark but the queue one starts private `redis-server`s) |\n\
         | Node.js | {} |\n\
         | BullMQ / ioredis | {} / {} |\n\
         | rustc | {} |\n\
         | paywatch | commit {}, {} build |\n\
         | load average (1, 5, 15 min) when the run started | {} |\n",
        output(Command::new("uname").args(["-sr"])),
        output(Command::new("node").arg("--version")),
        package_version(&o.bullmq_dir, "bullmq"),
        package_version(&o.bullmq_dir, "ioredis"),
        output(Command::new("rustc").arg("--version")),
        paywatch_commit(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        o.load_at_start.as_deref().unwrap_or("unknown"),
    )
}

/// The commit the measured code is, and whether the code differed from it (the report names
/// the commit, so a run of uncommitted code must say so).
fn paywatch_commit() -> String {
    let commit = output(Command::new("git").args(["rev-parse", "--short", "HEAD"]));
    let changed = output(Command::new("git").args([
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "Cargo.toml",
        "Cargo.lock",
        "crates",
        "bench/src",
        "bench/bullmq",
    ]));
    // `output` says "unknown" when git cannot tell (no repository): then say nothing more.
    if changed.is_empty() || changed == "unknown" {
        commit
    } else {
        format!("{commit} with uncommitted changes to the code")
    }
}

/// The first three fields of /proc/loadavg: how busy the machine was (other people's builds).
pub(crate) fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// The whole report.
pub fn write_report(o: &SuiteOpts, sections: &[Section]) -> anyhow::Result<String> {
    let command = o
        .command
        .clone()
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    let mut md = String::from("# Benchmarks\n\n");
    let _ = writeln!(
        md,
        "Written by `{command}` on {} (UTC){}. Every number below comes from that one run. \
         Each benchmark can be run alone with the command under its heading.\n",
        output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M"])),
        if o.smoke {
            ", as a smoke run with tiny numbers (not a measurement)"
        } else {
            ""
        },
    );
    md.push_str("## The machine\n\n");
    md.push_str(&machine(o));
    md.push_str(
        "\nRedis, the sandbox, the workers, the BullMQ processes and the driver all share these \
         cores during a run, and other work on the machine can slow any run: read the ratios \
         between paywatch and its peer (always measured in the same command, on the same Redis, \
         one after the other) rather than the absolute numbers.\n\n",
    );
    md.push_str(
        "## Summary against the targets\n\n| what | target | result | met |\n|---|---|---|---|\n",
    );
    for s in sections {
        for (what, target, result, met) in &s.summary {
            let mark = match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            let _ = writeln!(md, "| {what} | {target} | {result} | {mark} |");
        }
    }
    md.push('\n');
    for s in sections {
        let _ = write!(md, "## {}\n\n`{}`\n\n{}\n", s.title, s.command, s.body);
    }
    Ok(md)
}

/// How the scale run shared the machine's cores, for its report.
fn own_core_sentence(core: Option<&str>, prioritised: bool) -> String {
    let priority = if prioritised {
        " at the highest CPU priority (nice -20), so the machine's other services cannot hold \
         its core for a time slice,"
    } else {
        ""
    };
    match core {
        Some(core) => format!(
            "Redis runs on core {core} alone{priority} and everything else (workers, sandbox, \
             driver) on the other cores, as a production Redis has a core nobody else is busy \
             on: SLOWLOG times commands by the wall clock, and a Redis sharing its core with a \
             busy fleet reads every preemption as a slow command."
        ),
        None => "This machine has one core: Redis shares it with everything else, so SLOWLOG \
                 also counts the time the kernel gave the core to others."
            .into(),
    }
}
