//! The short chaos runs inside `just test` (the long ones are `just chaos`): a few hundred orders
//! through the API (and, in the failover runs, through `FCALL`), with everything accounted for at
//! the receivers. See `paywatch_tests::chaos`.
//!
//! - Workers `kill -9`'d and replaced, Redis restarted gracefully and killed (`restarts`).
//! - A Sentinel-watched primary `kill -9`'d mid-run in durable mode, its replicas 50 ms behind
//!   (`failover`).
//! - A Cluster master `kill -9`'d mid-run (`cluster-failover`).
//!
//! They run one at a time: each starts its own Redis servers and a fleet of processes, and two
//! at once on a 2-core machine would starve the sentinels' and the Cluster's failure detection.

use std::time::Duration;

use paywatch_tests::chaos::{self, ChaosConfig, Report, Scenario};
use paywatch_tests::product_binaries;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs one short chaos run and fails the test (keeping the workers' logs) on any problem.
async fn run(config: ChaosConfig) -> Report {
    let _turn = ONE_AT_A_TIME.lock().await;
    let logs = tempfile::tempdir().expect("log dir");
    let report = chaos::run(ChaosConfig {
        logs: logs.path().to_path_buf(),
        ..config
    })
    .await
    .expect("chaos run");
    eprintln!("{report}");
    let problems = report.problems();
    if !problems.is_empty() {
        // Keep the workers' logs of a failed run.
        let kept = logs.keep();
        panic!("{problems:#?}\n{report}\nworker logs in {}", kept.display());
    }
    report
}

fn short(scenario: Scenario, orders: usize, rate: f64, shards: u32) -> ChaosConfig {
    ChaosConfig {
        orders,
        rate,
        checkers: 3,
        notifiers: 2,
        kill_every: Duration::from_millis(1500),
        shards,
        seed: 42,
        time_limit: Duration::from_secs(240),
        worker_binary: env!("CARGO_BIN_EXE_pw-worker").into(),
        logs: std::env::temp_dir(),
        scenario,
        durable: false,
        producer_binary: product_binaries().join("paywatch-producer"),
        link_delay: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_lost_or_sent_twice_outside_its_window_under_kills_and_redis_restarts() {
    let report = run(short(Scenario::Restarts, 400, 40.0, 2)).await;
    assert!(report.kills >= 3, "the run killed too little: {report}");
    assert_eq!(report.redis_restarts, (1, 1), "{report}");
}

/// The primary dies with its last 50 ms of writes on the way to the replicas. In durable mode
/// nothing acknowledged may be lost and nothing may be sent twice; the fleet must work again on
/// the promoted replica without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_in_durable_mode_loses_nothing_and_sends_nothing_twice() {
    let report = run(ChaosConfig {
        durable: true,
        link_delay: Duration::from_millis(50),
        ..short(Scenario::Failover, 300, 30.0, 2)
    })
    .await;
    let failover = report.failover.clone().expect("a failover");
    assert!(report.vanished.is_empty(), "{report}");
    assert_eq!(
        report.duplicates.map(|d| d.extra),
        [0, 0, 0],
        "duplicates: {report}"
    );
    assert!(failover.library, "{report}");
    assert!(
        failover.acked_before > 0,
        "killed before any order: {report}"
    );
    assert!(
        report.doors.iter().all(|n| *n > 0),
        "a door unused: {report}"
    );
}

/// A Cluster master dies; its replica takes its slots. Nothing stranded, no notification
/// missing, the shards it served work again (acknowledged orders lost, and duplicates, are
/// measured: paywatch refuses durable mode on a Cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_master_failover_strands_nothing_and_misses_no_notification() {
    let report = run(short(Scenario::ClusterFailover, 300, 30.0, 4)).await;
    let failover = report.failover.clone().expect("a failover");
    assert!(!failover.affected_shards.is_empty(), "{report}");
    assert!(failover.library, "{report}");
    assert!(
        report.doors.iter().all(|n| *n > 0),
        "a door unused: {report}"
    );
}
