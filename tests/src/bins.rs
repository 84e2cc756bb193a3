//! The workspace's real binaries, built once per test process, for tests that run what operators
//! run (`paywatch-producer enqueue …`, `paywatch-producer admin …`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Where cargo put the producer's, worker's and sandbox's binaries (built on first use, through
/// scripts/cargo-bins.sh, so `CARGO_TARGET_DIR` is honoured).
pub fn dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut build = std::process::Command::new(root().join("scripts/cargo-bins.sh"));
        // cargo test gives this process its package's variables; passing them on would make
        // build scripts that watch them rebuild here and again at the next plain `cargo build`.
        for (name, _) in std::env::vars_os() {
            let package_variable = name.to_str().is_some_and(|n| {
                n.starts_with("CARGO_PKG_")
                    || n.starts_with("CARGO_MANIFEST_")
                    || n.starts_with("CARGO_BIN_")
                    || [
                        "CARGO_CRATE_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                    ]
                    .contains(&n)
            });
            if package_variable {
                build.env_remove(name);
            }
        }
        let output = build
            .args(["-p", "paywatch-producer", "--bins"])
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/cargo-bins.sh");
        assert!(output.status.success(), "cargo build failed");
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
    .clone()
}

/// What a run of `paywatch-producer <args>` against `redis` and `prefix` did: exit code (`None`
/// when killed by a signal), stdout, stderr.
pub async fn producer(redis: &str, prefix: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = tokio::process::Command::new(dir().join("paywatch-producer"))
        .args(args)
        .env("REDIS_URL", redis)
        .env("PAYWATCH_PREFIX", prefix)
        .env_remove("PAYWATCH_SHARDS")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run paywatch-producer");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
