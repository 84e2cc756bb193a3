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
