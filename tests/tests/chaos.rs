//! The short chaos run inside `just test` (the long one is `just chaos`): a few hundred orders
//! through the API, workers `kill -9`'d and replaced, Redis restarted gracefully and killed,
//! and everything accounted for at the receivers. See `paywatch_tests::chaos`.

use std::time::Duration;

use paywatch_tests::chaos::{self, ChaosConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_lost_or_sent_twice_outside_its_window_under_kills_and_redis_restarts() {
    let logs = tempfile::tempdir().expect("log dir");
    let report = chaos::run(ChaosConfig {
        orders: 400,
        rate: 40.0,
        checkers: 3,
        notifiers: 2,
        kill_every: Duration::from_millis(1500),
        shards: 2,
        seed: 42,
        time_limit: Duration::from_secs(240),
        worker_binary: env!("CARGO_BIN_EXE_pw-worker").into(),
        logs: logs.path().to_path_buf(),
    })
    .await
    .expect("chaos run");
    eprintln!("{report}");
    let problems = report.problems();
    if !problems.is_empty() {
        // Keep the workers' logs of a failed run.
        let kept = logs.keep();
        panic!("{problems:#?}\nworker logs in {}", kept.display());
    }
    assert!(report.kills >= 3, "the run killed too little: {report}");
    assert_eq!(report.redis_restarts, (1, 1), "{report}");
}
