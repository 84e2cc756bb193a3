//! `just up`'s program, `paywatch-demo stack`, run for real (without Prometheus, which `just up`
//! adds): it starts, every URL it prints answers, the commands it prints work while it runs, and
//! Ctrl-C (SIGINT) or SIGTERM stops everything it started and deletes its keys.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use paywatch_tests::{redis_url, wait_for};
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Where cargo put paywatch-demo and the binaries it starts (built once per test process).
fn binaries() -> PathBuf {
    paywatch_tests::product_binaries()
}

/// The first `http://…` in a line, without trailing punctuation.
fn first_url(line: &str) -> Option<String> {
    let start = line.find("http://")?;
    let url: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '\'' && *c != ')')
        .collect();
    Some(url)
}

async fn answers(url: &str) -> bool {
    reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok()
}

async fn shell(command: &str) -> (bool, String) {
    let output = tokio::process::Command::new("sh")
        .args(["-c", command])
        .output()
        .await
        .expect("run sh");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

async fn up_then_stop(signal: Signal) {
    let bins = binaries();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = tokio::process::Command::new(bins.join("paywatch-demo"))
        .args(["stack", "--no-prometheus", "--checkers", "1", "--bin-dir"])
        .arg(&bins)
        .env("REDIS_URL", redis_url())
        // Its logs go under .paywatch/up/ where it runs.
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start paywatch-demo stack");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            let done = line.starts_with("Press Ctrl-C");
            printed.push(line);
            if done {
                return;
            }
        }
        panic!("the stack ended before it was up:\n{}", printed.join("\n"));
    })
    .await
    .expect("the stack is up within two minutes");
    let text = printed.join("\n");
    let line = |label: &str| {
        printed
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line in:\n{text}"))
            .clone()
    };
    let api = first_url(&line("API")).expect("API URL");
    let token = text
        .split("(token: ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .expect("token printed")
        .to_owned();
    let prefix = text
        .split("(keys under ")
        .nth(1)
        .and_then(|t| t.split(':').next())
        .expect("prefix printed")
        .to_owned();

    // Every URL it prints answers.
    let mut urls = vec![format!("{api}/healthz")];
    for label in ["board", "OpenAPI", "sandbox admin"] {
        urls.push(first_url(&line(label)).expect("url"));
    }
    let metrics: Vec<String> = printed
        .iter()
        .filter(|l| l.trim_start().starts_with("metrics"))
        .filter_map(|l| first_url(l))
        .collect();
    assert_eq!(metrics.len(), 3, "producer, one checker, notifier:\n{text}");
    urls.extend(metrics.iter().cloned());
    for url in &urls {
        let response = reqwest::get(url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        let body = response.text().await.expect("body");
        if url.ends_with("/metrics") {
            assert!(body.contains("paywatch_"), "{url} has no paywatch metrics");
        }
    }

    // The commands it prints work while it runs.
    let commands: Vec<String> = printed
        .iter()
        .map(|l| l.trim().to_owned())
        .filter(|l| l.starts_with("curl ") || l.starts_with("REDIS_URL="))
        .collect();
    let (ok, out) = shell(&commands[0]).await;
    assert!(
        ok && out.contains("\"order_id\":\"up-paid\""),
        "{}: {out}",
        commands[0]
    );
    let (ok, out) = shell(&commands[1]).await;
    assert!(
        ok && out.contains("check-payment.0"),
        "{}: {out}",
        commands[1]
    );
    let (ok, out) = shell(&commands[2]).await;
    assert!(
        ok && out.contains("check-payment.0"),
        "{}: {out}",
        commands[2]
    );
    let (ok, payment) = shell(&commands[3]).await;
    let payment: serde_json::Value = serde_json::from_str(&payment)
        .unwrap_or_else(|e| panic!("{}: {e}: {payment}", commands[3]));
    assert!(ok);
    let submit = commands[4].replace(
        "<the id above>",
        payment["id"].as_str().expect("payment id"),
    );
    let (ok, out) = shell(&submit).await;
    assert!(ok && out.contains("\"created\":true"), "{submit}: {out}");
    // The seeded dead letter is there to retry.
    let client = reqwest::Client::new();
    let dead: serde_json::Value = client
        .get(format!("{api}/v1/admin/dead-letters"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("dead letters")
        .json()
        .await
        .expect("json");
    assert_eq!(dead["letters"][0]["id"], "up-refused", "{dead}");

    // The signal stops everything, cleanly.
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw)
        .expect("pid");
    kill_process(pid, signal).expect("signal the stack");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the stack stops within a minute")
        .expect("wait");
    assert!(status.success(), "{status}");
    for url in &urls {
        assert!(!answers(url).await, "{url} still answers after the stop");
    }
    let client = redis::Client::open(redis_url()).expect("redis");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = wait_for("the stack's keys gone", Duration::from_secs(5), || {
        let mut conn = conn.clone();
        let pattern = format!("{prefix}:*");
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut conn)
                .await
                .ok()?;
            keys.is_empty().then_some(keys)
        }
    })
    .await;
    assert!(keys.is_empty());
    let _: () = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map(|_: String| ())
        .expect("the shared Redis is still up");
}

#[tokio::test]
async fn the_stack_comes_up_answers_and_stops_on_ctrl_c() {
    up_then_stop(Signal::INT).await;
}

#[tokio::test]
async fn the_stack_stops_on_sigterm() {
    up_then_stop(Signal::TERM).await;
}
