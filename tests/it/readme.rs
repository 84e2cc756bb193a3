//! README "Running it", as a newcomer runs it: the commands of its code blocks, taken from the
//! README, run by bash against the real binaries and a Redis of their own. Only what cannot be
//! the same on a shared test machine is changed: `target/release/` is where cargo built the
//! binaries, and the ports 8080, 8090 and 2525 are free ones. The production block is run up to
//! its pollers (which need real provider accounts); the sandbox block and the submit block run
//! whole. Then the order is paid, the email was printed by the SMTP server, the Telegram message
//! reached the sandbox, and the order submitted with redis-cli is there.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use paywatch_tests::{RedisServer, free_ports, wait_for};
use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::Value;

/// The workspace root.
fn root() -> PathBuf {
    paywatch_tests::repo_root()
}

/// Where cargo put the producer, worker, sandbox and paywatch-demo binaries (built once).
fn binaries() -> PathBuf {
    paywatch_tests::product_binaries()
}

/// The `sh` code blocks of the README's "Running it" section, in order.
fn running_it_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme
        .find("\n## Running it\n")
        .expect("a 'Running it' section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    section
        .split("```sh\n")
        .skip(1)
        .map(|block| block[..block.find("```").expect("closed block")].to_string())
        .collect()
}

/// Kills the whole process group the script and everything it started run in.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = Pid::from_raw(self.0) {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

#[tokio::test]
async fn running_it_runs_as_written() {
    for tool in ["curl", "openssl", "redis-cli"] {
        let present = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(present, "README 'Running it' needs {tool}");
    }
    let blocks = running_it_blocks();
    assert_eq!(blocks.len(), 3, "production, sandbox, submit: {blocks:#?}");
    let production = blocks[0]
        .split("# Pollers")
        .next()
        .expect("the lines before the pollers");
    assert!(
        production.contains("paywatch-producer serve"),
        "{production}"
    );
    let redis = RedisServer::start().await;
    let [api, sandbox, smtp] = free_ports::<3>();
    let bin = binaries();
    let script = format!("set -e\n{production}\n{}\n{}\n", blocks[1], blocks[2])
        .replace("cargo build --release\n", "")
        .replace("target/release/", &format!("{}/", bin.display()))
        .replace("redis://127.0.0.1:6379", &redis.url())
        .replace(":8080", &format!(":{api}"))
        .replace(":8090", &format!(":{sandbox}"))
        .replace(":2525", &format!(":{smtp}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let mut child = tokio::process::Command::new("bash")
        .args([
            "-c",
            &format!("{script}\necho \"TOKEN=$PAYWATCH_API_TOKENS\"\n"),
        ])
        .current_dir(dir.path())
        .env_remove("REDIS_URL")
        .env_remove("PAYWATCH_PREFIX")
        .env_remove("PAYWATCH_SHARDS")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(Stdio::null())
        // Its own process group: what the commands leave running is killed with it.
        .process_group(0)
        .spawn()
        .expect("run the README's commands");
    let _group = Group(child.id().expect("pid") as i32);
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("the README's commands return")
        .expect("wait");
    let text = || std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        status.success(),
        "the README's commands failed: {status}\n{}",
        text()
    );
    let token = text()
        .lines()
        .find_map(|l| l.strip_prefix("TOKEN=").map(str::to_owned))
        .expect("the token the README made");

    let http = reqwest::Client::new();
    let order = |id: &'static str| {
        let http = http.clone();
        let token = token.clone();
        async move {
            let response = http
                .get(format!("http://127.0.0.1:{api}/v1/orders/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?;
            response.json::<Value>().await.ok()
        }
    };
    let paid = wait_for("shop-1042 to be paid", Duration::from_secs(60), || async {
        order("shop-1042").await.filter(|o| o["status"] == "paid")
    })
    .await;
    assert_eq!(paid["phase"], "final", "{paid}");
    let shop_1043 = order("shop-1043").await.expect("the redis-cli order");
    assert_eq!(shop_1043["payment_id"], "bill-8f2b", "{shop_1043}");
    let mail = wait_for(
        "the SMTP server to print the email",
        Duration::from_secs(60),
        || {
            let text = text();
            async move {
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|m| m["rcpt_tos"][0] == "buyer@example.com")
            }
        },
    )
    .await;
    assert!(
        mail["headers"]["subject"]
            .as_str()
            .is_some_and(|s| s.contains("shop-1042")),
        "{mail}"
    );
    wait_for(
        "the Telegram message at the sandbox",
        Duration::from_secs(60),
        || {
            let http = http.clone();
            async move {
                let messages: Value = http
                    .get(format!(
                        "http://127.0.0.1:{sandbox}/_admin/telegram/messages"
                    ))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                messages
                    .as_array()?
                    .iter()
                    .any(|m| m["chat_id"] == 123_456_789)
                    .then_some(())
            }
        },
    )
    .await;
}
