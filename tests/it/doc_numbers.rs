//! Numbers the prose quotes from the benchmarks are the last run's: BENCHMARKS.md (written by
//! `just bench`) is the source, and README.md and docs/queue.md must say what it says. After a
//! new `just bench`, this fails until the prose is brought up to date.

use std::path::{Path, PathBuf};

fn read(path: &str) -> String {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The cells of the first table row of `text` whose first cell starts with `label`.
fn row<'a>(text: &'a str, label: &str) -> Vec<&'a str> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("| {label}")))
        .unwrap_or_else(|| panic!("no row '{label}…'"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

#[test]
fn bytes_per_order_in_the_prose_are_the_last_runs() {
    let bench = read("BENCHMARKS.md");
    let bytes = row(
        &bench,
        "Redis bytes per pending order, the README's example order",
    )[1];
    assert!(bytes.parse::<u32>().is_ok(), "{bytes}");
    let readme = read("README.md");
    assert!(
        readme.contains(&format!(
            "compact record riding on its check job — {bytes} bytes"
        )),
        "README's 'Small in Redis' must say {bytes} bytes, as BENCHMARKS.md does"
    );
    let queue = read("docs/queue.md");
    assert!(
        queue.contains(&format!("**{bytes} bytes of Redis**")),
        "docs/queue.md's sizing must say {bytes} bytes, as BENCHMARKS.md does"
    );
}

#[test]
fn the_queue_benchmark_table_in_docs_is_the_last_runs() {
    let bench = read("BENCHMARKS.md");
    let queue = read("docs/queue.md");
    for label in [
        "no-op jobs/s",
        "lateness p50",
        "lateness p99",
        "lateness max",
        "worker peak RSS",
        "Redis bytes per pending delayed job, payload `{\"i\":N}`",
        "Redis bytes per pending delayed job, payload `{\"order_id\"",
    ] {
        assert_eq!(
            row(&queue, label),
            row(&bench, label),
            "docs/queue.md and BENCHMARKS.md differ on '{label}'"
        );
    }
}
