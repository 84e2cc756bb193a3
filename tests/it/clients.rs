//! The examples of docs/enqueue-from-any-language.md are the tests: each language's code block is
//! taken from the page as written and run, unchanged, against a real Redis, a real worker and
//! the sandbox. Run once it submits (`created pending watching`) and prints the refusal of a bad
//! order in the function's exact words; once the worker has found the order paid, run again it
//! reports `exists paid final`. The blocks read REDIS_URL, PAYWATCH_PREFIX, PAYWATCH_SHARDS,
//! ORDER_ID and PAYMENT_ID, as the page documents.
//!
//! The interpreters and clients come from `scripts/ensure-client-tools.sh`, which `just test`
//! runs first; a test never installs anything. A missing tool fails the test when `CI=true` and
//! skips it, loudly, otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use paywatch_tests::stack::Stack;
use paywatch_tests::wait_for;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

const DOC: &str = "docs/enqueue-from-any-language.md";

/// The first fenced code block under the `### <heading>` section of the contract doc.
fn doc_block(heading: &str) -> String {
    let text = std::fs::read_to_string(root().join(DOC)).expect("read the contract doc");
    let start = text
        .find(&format!("\n### {heading}"))
        .unwrap_or_else(|| panic!("{DOC} has no '### {heading}' section"));
    let section = &text[start + 1..];
    let fence = section
        .find("\n```")
        .unwrap_or_else(|| panic!("no code block under '### {heading}'"));
    assert!(
        !section[..fence].contains("\n### "),
        "no code block under '### {heading}' before the next section"
    );
    let body = &section[fence + 4..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    let end = body
        .find("\n```")
        .unwrap_or_else(|| panic!("unclosed code block under '### {heading}'"));
    body[..=end].to_string()
}

/// Whether `program args…` runs and exits 0 (a probe for a tool).
fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `Ok` when the tool is there; otherwise fails under CI and says loudly that it skips.
fn require(language: &str, present: bool) -> bool {
    if present {
        return true;
    }
    let message = format!(
        "the {language} example of {DOC} cannot run: its tools are missing; \
         run scripts/ensure-client-tools.sh (just test does)"
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("\n!!! SKIPPED: {message}\n");
    false
}

/// Runs `command` (the example) with the stack's settings; its stdout, after it succeeded.
async fn run(
    language: &str,
    mut command: tokio::process::Command,
    stack: &Stack,
    order_id: &str,
    bill: &str,
) -> String {
    command
        .env("REDIS_URL", &stack.redis)
        .env("PAYWATCH_PREFIX", &stack.prefix)
        .env("PAYWATCH_SHARDS", stack.shards.to_string())
        .env("ORDER_ID", order_id)
        .env("PAYMENT_ID", bill)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("the {language} example did not exit within 2 minutes"))
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the {language} example failed: {}\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

/// Runs the `heading` block of the doc as `file` through `program`, twice, around a worker
/// finding the order paid.
async fn run_doc_example(
    test: &str,
    heading: &str,
    file: &str,
    program: &[&str],
    env: &[(&str, String)],
) {
    let stack = Stack::start(test).await;
    assert_eq!(stack.shards, 1, "the redis-cli example assumes one shard");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(file);
    std::fs::write(&path, doc_block(heading)).expect("write the example");
    if file.ends_with(".mjs") {
        // ES modules find packages in a node_modules beside them (NODE_PATH does not apply).
        std::os::unix::fs::symlink(
            root().join("tests/clients/node_modules"),
            dir.path().join("node_modules"),
        )
        .expect("link node_modules");
    }
    let command = || {
        let mut command = tokio::process::Command::new(program[0]);
        command
            .args(&program[1..])
            .arg(&path)
            .current_dir(dir.path());
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        command
    };
    let worker = stack.worker(&stack.worker_args(0.01)).await;
    let bill = stack.bill_paid_after(300);
    let order_id = format!("{test}-order");
    let refusal = "paywatch: notify.email: must contain exactly one @";

    let first = run(heading, command(), &stack, &order_id, &bill).await;
    for word in ["created", "pending", "watching", refusal] {
        assert!(
            first.contains(word),
            "{heading}, first run: no {word:?} in\n{first}"
        );
    }
    let view = stack
        .order(&order_id)
        .await
        .expect("the API sees the order");
    assert_eq!(view["payment_id"], bill.as_str(), "{view}");
    assert_eq!(view["notify"]["email"], "buyer@example.com", "{view}");
    wait_for(
        "the worker to find it paid",
        Duration::from_secs(30),
        || async {
            let view = stack.order(&order_id).await?;
            (view["phase"] == "final").then_some(())
        },
    )
    .await;
    let again = run(heading, command(), &stack, &order_id, &bill).await;
    for word in ["exists", "paid", "final", refusal] {
        assert!(
            again.contains(word),
            "{heading}, second run: no {word:?} in\n{again}"
        );
    }
    assert!(!again.contains("created"), "{again}");
    // The refused order wrote nothing.
    assert!(stack.order("shop-1043").await.is_none());
    worker.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn the_redis_cli_example_runs_as_written() {
    if !require("redis-cli", works("redis-cli", &["--version"])) {
        return;
    }
    run_doc_example("client-cli", "redis-cli", "submit.sh", &["sh"], &[]).await;
}

#[tokio::test]
async fn the_python_example_runs_as_written() {
    let python = root().join(".paywatch/clients-venv/bin/python");
    let python = python.to_str().expect("path");
    if !require("Python", works(python, &["-c", "import redis"])) {
        return;
    }
    run_doc_example("client-python", "Python", "submit.py", &[python], &[]).await;
}

#[tokio::test]
async fn the_node_example_runs_as_written() {
    let ioredis = root().join("tests/clients/node_modules/ioredis");
    if !require("Node", works("node", &["--version"]) && ioredis.is_dir()) {
        return;
    }
    run_doc_example("client-node", "Node", "submit.mjs", &["node"], &[]).await;
}

#[tokio::test]
async fn the_ruby_example_runs_as_written() {
    if !require("Ruby", works("ruby", &["-e", "require 'redis'"])) {
        return;
    }
    run_doc_example("client-ruby", "Ruby", "submit.rb", &["ruby"], &[]).await;
}

#[tokio::test]
async fn the_php_example_runs_as_written() {
    let phpredis = works("php", &["-r", "exit(class_exists('Redis') ? 0 : 1);"]);
    if !require("PHP", phpredis) {
        return;
    }
    run_doc_example("client-php", "PHP", "submit.php", &["php"], &[]).await;
}

/// Debian's redigo, in GOPATH mode, as the doc says to run it.
const GOPATH: &str = "/usr/share/gocode";

#[tokio::test]
async fn the_go_example_runs_as_written() {
    let redigo = Path::new(GOPATH).join("src/github.com/gomodule/redigo/redis");
    if !require("Go", works("go", &["version"]) && redigo.is_dir()) {
        return;
    }
    let env = [
        ("GO111MODULE", "off".to_string()),
        ("GOPATH", GOPATH.to_string()),
    ];
    run_doc_example("client-go", "Go", "submit.go", &["go", "run"], &env).await;
}
