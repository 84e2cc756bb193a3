//! `paywatch-bench network`: the end-to-end comparison ([`crate::e2e`]) through the latency
//! proxy ([`crate::proxy`]) at several round-trip times to Redis, both sides alike, with the
//! round trips per order the proxy counted; writes a Markdown section and a plot of orders/s
//! against RTT.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::e2e::{E2eOpts, E2eResult, NetResult, SideResult};
use crate::fleet::Fleet;
use crate::plot;
use crate::suite::{load_average, spread};

/// What `network` runs.
#[derive(Debug, Clone, clap::Args)]
pub struct NetworkOpts {
    /// The end-to-end run at each RTT (its --rtt-ms is set from --rtts).
    #[command(flatten)]
    pub e2e: E2eOpts,
    /// Round-trip times to Redis, ms, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 0.5, 1.0])]
    pub rtts: Vec<f64>,
    /// Runs of each side at each RTT.
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
    /// Directory of bench.mjs.
    #[arg(long, default_value = "bench/bullmq")]
    pub bullmq_dir: PathBuf,
    /// Where to write the Markdown section.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where to draw orders/s against RTT (PNG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// How the section links the plot (default: the --plot path as given).
    #[arg(long)]
    pub plot_link: Option<String>,
    /// TrueType font for the plot's text.
    #[arg(long, default_value = plot::DEFAULT_FONT)]
    pub font: PathBuf,
}

/// One RTT's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct AtRtt {
    /// The RTT the proxy added, ms.
    pub rtt_ms: f64,
    /// Both sides' runs.
    pub runs: E2eResult,
}

/// Every RTT's comparison, with the load average before and after.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkResult {
    /// One entry per RTT, in the order asked.
    pub rtts: Vec<AtRtt>,
    /// /proc/loadavg when the sweep started.
    pub load_at_start: Option<String>,
    /// /proc/loadavg when it ended.
    pub load_at_end: Option<String>,
}

/// Runs the sweep; writes the section and the plot when asked.
pub async fn run(fleet: &Fleet, o: &NetworkOpts) -> anyhow::Result<NetworkResult> {
    anyhow::ensure!(
        o.e2e.rtt_ms.is_none(),
        "network sets --rtt-ms itself: give the RTTs with --rtts"
    );
    let load_at_start = load_average();
    let mut rtts = Vec::new();
    for &rtt in &o.rtts {
        let e = E2eOpts {
            rtt_ms: Some(rtt),
            ..o.e2e.clone()
        };
        eprintln!("== RTT {rtt} ms");
        let runs = crate::e2e::compare(fleet, &o.bullmq_dir, &e, o.runs, None).await?;
        rtts.push(AtRtt { rtt_ms: rtt, runs });
    }
    let result = NetworkResult {
        rtts,
        load_at_start,
        load_at_end: load_average(),
    };
    if let Some(path) = &o.plot {
        plot::use_font(&o.font)?;
        draw(path, &result, o.e2e.orders)?;
    }
    if let Some(out) = &o.out {
        let link = o.plot.as_ref().map(|p| {
            o.plot_link
                .clone()
                .unwrap_or_else(|| p.display().to_string())
        });
        let text = section(o, &result, link.as_deref());
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(result)
}

/// The side's runs' median of `f`.
fn median(runs: &[SideResult], f: impl Fn(&SideResult) -> f64) -> f64 {
    spread(&runs.iter().map(f).collect::<Vec<_>>()).0
}

/// The side's runs' median of a proxy count.
fn net_median(runs: &[SideResult], f: impl Fn(&NetResult) -> f64) -> f64 {
    median(runs, |r| r.network.as_ref().map_or(f64::NAN, &f))
}

fn draw(path: &Path, r: &NetworkResult, orders: usize) -> anyhow::Result<()> {
    let series = |side: fn(&E2eResult) -> &[SideResult]| {
        r.rtts
            .iter()
            .map(|at| (at.rtt_ms, median(side(&at.runs), |s| s.orders_per_sec)))
            .collect::<Vec<_>>()
    };
    plot::lines(
        path,
        &format!("End to end through a network, {orders} orders"),
        "round-trip time to Redis, ms",
        "orders per second (median)",
        &[
            ("paywatch".into(), series(|r| &r.paywatch)),
            ("BullMQ 6".into(), series(|r| &r.bullmq)),
        ],
    )
}

/// The floor of round trips per order this workload allows: one round trip per check (it settles
/// one check and claims the next; the final one also writes the final record and the
/// notification jobs), shared by as many checks as a worker process has in flight (batching);
/// the submit's share, one pipeline per thousand orders, is left out. With concurrency 1 that is
/// one round trip per check.
fn floor(e: &E2eOpts) -> f64 {
    (e.pending + 1) as f64 / e.concurrency.max(1) as f64
}

/// `min–max` of a side's runs of `f`, as the report writes a spread.
fn fmt_range(runs: &[SideResult], f: impl Fn(&SideResult) -> f64, digits: usize) -> String {
    let (m, lo, hi) = spread(&runs.iter().map(f).collect::<Vec<_>>());
    if runs.len() > 1 {
        format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})")
    } else {
        format!("{m:.digits$}")
    }
}

fn section(o: &NetworkOpts, r: &NetworkResult, plot: Option<&str>) -> String {
    let e = &o.e2e;
    let floor = floor(e);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| RTT set, ms | PING through the proxy, ms | side | orders/s | × BullMQ | round trips per \
         order: submit | workers | total | × floor ({floor:.2}) |\n|---|---|---|---|---|---|---|---|---|"
    );
    for at in &r.rtts {
        let bq_rate = median(&at.runs.bullmq, |s| s.orders_per_sec);
        for (name, runs) in [
            ("paywatch", &at.runs.paywatch),
            ("BullMQ 6", &at.runs.bullmq),
        ] {
            let total = net_median(runs, NetResult::round_trips_per_order);
            let _ = writeln!(
                md,
                "| {} | {:.2} | {name} | {} | {:.2}× | {:.3} | {:.2} | {:.2} | {:.2}× |",
                at.rtt_ms,
                net_median(runs, |n| n.ping_ms),
                fmt_range(runs, |s| s.orders_per_sec, 0),
                median(runs, |s| s.orders_per_sec) / bq_rate,
                net_median(runs, |n| n.submit_round_trips_per_order),
                net_median(runs, |n| n.worker_round_trips_per_order),
                total,
                total / floor,
            );
        }
    }
    let _ = writeln!(
        md,
        "\n{} orders, {} pending answers then paid ({} checks per order), {} ms between checks, \
         {} worker processes × concurrency {} on each side, median of {} runs per side and RTT \
         (min–max). The floor: one round trip per check shared by the {} checks a process has \
         in flight, {} / {} = {floor:.2} per order. Load average {} at the start, {} at the end.",
        e.orders,
        e.pending,
        e.pending + 1,
        e.delay_ms,
        e.workers,
        e.concurrency,
        o.runs,
        e.concurrency,
        e.pending + 1,
        e.concurrency,
        r.load_at_start.as_deref().unwrap_or("unknown"),
        r.load_at_end.as_deref().unwrap_or("unknown"),
    );
    let _ = writeln!(
        md,
        "\nThe workers' round trips per order by the call each started with (median of the runs; \
         `EVALSHA <name>` is a paywatch queue script, `EVALSHA <hash>` another script, such as \
         BullMQ's; calls under 0.005 per order left out):\n\n| RTT set, ms | side | calls |\n|---|---|---|"
    );
    for at in &r.rtts {
        for (name, runs) in [
            ("paywatch", &at.runs.paywatch),
            ("BullMQ 6", &at.runs.bullmq),
        ] {
            let _ = writeln!(md, "| {} | {name} | {} |", at.rtt_ms, by_call(runs));
        }
    }
    if let Some(link) = plot {
        let _ = writeln!(md, "\n![orders/s against RTT]({link})");
    }
    md
}

/// The side's runs' median round trips per order of each call, largest first.
fn by_call(runs: &[SideResult]) -> String {
    let mut calls: Vec<&String> = runs
        .iter()
        .filter_map(|r| r.network.as_ref())
        .flat_map(|n| n.worker_calls_per_order.keys())
        .collect();
    calls.sort();
    calls.dedup();
    let mut medians: Vec<(&String, f64)> = calls
        .into_iter()
        .map(|call| {
            let m = net_median(runs, |n| {
                n.worker_calls_per_order.get(call).copied().unwrap_or(0.0)
            });
            (call, m)
        })
        .filter(|(_, m)| *m >= 0.005)
        .collect();
    medians.sort_by(|a, b| b.1.total_cmp(&a.1));
    medians
        .iter()
        .map(|(call, m)| format!("`{call}` {m:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}
