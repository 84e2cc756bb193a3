//! A running worker's `Debug` output (the `App`, which holds the whole configuration, its Redis
//! connections and every channel's sender) shows none of its credentials, including the password
//! of a Redis that really requires one.

use clap::Parser;
use paywatch_tests::RedisServer;
use paywatch_worker::app::App;
use paywatch_worker::config::WorkerConfig;

const REDIS_PASSWORD: &str = "redis-pw-5f0c2a91";

#[tokio::test]
async fn a_built_worker_shows_no_secret_in_debug() {
    let redis = RedisServer::start_with_password(Some(REDIS_PASSWORD)).await;
    let secrets = [
        (
            "--smtp-url",
            "smtps://mailer:smtp-pw-61d3@mail.example:465",
            "smtp-pw-61d3",
        ),
        (
            "--telegram-bot-token",
            "123:tg-token-7a0e44",
            "tg-token-7a0e44",
        ),
        (
            "--webhook-secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("--cashless-api-key", "cl-key-19be", "cl-key-19be"),
        ("--cashless-api-secret", "cl-secret-44a0", "cl-secret-44a0"),
        ("--handcash-app-id", "hc-app-9c1d", "hc-app-9c1d"),
        ("--handcash-app-secret", "hc-secret-0b7f", "hc-secret-0b7f"),
        (
            "--miraclecash-client-id",
            "mc-client-5e2a",
            "mc-client-5e2a",
        ),
        ("--miraclecash-api-key", "mc-key-73c8", "mc-key-73c8"),
        ("--foxreload-api-key", "fr-key-2d96", "fr-key-2d96"),
    ];
    let url = redis.url();
    let mut args: Vec<&str> = vec![
        "paywatch-worker",
        "--redis-url",
        &url,
        "--queues",
        "check-payment,notify-email,notify-telegram,notify-webhook",
        "--email-from",
        "shop@example.com",
        "--cashless-base-url",
        "http://127.0.0.1:1/cashless",
        "--handcash-base-url",
        "http://127.0.0.1:1/handcash",
        "--miraclecash-base-url",
        "http://127.0.0.1:1/miraclecash",
        "--foxreload-base-url",
        "http://127.0.0.1:1/foxreload",
    ];
    for (flag, value, _) in &secrets {
        args.extend([*flag, *value]);
    }
    let config = WorkerConfig::try_parse_from(&args).expect("worker args");
    let app = App::build(config)
        .await
        .expect("the worker connects with the password");
    let text = format!("{app:?} {app:#?}");
    for needle in secrets
        .iter()
        .map(|(_, _, needle)| *needle)
        .chain([REDIS_PASSWORD])
    {
        assert!(!text.contains(needle), "{needle} in {text}");
    }
    assert!(text.contains("127.0.0.1"), "{text}");
}

/// A worker whose Redis refuses its password, is not there, or whose URL is broken says so (it
/// exits, or keeps retrying with a warning) without showing the password or any other
/// credential it was given.
#[tokio::test]
async fn a_worker_that_cannot_reach_redis_shows_no_secret() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let redis = RedisServer::start_with_password(Some(REDIS_PASSWORD)).await;
    let wrong = "wr0ng-redis-pw-77e1";
    let closed = paywatch_tests::free_port();
    for url in [
        format!("redis://:{wrong}@127.0.0.1:{}", redis.port()),
        format!("redis://:{wrong}@127.0.0.1:{closed}"),
        format!("redis://:{wrong}@127.0.0.1:notaport"),
    ] {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pw-worker"))
            .args([
                "--queues",
                "notify-telegram",
                "--sandbox-url",
                "http://127.0.0.1:1",
            ])
            .env("REDIS_URL", &url)
            .env("TELEGRAM_BOT_TOKEN", "123:tg-token-7a0e44")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run pw-worker");
        // Logs go to stdout or stderr depending on the subscriber; read both, one line at a time,
        // until the worker has said what is wrong (or exited), within a deadline.
        let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut err = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut text = String::new();
        let said_so = |text: &str| text.contains("unavailable") || text.contains("rror");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let (mut out_open, mut err_open) = (true, true);
        while (out_open || err_open) && !said_so(&text) {
            let line = tokio::select! {
                line = out.next_line(), if out_open => line.ok().flatten().or_else(|| { out_open = false; None }),
                line = err.next_line(), if err_open => line.ok().flatten().or_else(|| { err_open = false; None }),
                _ = tokio::time::sleep_until(deadline) => panic!("{url}: nothing said within 30 s: {text}"),
            };
            if let Some(line) = line {
                text.push_str(&line);
                text.push('\n');
            }
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
        assert!(said_so(&text), "{url}: exited without an error: {text}");
        for needle in [wrong, "tg-token-7a0e44"] {
            assert!(!text.contains(needle), "{needle} in: {text}");
        }
    }
}
