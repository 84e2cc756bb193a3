//! deploy/ (Dockerfile, compose, Kubernetes, Prometheus, Grafana) checked by real validators
//! through scripts/check-deploy.sh: hadolint, the compose-spec schema, the Kubernetes schemas
//! (strict), KEDA's CRD schema, promtool, and paywatch's own rules (drain within the grace
//! period, KEDA on the due-now depth). The script installs the validators from PyPI, npm and
//! Debian on first use.
//!
//! Then every worker the compose file and the Kubernetes manifests start is started for real,
//! with the arguments and environment they give it (the Secret's values replaced by test
//! ones, as an operator would fill them in), and must come up healthy and ready.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use paywatch_producer::config::Cli;
use paywatch_tests::stack::WEBHOOK_SECRET;
use paywatch_tests::{cleanup, free_port, redis_url, unique_prefix, wait_for};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn check_deploy() {
    let out = Command::new(repo().join("scripts/check-deploy.sh"))
        .output()
        .expect("run scripts/check-deploy.sh");
    assert!(
        out.status.success(),
        "scripts/check-deploy.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deploy_files_pass_their_validators() {
    check_deploy();
}

#[tokio::test]
async fn every_worker_deploy_starts_comes_up_ready() {
    check_deploy(); // installs the venv the run list comes from
    let secrets = json!({
        "PAYWATCH_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TELEGRAM_BOT_TOKEN": "123456:test-token",
        "SMTP_URL": "smtp://127.0.0.1:2525",
        "PAYWATCH_EMAIL_FROM": "shop@example.com",
        "PAYWATCH_OPS_EMAIL": "ops@example.com",
        "PAYWATCH_API_TOKENS": paywatch_tests::stack::API_TOKEN,
    });
    let out = Command::new(repo().join(".paywatch/deploy-venv/bin/python"))
        .arg(repo().join("scripts/check_deploy_rules.py"))
        .args(["--runs", &secrets.to_string()])
        .output()
        .expect("list the deploy runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("runs JSON");
    let prefix = unique_prefix("deploy-runs");
    let mut workers = 0;
    for run in &runs {
        let source = run["source"].as_str().unwrap_or_default();
        let mut args: Vec<String> = run["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().unwrap_or_default().to_string())
            .collect();
        match args[0].as_str() {
            "paywatch-worker" => {}
            "paywatch-producer" => {
                // Its command line parses, and the API settings it gets from its environment
                // pass the checks `serve` makes before it starts (it exits without a token).
                let cli = <Cli as clap::Parser>::try_parse_from(&args)
                    .unwrap_or_else(|e| panic!("{source}: {e}"));
                if let paywatch_producer::config::Command::Serve(mut serve) = cli.command {
                    let env = &run["env"];
                    serve.api_tokens = env["PAYWATCH_API_TOKENS"]
                        .as_str()
                        .unwrap_or_default()
                        .split(',')
                        .map(String::from)
                        .collect();
                    serve.events_secret = env["PAYWATCH_EVENTS_SECRET"].as_str().map(String::from);
                    if let Err(e) = serve.api() {
                        panic!("{source}: {e}");
                    }
                }
                continue;
            }
            _ => continue,
        }
        workers += 1;
        args.remove(0);
        let port = free_port();
        for a in args.iter_mut() {
            if a.ends_with(":9464") {
                *a = format!("127.0.0.1:{port}");
            }
        }
        let mut env: Vec<(String, String)> = run["env"]
            .as_object()
            .expect("env")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        env.push(("REDIS_URL".into(), redis_url()));
        env.push(("PAYWATCH_PREFIX".into(), prefix.clone()));
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_pw-worker"))
            .args(&args)
            .env_clear()
            .envs(env)
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("spawn pw-worker");
        let ready = wait_for(
            &format!("{source} to answer /readyz"),
            Duration::from_secs(20),
            || {
                let exited = child.try_wait().ok().flatten();
                async move {
                    if let Some(status) = exited {
                        return Some(Err(status));
                    }
                    let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
                        .await
                        .ok()?;
                    (r.status().as_u16() == 200).then_some(Ok(()))
                }
            },
        )
        .await;
        let _ = child.kill();
        let _ = child.wait();
        if let Err(status) = ready {
            panic!(
                "{source} exited ({status}) instead of starting:\n{}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
    }
    assert_eq!(workers, 4, "compose and k8s each start two worker pools");
    cleanup(&redis_url(), &prefix).await;
}
