//! The workspace's real binaries, built once per test process, for tests that run what operators
//! run (`paywatch-producer enqueue …`, `paywatch-producer admin …`).

use std::path::PathBuf;
use std::process::Stdio;

/// The workspace root.
pub fn root() -> PathBuf {
    crate::repo_root()
}

/// Where cargo put the producer's, worker's and sandbox's binaries (built on first use).
pub fn dir() -> PathBuf {
    crate::product_binaries()
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
