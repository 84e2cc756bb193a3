//! `paywatch-bench economy --smoke`: the seconds-long run CI makes so the benchmark cannot rot.
//! It checks that every row and target line comes out, not how fast anything is.

use std::process::Command;

#[test]
fn the_economy_smoke_reports_every_policy_and_target() {
    let redis = paywatch_tests::redis_url();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("economy.md");
    let status = Command::new(env!("CARGO_BIN_EXE_paywatch-bench"))
        .args(["economy", "--smoke", "--redis", &redis, "--out"])
        .arg(&out)
        .arg("--plot")
        .arg(dir.path().join("economy-frontier.png"))
        .status()
        .expect("run paywatch-bench");
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&out).expect("the section");
    for row in [
        "| naive fixed 5 s |",
        "(seed 000) |",
        "(FoxReload) |",
        "(Hyperswitch) |",
        "| paywatch defaults (fixed) |",
        "| paywatch defaults + webhooks (min gap 2 s) |",
        "| paywatch adaptive, at the defaults' calls |",
        "| paywatch adaptive, at naive's p90 lag |",
        "- Webhooks, the real path",
        "- Budgeted FoxReload",
    ] {
        assert!(text.contains(row), "{row} missing from:\n{text}");
    }
}
