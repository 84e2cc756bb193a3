//! `just bench economy`: provider calls against detection lag, for fixed schedules from the
//! providers' advice, paywatch's defaults, paywatch's adaptive schedules and provider webhooks,
//! all on the same seeded workload (docs/polling.md explains the method and its limits).
//!
//! - [`workload`]: the orders and their scripted payment timelines.
//! - [`virtual_clock`]: the discrete-event driver (real HTTP checks on pinned sandbox clocks).
//! - [`fleet`]: the real-time parts (webhook path, FoxReload's shared budget) on the real fleet.
//! - [`plot`]: the frontier PNG.

mod fleet;
mod plot;
mod virtual_clock;
mod workload;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use paywatch_core::schedule::Budget;
use paywatch_core::{PollPolicies, PollPolicy, Provider, ProviderClient, ProvidersConfig};
use paywatch_sandbox::{Sandbox, SandboxConfig};
use paywatch_worker::schedules::{PollMode, ScheduleConfig, Schedules};

use self::virtual_clock::{RunResult, RunSpec, Steering};

/// `paywatch-bench economy` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct EconomyArgs {
    /// Orders in the workload (each policy runs all of them).
    #[arg(long, default_value_t = 1000)]
    pub orders: usize,
    /// Seed of the workload (the adaptive history is learned from seed + 1).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Orders simulated at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Orders whose webhook path is measured on the real fleet.
    #[arg(long, default_value_t = 200)]
    pub webhook_orders: usize,
    /// Old (never paying) FoxReload orders in the budgeted case.
    #[arg(long, default_value_t = 600)]
    pub budget_old: usize,
    /// Measured window of the budgeted case, unscaled seconds.
    #[arg(long, default_value_t = 1200)]
    pub budget_window: u64,
    /// Time scale of the budgeted case.
    #[arg(long, default_value_t = 0.05)]
    pub budget_time_scale: f64,
    /// The adaptive plans' longest interval between two checks, seconds
    /// (`PAYWATCH_POLL_MAX_INTERVAL`).
    #[arg(long, default_value_t = 3600)]
    pub max_interval: u64,
    /// A seconds-long run for CI: 24 orders, 10 webhook orders, a short budgeted case, no
    /// calibration of the adaptive rows.
    #[arg(long)]
    pub smoke: bool,
    /// Where to write the Markdown section.
    #[arg(long, default_value = "target/bench/economy.md")]
    pub out: PathBuf,
    /// Where to draw the frontier (PNG).
    #[arg(long, default_value = "target/bench/economy-frontier.png")]
    pub plot: PathBuf,
    /// TrueType font for the plot's text.
    #[arg(long, default_value = plot::DEFAULT_FONT)]
    pub font: PathBuf,
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    calls: f64,
    mean: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    missed: f64,
    /// p99 over paid orders of the webhook providers (webhook rows only).
    webhook_p99: Option<f64>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn row(name: &str, result: &RunResult, orders: &[workload::Order]) -> Row {
    let mut lags: Vec<f64> = result.orders.iter().filter_map(|o| o.lag_s).collect();
    lags.sort_by(f64::total_cmp);
    let calls: u64 = result.orders.iter().map(|o| u64::from(o.calls)).sum();
    let n = result.orders.len().max(1) as f64;
    let finals = orders
        .iter()
        .filter(|o| o.final_at.is_some())
        .count()
        .max(1) as f64;
    let mut hooked: Vec<f64> = result
        .orders
        .iter()
        .zip(orders)
        .filter(|(_, o)| o.webhook_at().is_some())
        .filter_map(|(r, _)| r.lag_s)
        .collect();
    hooked.sort_by(f64::total_cmp);
    Row {
        name: name.to_owned(),
        calls: calls as f64 / n,
        mean: lags.iter().sum::<f64>() / lags.len().max(1) as f64,
        p50: quantile(&lags, 0.5),
        p90: quantile(&lags, 0.9),
        p99: quantile(&lags, 0.99),
        missed: result.orders.iter().filter(|o| o.missed).count() as f64 / finals,
        webhook_p99: (!hooked.is_empty()).then(|| quantile(&hooked, 0.99)),
    }
}

fn same(policy: PollPolicy) -> PollPolicies {
    PollPolicies {
        time_scale: 1.0,
        cashless: policy.clone(),
        handcash: policy.clone(),
        miraclecash: policy.clone(),
        foxreload: policy,
        declared: Default::default(),
    }
}

fn fixed(
    first: u64,
    multiplier: f64,
    max: u64,
    fast_window: u64,
    grace: u64,
    deadline: u64,
) -> PollPolicies {
    same(PollPolicy {
        first_delay: Duration::from_secs(first),
        multiplier,
        max_delay: Duration::from_secs(max),
        jitter: 0.0,
        fast_window: Duration::from_secs(fast_window),
        grace_interval: Duration::from_secs(grace),
        deadline: Duration::from_secs(deadline),
        not_found_retries: 3,
    })
}

const DAY: u64 = 86_400;

/// Runs the whole benchmark and writes the Markdown section and the plot.
pub async fn run(redis: &str, mut args: EconomyArgs) -> anyhow::Result<String> {
    if args.smoke {
        args.orders = args.orders.min(24);
        args.webhook_orders = args.webhook_orders.min(10);
        args.budget_old = args.budget_old.min(30);
        args.budget_window = args.budget_window.min(60);
        args.budget_time_scale = args.budget_time_scale.min(0.02);
    }
    // The smoke proves every part still runs; calibrating adaptive rows is for the full run.
    let attempts = if args.smoke { 1 } else { 4 };
    let n = args.orders;
    eprintln!(
        "economy: measuring the webhook path on the real fleet ({} orders)",
        args.webhook_orders
    );
    let mut webhook_ms = fleet::webhook_lag(redis, args.webhook_orders, args.seed).await?;
    webhook_ms.sort_by(f64::total_cmp);

    let sandbox = Sandbox::start(
        SandboxConfig::default(),
        "127.0.0.1:0".parse::<SocketAddr>()?,
    )
    .await?;
    let base = url::Url::parse(&sandbox.base_url())?;
    let client = ProviderClient::new(&ProvidersConfig::sandbox(&base))?;
    let orders = workload::generate(n, args.seed);
    let training = workload::generate(n, args.seed.wrapping_add(1));
    let conn = paywatch_producer::connect_redis(redis)?;
    let prefix = format!(
        "pwbench-eco:{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let defaults = PollPolicies::default();
    let schedules = |budget: Budget| {
        Schedules::new(
            ScheduleConfig {
                mode: PollMode::Adaptive,
                budget,
                min_samples: (n as u64 / 8).clamp(1, 200),
                refresh: Duration::from_secs(60),
                max_interval: Duration::from_secs(args.max_interval),
            },
            &prefix,
            &defaults,
        )
    };
    let polling = |steering: Steering| RunSpec {
        steering,
        webhook_latency_ms: None,
        webhook_gap_ms: 0,
        record: None,
    };
    let c = args.concurrency;
    let mut rows = Vec::new();
    let sim = |name: &'static str, spec: RunSpec, tag: &'static str| {
        let (sandbox, client, orders) = (&sandbox, &client, &orders);
        async move {
            eprintln!("economy: {name}");
            let result =
                virtual_clock::run(sandbox, client, orders, tag, &spec, args.seed, c).await?;
            let r = row(name, &result, orders);
            eprintln!(
                "  {:.1} calls/order, lag mean {:.2} s p90 {:.2} s ({:.1} s wall, {} HTTP calls)",
                r.calls,
                r.mean,
                r.p90,
                result.wall.as_secs_f64(),
                result.sandbox_calls
            );
            anyhow::Ok(r)
        }
    };

    // The history the adaptive schedules learn from: another day of orders under the defaults,
    // recorded exactly as the worker records them at finalize.
    eprintln!("economy: learning history ({n} orders under the defaults, seed + 1)");
    let recorder = schedules(Budget::FixedShare(1.0));
    let learn = RunSpec {
        record: Some((recorder.clone(), conn.clone())),
        ..polling(Steering::Fixed(defaults.clone()))
    };
    virtual_clock::run(
        &sandbox,
        &client,
        &training,
        "train",
        &learn,
        args.seed ^ 0xabc,
        c,
    )
    .await?;
    // History accrues: a second day of orders (seed + 2) under the plans learned from the first,
    // recorded into the same history as a worker in adaptive mode would. Its checks sit where
    // payments happen, so its record of when they happened is sharper.
    eprintln!("economy: learning more history ({n} orders under the adaptive plans, seed + 2)");
    let learner = schedules(Budget::FixedShare(1.0));
    learner.refresh(&conn).await?;
    let second = workload::generate(n, args.seed.wrapping_add(2));
    let learn_more = RunSpec {
        record: Some((learner.clone(), conn.clone())),
        ..polling(Steering::Adaptive(learner, defaults.clone()))
    };
    virtual_clock::run(
        &sandbox,
        &client,
        &second,
        "train2",
        &learn_more,
        args.seed ^ 0xdef,
        c,
    )
    .await?;

    let naive = sim(
        "naive fixed 5 s",
        polling(Steering::Fixed(fixed(5, 1.0, 5, DAY, 5, DAY))),
        "naive",
    )
    .await?;
    rows.push(naive.clone());
    rows.push(
        sim(
            "3 s ×1.5 to 30 s, partial reset (seed 000)",
            polling(Steering::Fixed(fixed(3, 1.5, 30, DAY, 30, DAY))),
            "s000",
        )
        .await?,
    );
    rows.push(
        sim(
            "5 s for 60 s, then 20 s (FoxReload)",
            polling(Steering::Fixed(fixed(5, 1.0, 5, 60, 20, DAY))),
            "fox",
        )
        .await?,
    );
    rows.push(
        sim(
            "60 s, then 5 × 300 s (Hyperswitch)",
            polling(Steering::Fixed(fixed(60, 1.0, 60, 60, 300, 60 + 5 * 300))),
            "hyper",
        )
        .await?,
    );
    let default_row = sim(
        "paywatch defaults (fixed)",
        polling(Steering::Fixed(defaults.clone())),
        "def",
    )
    .await?;
    rows.push(default_row.clone());
    let hooks = |gap: u64| RunSpec {
        webhook_latency_ms: Some(webhook_ms.clone()),
        webhook_gap_ms: gap,
        ..polling(Steering::Fixed(defaults.clone()))
    };
    let gap = paywatch_producer::DEFAULT_WEBHOOK_GAP.as_millis() as u64;
    rows.push(
        sim(
            "paywatch defaults + webhooks (min gap 2 s)",
            hooks(gap),
            "hook",
        )
        .await?,
    );
    rows.push(
        sim(
            "paywatch defaults + webhooks (min gap 0)",
            hooks(0),
            "hook0",
        )
        .await?,
    );

    // Adaptive at the defaults' calls per order, then at naive's p90 lag; each calibrated in at
    // most three runs so the realised figure meets the mark (the plan predicts, the run measures).
    let mut adaptive_fixed: Option<Row> = None;
    let mut share = 1.0;
    for attempt in 0..attempts.min(3) {
        let s = schedules(Budget::FixedShare(share));
        anyhow::ensure!(
            s.refresh(&conn).await? == Provider::ALL.len(),
            "adaptive plans missing"
        );
        describe_plans(&s);
        let tags = ["ad-a0", "ad-a1", "ad-a2"];
        let r = sim(
            "paywatch adaptive, at the defaults' calls",
            polling(Steering::Adaptive(s, defaults.clone())),
            tags[attempt],
        )
        .await?;
        let ok = r.calls <= default_row.calls;
        share *= default_row.calls / r.calls.max(1e-9) * 0.99;
        adaptive_fixed = Some(r);
        if ok {
            break;
        }
    }
    // The p90 target: the plan's target is bracketed between one the run met and one it did
    // not, and the run that met naive's p90 with the fewest calls is kept.
    let mut adaptive_p90: Option<Row> = None;
    let mut target = naive.p90;
    let (mut met, mut unmet): (Option<f64>, Option<f64>) = (None, None);
    for tag in ["ad-b0", "ad-b1", "ad-b2", "ad-b3"]
        .into_iter()
        .take(attempts)
    {
        let s = schedules(Budget::P90Lag(target));
        s.refresh(&conn).await?;
        describe_plans(&s);
        let r = sim(
            "paywatch adaptive, at naive's p90 lag",
            polling(Steering::Adaptive(s, defaults.clone())),
            tag,
        )
        .await?;
        let ok = r.p90 <= naive.p90;
        if ok {
            met = Some(target);
        } else {
            unmet = Some(target);
        }
        let better = match &adaptive_p90 {
            None => true,
            Some(best) if best.p90 <= naive.p90 => ok && r.calls < best.calls,
            Some(best) => ok || r.p90 < best.p90,
        };
        if better {
            adaptive_p90 = Some(r.clone());
        }
        target = match (met, unmet) {
            (Some(lo), Some(hi)) => (lo * hi).sqrt(),
            (Some(lo), None) => lo * 1.5,
            _ => target * naive.p90 / r.p90.max(1e-9) * 0.98,
        };
    }
    let adaptive_fixed = adaptive_fixed.ok_or_else(|| anyhow::anyhow!("no adaptive run"))?;
    let adaptive_p90 = adaptive_p90.ok_or_else(|| anyhow::anyhow!("no adaptive run"))?;
    rows.push(adaptive_fixed.clone());
    rows.push(adaptive_p90.clone());
    let _ = sandbox.shutdown().await;
    let _ = fleet::clean(redis, &prefix).await;

    eprintln!("economy: budgeted FoxReload case on the real fleet");
    let budgeted = fleet::budgeted(
        redis,
        args.budget_old,
        Duration::from_secs(args.budget_window),
        args.budget_time_scale,
        args.seed,
    )
    .await?;

    if let Some(dir) = args.plot.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let points: Vec<plot::Point> = rows
        .iter()
        .map(|r| plot::Point {
            name: r.name.clone(),
            calls: r.calls,
            mean: r.mean,
            p90: r.p90,
        })
        .collect();
    match plot::frontier(&points, &args.font, &args.plot) {
        Ok(()) => {}
        // The smoke checks the numbers still come; a machine without the font skips the picture.
        Err(e) if args.smoke => eprintln!("economy: no plot ({e})"),
        Err(e) => return Err(e),
    }

    let text = report(
        &args,
        &rows,
        &naive,
        &default_row,
        &adaptive_fixed,
        &adaptive_p90,
        &webhook_ms,
        &budgeted,
    );
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &text)?;
    Ok(text)
}

fn describe_plans(schedules: &Schedules) {
    for provider in Provider::ALL {
        if let Some(plan) = schedules.plan(provider) {
            let p = plan.prediction();
            let ages = plan.ages();
            let head: Vec<String> = ages.iter().take(12).map(|a| format!("{a:.0}")).collect();
            eprintln!(
                "  plan {provider}: {:.0} samples, predicted {:.1} calls, mean lag {:.1} s, p90 {:.1} s; {} checks: {} …",
                plan.distribution().samples(),
                p.calls_per_order,
                p.mean_lag,
                p.p90_lag,
                ages.len(),
                head.join(" ")
            );
        }
    }
}

fn secs(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x < 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.1}")
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &EconomyArgs,
    rows: &[Row],
    naive: &Row,
    defaults: &Row,
    adaptive_fixed: &Row,
    adaptive_p90: &Row,
    webhook_ms: &[f64],
    budgeted: &fleet::Budgeted,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## The polling economy\n");
    let _ = writeln!(
        s,
        "{} orders (seed {}), the workload of docs/polling.md; every check a real HTTP call to the \
         sandbox on a virtual clock; lags in unscaled seconds over orders that became final at the \
         provider within the schedule. `missed`: final at the provider but never seen final.\n",
        args.orders, args.seed
    );
    let _ = writeln!(
        s,
        "| policy | calls / order | lag mean | p50 | p90 | p99 | missed |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {} | {} | {} | {} | {:.1} % |",
            r.name,
            r.calls,
            secs(r.mean),
            secs(r.p50),
            secs(r.p90),
            secs(r.p99),
            r.missed * 100.0
        );
    }
    let hooked = rows
        .iter()
        .filter_map(|r| r.webhook_p99.map(|p| (r.name.clone(), p)));
    let _ = writeln!(
        s,
        "\n![calls per order against lag](economy-frontier.png)\n"
    );
    let _ = writeln!(s, "### Targets\n");
    let ratio = defaults.mean / adaptive_fixed.mean.max(1e-9);
    let share = adaptive_p90.calls / naive.calls.max(1e-9);
    let pass = |ok: bool| if ok { "**met**" } else { "**missed**" };
    let _ = writeln!(
        s,
        "- Adaptive at the defaults' calls ({:.1} vs {:.1} per order): mean lag {} s vs {} s, \
         {ratio:.1}× lower (target ≥ 2×: {}).",
        adaptive_fixed.calls,
        defaults.calls,
        secs(adaptive_fixed.mean),
        secs(defaults.mean),
        pass(ratio >= 2.0 && adaptive_fixed.calls <= defaults.calls)
    );
    let _ = writeln!(
        s,
        "- Adaptive at naive 5 s's p90 lag ({} s vs {} s): {:.1} calls per order vs {:.1}, {:.1} % \
         (target ≤ 10 %: {}).",
        secs(adaptive_p90.p90),
        secs(naive.p90),
        adaptive_p90.calls,
        naive.calls,
        share * 100.0,
        pass(share <= 0.10 && adaptive_p90.p90 <= naive.p90)
    );
    let p50 = quantile(webhook_ms, 0.5);
    let p99 = quantile(webhook_ms, 0.99);
    let _ = writeln!(
        s,
        "- Webhooks, the real path (sandbox webhook → producer → check now → final recorded), {} \
         Cashless and HandCash orders: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms (target p99 ≤ \
         50 ms: {}).",
        webhook_ms.len(),
        webhook_ms.last().copied().unwrap_or(f64::NAN),
        pass(p99 <= 50.0)
    );
    for (name, p) in hooked {
        let _ = writeln!(
            s,
            "  - in the simulation, {name}: p99 over the webhook providers' paid orders {:.0} ms",
            p * 1000.0
        );
    }
    let mut young = budgeted.young_lags_s.clone();
    young.sort_by(f64::total_cmp);
    let _ = writeln!(
        s,
        "- Budgeted FoxReload (100 calls/min through the fleet's gate, young share 20 %, time scale \
         {}): {} old never-paying orders and {} young ones arriving over {:.0} s. Young orders' \
         detection lag p50 {} s, p90 {} s, p99 {} s; old orders got {:.2} checks each against {:.2} \
         their schedule asks; FoxReload saw {} calls ({:.0}/min), {} answered 429, at most {} in \
         any one of its windows (target: young first, no 429 storm: {}).",
        budgeted.time_scale,
        budgeted.old_orders,
        budgeted.young_orders,
        budgeted.window_s,
        secs(quantile(&young, 0.5)),
        secs(quantile(&young, 0.9)),
        secs(quantile(&young, 0.99)),
        budgeted.old_checks_per_order,
        budgeted.old_checks_wanted,
        budgeted.requests,
        budgeted.requests as f64 / (budgeted.window_s / 60.0),
        budgeted.rate_limited,
        budgeted.max_in_window,
        pass(budgeted.rate_limited == 0 && budgeted.max_in_window <= 100)
    );
    let _ = writeln!(
        s,
        "\nCommand: `just bench economy` (`paywatch-bench economy --orders {} --seed {} \
         --max-interval {}`).",
        args.orders, args.seed, args.max_interval
    );
    s
}
