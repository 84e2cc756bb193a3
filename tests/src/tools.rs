//! The outside tools some tests drive (a browser, Prometheus, schemathesis, language clients,
//! other Redis-protocol servers). `just test` installs them all first, in one place
//! (`scripts/ensure-test-tools.sh`); a test only looks for its tool and never installs anything.
//!
//! A missing tool fails the test under `CI=true`, so CI never passes by skipping. Elsewhere (a
//! laptop without root, `cargo test` without the setup step) the test skips with a banner that
//! says what did not run and which command installs it.

use std::path::Path;
use std::process::Command;

use crate::repo_root;

/// A tool one or more tests need, as `scripts/ensure-test-tools.sh` leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Debian's Chromium and playwright-core under tests/board (the board test).
    Chromium,
    /// `prometheus` and `promtool` on the PATH (dashboards, rules, a live scrape).
    Prometheus,
    /// schemathesis in `.paywatch/schemathesis-venv` (the API fuzz test).
    Schemathesis,
    /// redis-py in `.paywatch/clients-venv` (the Cluster client test).
    PythonClients,
}

impl Tool {
    /// What the tool is, for the banner.
    fn label(self) -> &'static str {
        match self {
            Tool::Chromium => "Chromium with playwright-core (tests/board)",
            Tool::Prometheus => "prometheus and promtool",
            Tool::Schemathesis => "schemathesis (.paywatch/schemathesis-venv)",
            Tool::PythonClients => "redis-py (.paywatch/clients-venv)",
        }
    }

    /// Whether it is installed and runs.
    fn present(self) -> bool {
        let root = repo_root();
        match self {
            Tool::Chromium => {
                Path::new("/usr/bin/chromium").is_file()
                    && root.join("tests/board/node_modules/.stamp").is_file()
            }
            Tool::Prometheus => {
                runs("prometheus", &["--version"]) && runs("promtool", &["--version"])
            }
            Tool::Schemathesis => root.join(".paywatch/schemathesis-venv/bin/st").is_file(),
            Tool::PythonClients => runs(
                &root
                    .join(".paywatch/clients-venv/bin/python")
                    .to_string_lossy(),
                &["-c", "import redis"],
            ),
        }
    }
}

/// Whether `program args…` runs and exits 0.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

/// `true` when `tool` is there. Otherwise panics under `CI=true`, or prints a loud SKIPPED banner
/// naming `what` (the checks that will not run) and returns `false`, so the caller returns.
pub fn require(tool: Tool, what: &str) -> bool {
    if tool.present() {
        return true;
    }
    missing(tool.label(), what);
    false
}

/// Reports a missing tool: a failure under `CI=true`, a loud skip elsewhere.
pub fn missing(label: &str, what: &str) {
    let message = format!(
        "{label} is not installed: {what} did not run; scripts/ensure-test-tools.sh installs it \
         (`just test` runs it first)"
    );
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{message}; CI=true, so this is a failure, not a skip");
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED: {message}\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
}
