//! The side-by-side driver: runs each scenario for paywatch (this binary) and BullMQ
//! (`node bench.mjs`), in separate processes on the same Redis, and prints the table.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use serde_json::Value;

/// Runs one measurement process and parses the JSON object on its last stdout line.
pub(crate) fn run_json(cmd: Command) -> anyhow::Result<Value> {
    run(cmd)
}

fn run(mut cmd: Command) -> anyhow::Result<Value> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("could not start {shown}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).with_context(|| format!("{shown} printed no JSON result"))
}

struct Side<'a> {
    redis: &'a str,
    bullmq_dir: &'a Path,
}

impl Side<'_> {
    fn paywatch(&self, prefix: &str, args: &[&str]) -> anyhow::Result<Value> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.args(["--redis", self.redis, "--prefix", prefix])
            .args(args);
        run(cmd)
    }

    fn bullmq(&self, prefix: &str, args: &[&str]) -> anyhow::Result<Value> {
        let mut cmd = Command::new("node");
        cmd.current_dir(self.bullmq_dir)
            .arg("bench.mjs")
            .args(args)
            .args(["--redis", self.redis, "--prefix", prefix]);
        run(cmd)
    }
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn fresh(tag: &str) -> String {
    format!("{tag}:{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The queue benchmark's results.
#[derive(Debug, Clone)]
pub struct QueueTable {
    /// The Markdown table.
    pub markdown: String,
    /// Bytes per pending order with the README's example order: (paywatch, BullMQ).
    pub example_bytes: Option<(f64, f64)>,
}

/// Runs everything and prints (and optionally writes) the Markdown table.
pub fn compare(
    redis: &str,
    runs: usize,
    bullmq_dir: &Path,
    out: Option<&Path>,
    scale: f64,
) -> anyhow::Result<()> {
    let table = compare_table(redis, runs, bullmq_dir, scale)?;
    println!("{}", table.markdown);
    if let Some(path) = out {
        std::fs::write(path, &table.markdown)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Runs every queue scenario for paywatch and BullMQ and returns the table.
pub fn compare_table(
    redis: &str,
    runs: usize,
    bullmq_dir: &Path,
    scale: f64,
) -> anyhow::Result<QueueTable> {
    let side = Side { redis, bullmq_dir };
    let n = |base: usize| {
        ((base as f64 * scale).round() as usize)
            .max(100)
            .to_string()
    };
    let (work_jobs, late_jobs, mem_jobs) = (n(50_000), n(20_000), n(100_000));
    let concurrency = "100";

    let mut pw_tput = Vec::new();
    let mut bq_tput = Vec::new();
    let mut pw_rss = Vec::new();
    let mut bq_rss = Vec::new();
    for i in 0..runs.max(1) {
        eprintln!("throughput run {}/{}", i + 1, runs.max(1));
        let p = fresh("pwbench");
        side.paywatch(&p, &["preload", "--jobs", &work_jobs])?;
        let r = side.paywatch(
            &p,
            &["work", "--jobs", &work_jobs, "--concurrency", concurrency],
        )?;
        side.paywatch(&p, &["clean"])?;
        pw_tput.push(num(&r, "jobs_per_sec"));
        pw_rss.push(num(&r, "peak_rss_kb"));

        let b = fresh("bullbench");
        side.bullmq(&b, &["preload", "--jobs", &work_jobs])?;
        let r = side.bullmq(
            &b,
            &["work", "--jobs", &work_jobs, "--concurrency", concurrency],
        )?;
        side.bullmq(&b, &["clean"])?;
        bq_tput.push(num(&r, "jobs_per_sec"));
        bq_rss.push(num(&r, "peak_rss_kb"));
    }

    eprintln!("lateness");
    let late_args = [
        "lateness",
        "--jobs",
        &late_jobs,
        "--spread-ms",
        "2000",
        "--concurrency",
        concurrency,
    ];
    let pw_late = side.paywatch(&fresh("pwbench"), &late_args)?;
    let b = fresh("bullbench");
    let bq_late = side.bullmq(&b, &late_args)?;
    side.bullmq(&b, &["clean"])?;

    eprintln!("memory");
    let mut mem = Vec::new();
    for payload in ["small", "order", "example"] {
        let args = ["memory", "--jobs", &mem_jobs, "--payload", payload];
        let pw = side.paywatch(&fresh("pwbench"), &args)?;
        let bq = side.bullmq(&fresh("bullbench"), &args)?;
        mem.push((
            payload,
            num(&pw, "bytes_per_job"),
            num(&bq, "bytes_per_job"),
        ));
    }

    let (pt, bt) = (median(pw_tput), median(bq_tput));
    let (pr, br) = (median(pw_rss) / 1024.0, median(bq_rss) / 1024.0);
    let rows = [
        (
            format!(
                "no-op jobs/s, 1 worker process, {work_jobs} preloaded, concurrency {concurrency} (median of {runs})"
            ),
            format!("{pt:.0}"),
            format!("{bt:.0}"),
            format!("{:.2}× (higher is better)", pt / bt),
        ),
        (
            format!("lateness p50, {late_jobs} jobs delayed over 0–2 s"),
            format!("{} ms", num(&pw_late, "p50_ms")),
            format!("{} ms", num(&bq_late, "p50_ms")),
            String::new(),
        ),
        (
            "lateness p99".to_string(),
            format!("{} ms", num(&pw_late, "p99_ms")),
            format!("{} ms", num(&bq_late, "p99_ms")),
            String::new(),
        ),
        (
            "lateness max / jobs run early".to_string(),
            format!(
                "{} ms / {}",
                num(&pw_late, "max_ms"),
                num(&pw_late, "early")
            ),
            format!(
                "{} ms / {}",
                num(&bq_late, "max_ms"),
                num(&bq_late, "early")
            ),
            String::new(),
        ),
        (
            "worker peak RSS (throughput run)".to_string(),
            format!("{pr:.1} MB"),
            format!("{br:.1} MB"),
            format!("{:.1}× less", br / pr),
        ),
    ];
    let mut rows = rows.to_vec();
    let example_bytes = mem
        .iter()
        .find(|(payload, _, _)| *payload == "example")
        .map(|(_, pw, bq)| (*pw, *bq));
    for (payload, pw, bq) in mem {
        let metric = match payload {
            "small" => format!(
                "Redis bytes per pending delayed job, payload `{{\"i\":N}}` ({mem_jobs} jobs)"
            ),
            "order" => format!(
                "Redis bytes per pending delayed job, payload `{{\"order_id\":\"ord-N\",\"provider\":\"cashless\"}}` ({mem_jobs} jobs)"
            ),
            _ => format!(
                "Redis bytes per pending order, the README's example order (three notify targets): paywatch through its submit function (record, schedule, payment index), BullMQ as a delayed job holding the same JSON ({mem_jobs} orders)"
            ),
        };
        rows.push((
            metric,
            format!("{pw:.0}"),
            format!("{bq:.0}"),
            format!("{:.2}× less", bq / pw),
        ));
    }
    let mut table =
        String::from("| metric | paywatch-queue | BullMQ 6 | ratio |\n|---|---|---|---|\n");
    for (metric, p, b, ratio) in rows {
        table.push_str(&format!("| {metric} | {p} | {b} | {ratio} |\n"));
    }
    Ok(QueueTable {
        markdown: table,
        example_bytes,
    })
}
