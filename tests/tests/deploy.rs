//! deploy/ (Dockerfile, compose, Kubernetes, Prometheus, Grafana) checked by real validators
//! through scripts/check-deploy.sh: hadolint, the compose-spec schema, the Kubernetes schemas
//! (strict), KEDA's CRD schema, promtool, and paywatch's own rules (drain within the grace
//! period, KEDA on the due-now depth). The script installs the validators from PyPI, npm and
//! Debian on first use.

use std::path::Path;
use std::process::Command;

#[test]
fn deploy_files_pass_their_validators() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let out = Command::new(repo.join("scripts/check-deploy.sh"))
        .output()
        .expect("run scripts/check-deploy.sh");
    assert!(
        out.status.success(),
        "scripts/check-deploy.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
