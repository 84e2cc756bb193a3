//! Every documented setting of every binary, set to a value that cannot work: the real binary,
//! run as an operator runs it (its flags, only the environment given), exits non-zero, its
//! error names the variable, a secret's value is not repeated, and it wrote nothing to Redis —
//! no key and no function library (checked on a private `redis-server` after each run).
//!
//! The base settings of each row are valid: the same runs without the bad value start (or, for
//! one-shot commands, succeed), which the control test checks.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use paywatch_tests::{RedisServer, cleanup, product_binaries, redis_url, unique_prefix, wait_for};

/// An API token long enough for the producer.
const TOKEN: &str = "cfg-errors-api-token-0123456789";
/// A valid webhook signing secret.
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How long a run may take to refuse its settings (a debug build starting on a shared machine).
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// Variables whose values are secrets: never repeated in an error.
const SECRETS: &[&str] = &[
    "REDIS_URL",
    "PAYWATCH_API_TOKENS",
    "PAYWATCH_EVENTS_SECRET",
    "HANDCASH_APP_SECRET",
    "SMTP_URL",
    "TELEGRAM_BOT_TOKEN",
    "PAYWATCH_WEBHOOK_SECRET",
    "PAYWATCH_WEBHOOK_EXTRA_SECRETS",
    "CASHLESS_API_KEY",
    "CASHLESS_API_SECRET",
    "HANDCASH_APP_ID",
    "MIRACLECASH_CLIENT_ID",
    "MIRACLECASH_API_KEY",
    "FOXRELOAD_API_KEY",
];

/// Where the binaries are: `PAYWATCH_TEST_BINARIES` when set (to hold another build to the same
/// tests, such as a release or an older commit), else the ones cargo builds from this tree.
fn binaries() -> PathBuf {
    product_binaries()
}

/// One way an operator runs a binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// `paywatch-producer serve`.
    Serve,
    /// `paywatch-producer enqueue …`.
    Enqueue,
    /// `paywatch-producer admin stats`.
    Admin,
    /// `paywatch-worker` serving every queue, with every channel, ops destination and provider
    /// configured.
    Worker,
    /// `paywatch-sandbox`.
    Sandbox,
}

impl Run {
    const ALL: [Run; 5] = [
        Run::Serve,
        Run::Enqueue,
        Run::Admin,
        Run::Worker,
        Run::Sandbox,
    ];

    fn binary(self) -> PathBuf {
        binaries().join(match self {
            Run::Serve | Run::Enqueue | Run::Admin => "paywatch-producer",
            Run::Worker => "paywatch-worker",
            Run::Sandbox => "paywatch-sandbox",
        })
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Run::Serve => &["serve"],
            Run::Enqueue => &[
                "enqueue",
                "--order-id",
                "cfg-1",
                "--provider",
                "cashless",
                "--payment-id",
                "p-1",
            ],
            Run::Admin => &["admin", "stats"],
            Run::Worker | Run::Sandbox => &[],
        }
    }

    /// The run's valid settings (Redis and prefix come separately).
    fn env(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Run::Serve => vec![
                ("PAYWATCH_API_TOKENS", TOKEN),
                ("PAYWATCH_PRODUCER_LISTEN", "127.0.0.1:0"),
                (
                    "PAYWATCH_EVENTS_SECRET",
                    "cfg-errors-events-secret-0123456789",
                ),
                ("HANDCASH_APP_SECRET", "cfg-errors-handcash-secret"),
            ],
            Run::Enqueue | Run::Admin => vec![],
            Run::Worker => vec![
                (
                    "PAYWATCH_QUEUES",
                    "check-payment,notify-email,notify-telegram,notify-webhook,notify-ops",
                ),
                ("SMTP_URL", "smtp://127.0.0.1:9"),
                ("PAYWATCH_EMAIL_FROM", "shop@example.com"),
                ("TELEGRAM_BOT_TOKEN", "123456:cfg-errors-token"),
                ("TELEGRAM_API_BASE", "http://127.0.0.1:9/telegram"),
                ("PAYWATCH_WEBHOOK_SECRET", WEBHOOK_SECRET),
                ("PAYWATCH_OPS_EMAIL", "ops@example.com"),
                ("PAYWATCH_OPS_TELEGRAM_CHAT_ID", "-100123"),
                (
                    "PAYWATCH_OPS_WEBHOOK_URL",
                    "https://ops.example/hooks/paywatch",
                ),
                ("CASHLESS_BASE_URL", "http://127.0.0.1:9/cashless"),
                ("CASHLESS_API_KEY", "cfg-cl-key"),
                ("CASHLESS_API_SECRET", "cfg-cl-secret"),
                ("HANDCASH_BASE_URL", "http://127.0.0.1:9/handcash"),
                ("HANDCASH_APP_ID", "cfg-hc-app"),
                ("HANDCASH_APP_SECRET", "cfg-hc-secret"),
                ("MIRACLECASH_BASE_URL", "http://127.0.0.1:9/miraclecash"),
                ("MIRACLECASH_CLIENT_ID", "cfg-mc-client"),
                ("MIRACLECASH_API_KEY", "cfg-mc-key"),
                ("FOXRELOAD_BASE_URL", "http://127.0.0.1:9/foxreload"),
                ("FOXRELOAD_API_KEY", "cfg-fr-key"),
            ],
            Run::Sandbox => vec![("SANDBOX_LISTEN", "127.0.0.1:0")],
        }
    }

    /// What a server logs once it serves; one-shot commands exit 0 instead.
    fn ready(self) -> Option<&'static str> {
        match self {
            Run::Serve => Some("producer API listening"),
            Run::Worker => Some("worker started"),
            Run::Sandbox => Some("paywatch sandbox ready"),
            Run::Enqueue | Run::Admin => None,
        }
    }

    fn uses_redis(self) -> bool {
        self != Run::Sandbox
    }
}

/// One bad setting: a run, the variables changed (`None`: unset), and the variable the error
/// must name.
struct Row {
    run: Run,
    env: Vec<(&'static str, Option<&'static str>)>,
    variable: &'static str,
}

/// `variable=value` on `run`.
fn bad(run: Run, variable: &'static str, value: &'static str) -> Row {
    Row {
        run,
        env: vec![(variable, Some(value))],
        variable,
    }
}

/// Several changes on `run`; the error names `variable`.
fn bad_with(run: Run, env: &[(&'static str, Option<&'static str>)], variable: &'static str) -> Row {
    Row {
        run,
        env: env.to_vec(),
        variable,
    }
}

fn rows() -> Vec<Row> {
    use Run::*;
    let mut rows = Vec::new();
    // The shared settings, on every run that reads them.
    for run in [Serve, Enqueue, Admin, Worker] {
        rows.extend([
            bad(
                run,
                "REDIS_URL",
                "http://default:cfg-redis-pw-5521@127.0.0.1:6379",
            ),
            bad(run, "REDIS_URL", ""),
            bad(run, "PAYWATCH_PREFIX", ""),
            bad(run, "PAYWATCH_SHARDS", "0"),
            bad(run, "PAYWATCH_SHARDS", "many"),
        ]);
    }
    // Provider definition files: every binary reads them before anything else.
    for run in [Serve, Enqueue, Admin, Worker, Sandbox] {
        rows.push(bad(run, "PAYWATCH_PROVIDERS_DIR", "/nonexistent/providers"));
    }
    for run in Run::ALL {
        rows.extend([
            bad(run, "RUST_LOG", "paywatch=loud"),
            bad(run, "LOG_FORMAT", "xml"),
        ]);
    }
    // Durable acknowledgements: serve, enqueue and the worker.
    for run in [Serve, Enqueue, Worker] {
        rows.extend([
            bad(run, "PAYWATCH_DURABLE_REPLICAS", "-1"),
            bad(run, "PAYWATCH_DURABLE_FSYNC", "maybe"),
            bad(run, "PAYWATCH_DURABLE_TIMEOUT", "banana"),
        ]);
    }
    // paywatch-producer serve.
    rows.extend([
        bad(Serve, "PAYWATCH_PRODUCER_LISTEN", "nowhere"),
        bad(Serve, "PAYWATCH_PRODUCER_METRICS_LISTEN", "nowhere"),
        bad(Serve, "PAYWATCH_API_TOKENS", "short"),
        bad(Serve, "PAYWATCH_API_TOKENS", ""),
        bad_with(
            Serve,
            &[("PAYWATCH_API_TOKENS", None)],
            "PAYWATCH_API_TOKENS",
        ),
        bad(Serve, "PAYWATCH_EVENTS_SECRET", ""),
        bad(Serve, "PAYWATCH_EVENTS_SECRET", "cfg-short"),
        bad(Serve, "PAYWATCH_EVENTS_LINK_TTL", "banana"),
        bad(Serve, "PAYWATCH_EVENTS_LINK_TTL", "0s"),
        bad(Serve, "PAYWATCH_EVENTS_STREAMS_PER_ORDER", "0"),
        bad(Serve, "PAYWATCH_WEBHOOK_MIN_GAP", "soon"),
        bad(Serve, "HANDCASH_APP_SECRET", ""),
    ]);
    // paywatch-worker.
    rows.extend([
        bad(Worker, "PAYWATCH_QUEUES", "check-payment,bogus"),
        bad(Worker, "PAYWATCH_CHECK_SHARDS", "x"),
        bad(Worker, "PAYWATCH_CHECK_SHARDS", "3"),
        bad(Worker, "PAYWATCH_CONCURRENCY", "0"),
        bad(Worker, "PAYWATCH_CONCURRENCY", "lots"),
        bad(Worker, "PAYWATCH_THREADS", "0"),
        bad(Worker, "PAYWATCH_WORKER_NAME", ""),
        bad(Worker, "PAYWATCH_LEASE", "banana"),
        bad(Worker, "PAYWATCH_LEASE", "10ms"),
        bad(Worker, "PAYWATCH_GRACE_PERIOD", "banana"),
        bad(Worker, "PAYWATCH_METRICS_LISTEN", "nowhere"),
        bad(Worker, "PAYWATCH_TIME_SCALE", "0"),
        bad(Worker, "PAYWATCH_POLICIES", "{nope"),
        bad(Worker, "PAYWATCH_POLICIES", r#"{"paypal":{"first_delay":"1s"}}"#),
        bad(
            Worker,
            "PAYWATCH_POLICIES",
            r#"{"cashless":{"first_delay":"1s","multiplier":1.5,"max_delay":"30s","fast_window":"10m","dedline":"1h"}}"#,
        ),
        bad(Worker, "PAYWATCH_POLL_MODE", "sometimes"),
        bad(Worker, "PAYWATCH_POLL_BUDGET", "lots"),
        bad(Worker, "PAYWATCH_POLL_MIN_SAMPLES", "-1"),
        bad(Worker, "PAYWATCH_POLL_REFRESH", "banana"),
        bad(Worker, "PAYWATCH_POLL_MAX_INTERVAL", "10ms"),
        bad(Worker, "PAYWATCH_SANDBOX_URL", "not a url"),
        bad(Worker, "PAYWATCH_SANDBOX_URL", "mailto:sandbox@example.com"),
        bad(Worker, "PAYWATCH_RATE_LIMITS", r#"{"paypal":"1/s"}"#),
        bad(Worker, "PAYWATCH_RATE_YOUNG_SHARE", "2"),
        bad(Worker, "PAYWATCH_BREAKER_FAILURES", "-1"),
        bad(Worker, "PAYWATCH_BREAKER_PAUSE", "1ms"),
        bad(Worker, "PAYWATCH_BREAKER_MAX_PAUSE", "1s"),
    ]);
    // Providers: base URLs and credentials.
    rows.extend([
        bad(Worker, "CASHLESS_BASE_URL", "ftp://127.0.0.1/cashless"),
        bad(Worker, "CASHLESS_BASE_URL", "nowhere"),
        bad(Worker, "CASHLESS_API_KEY", ""),
        bad(Worker, "CASHLESS_API_KEY", "bad\u{1}key"),
        bad(Worker, "CASHLESS_API_SECRET", ""),
        bad(Worker, "HANDCASH_BASE_URL", "ftp://127.0.0.1/handcash"),
        bad(Worker, "HANDCASH_APP_ID", ""),
        bad(Worker, "HANDCASH_APP_SECRET", ""),
        bad(Worker, "MIRACLECASH_BASE_URL", "mailto:x@example.com"),
        bad(Worker, "MIRACLECASH_CLIENT_ID", ""),
        bad(Worker, "MIRACLECASH_API_KEY", ""),
        bad(Worker, "FOXRELOAD_BASE_URL", "ftp://127.0.0.1/foxreload"),
        bad(Worker, "FOXRELOAD_API_KEY", ""),
        bad_with(Worker, &[("FOXRELOAD_API_KEY", None)], "FOXRELOAD_API_KEY"),
    ]);
    // Notification channels. The worker serves notify-webhook, so a run that went on to
    // publish would leave its allow-list behind.
    rows.extend([
        bad(Worker, "SMTP_URL", "ftp://127.0.0.1:25"),
        bad(Worker, "SMTP_URL", "smtp://mailer:cfg-smtp-pw-7781@"),
        bad(Worker, "SMTP_URL", ""),
        bad_with(Worker, &[("SMTP_URL", None)], "SMTP_URL"),
        bad(Worker, "PAYWATCH_EMAIL_FROM", "not an address"),
        bad(Worker, "PAYWATCH_EMAIL_REPLY_TO", "not an address"),
        bad(Worker, "TELEGRAM_BOT_TOKEN", "no-colon-cfg-token"),
        bad(Worker, "TELEGRAM_BOT_TOKEN", ""),
        bad(Worker, "TELEGRAM_API_BASE", "ftp://127.0.0.1/telegram"),
        bad(Worker, "PAYWATCH_TELEGRAM_CHAT_INTERVAL", "0ms"),
        bad(Worker, "PAYWATCH_TELEGRAM_PER_SECOND", "0"),
        bad(Worker, "PAYWATCH_WEBHOOK_SECRET", "cfg-not-whsec"),
        bad(Worker, "PAYWATCH_WEBHOOK_SECRET", ""),
        bad(Worker, "PAYWATCH_WEBHOOK_EXTRA_SECRETS", "whsec_c2hvcnQ="),
        bad(Worker, "PAYWATCH_WEBHOOK_EXTRA_SECRETS", ""),
        bad(
            Worker,
            "PAYWATCH_WEBHOOK_ALLOW_HOSTS",
            "http://hooks.internal",
        ),
        bad(Worker, "PAYWATCH_WEBHOOK_SCHEDULE_SCALE", "-1"),
        bad(
            Worker,
            "PAYWATCH_OPS_EMAIL",
            "ops@example.com,cto@example.com",
        ),
        bad(Worker, "PAYWATCH_OPS_TELEGRAM_CHAT_ID", "0"),
        bad(Worker, "PAYWATCH_OPS_TELEGRAM_CHAT_ID", "general"),
        bad(Worker, "PAYWATCH_OPS_WEBHOOK_URL", "ftp://ops.example/hook"),
        bad(
            Worker,
            "PAYWATCH_OPS_WEBHOOK_URL",
            "https://ops:cfg-ops-pw@ops.example/hook",
        ),
        bad(Worker, "PAYWATCH_OPS_WEBHOOK_URL", "http://10.0.0.1/hook"),
        bad(Worker, "PAYWATCH_OPS_INTERVAL", "100ms"),
    ]);
    // paywatch-sandbox.
    rows.extend([
        bad(Sandbox, "SANDBOX_LISTEN", "nowhere"),
        bad(Sandbox, "SANDBOX_WEBHOOK_TARGET", "ftp://127.0.0.1/"),
        bad(Sandbox, "SANDBOX_WEBHOOK_TARGET", "nowhere"),
        bad(Sandbox, "SANDBOX_TIME_SCALE", "0"),
        bad(Sandbox, "SANDBOX_TIME_SCALE", "fast"),
        bad(Sandbox, "SANDBOX_RATE_LIMIT", "lots"),
    ]);
    for variable in [
        "SANDBOX_CASHLESS_API_KEY",
        "SANDBOX_CASHLESS_API_SECRET",
        "SANDBOX_HANDCASH_APP_ID",
        "SANDBOX_HANDCASH_APP_SECRET",
        "SANDBOX_MIRACLECASH_CLIENT_ID",
        "SANDBOX_MIRACLECASH_API_KEY",
        "SANDBOX_FOXRELOAD_API_KEY",
        "SANDBOX_TELEGRAM_BOT_TOKEN",
    ] {
        rows.push(bad(Sandbox, variable, ""));
    }
    rows
}

/// How a run ended.
#[derive(Debug)]
enum Ended {
    /// Exited with this status code (`None`: killed by a signal).
    Exited(Option<i32>),
    /// Logged that it serves.
    Serving,
    /// Neither, by the deadline.
    Running,
}

/// Runs `run` with its base settings, `changes`, `REDIS_URL=redis` and `PAYWATCH_PREFIX=prefix`
/// (unless `changes` sets them) and nothing else; returns how it ended and what it printed. A
/// server that starts serving is stopped.
async fn launch(
    run: Run,
    changes: &[(&'static str, Option<&'static str>)],
    redis: &str,
    prefix: &str,
) -> (Ended, String) {
    let mut env: Vec<(String, String)> = vec![
        ("REDIS_URL".into(), redis.into()),
        ("PAYWATCH_PREFIX".into(), prefix.into()),
    ];
    env.extend(run.env().into_iter().map(|(k, v)| (k.into(), v.into())));
    for (name, value) in changes {
        env.retain(|(k, _)| k != name);
        if let Some(value) = value {
            env.push(((*name).into(), (*value).into()));
        }
    }
    // Both streams into one file, appending (some builds log to stdout).
    let log = tempfile::NamedTempFile::new().expect("log file");
    let append = || {
        std::fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .expect("open the log to append")
    };
    let mut child = std::process::Command::new(run.binary())
        .args(run.args())
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(append())
        .stderr(append())
        .spawn()
        .expect("start the binary");
    let path = log.path().to_owned();
    let what = format!("{run:?} with {changes:?} to exit or serve");
    let waiting = wait_for(&what, EXIT_DEADLINE * 2, || {
        let exited = child.try_wait().ok().flatten();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        async move {
            if let Some(status) = exited {
                return Some(Ended::Exited(status.code()));
            }
            run.ready()
                .filter(|marker| text.contains(marker))
                .map(|_| Ended::Serving)
        }
    });
    // A run still going at the deadline (waiting on something) is a row's failure, not the
    // table's: it is reported with the others.
    let ended = tokio::time::timeout(EXIT_DEADLINE, waiting)
        .await
        .unwrap_or(Ended::Running);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    (ended, text)
}

/// What a private Redis holds: its keys and function libraries, as text (empty when nothing).
async fn contents(url: &str) -> String {
    let client = redis::Client::open(url).expect("private redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the private redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    let libraries: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .expect("FUNCTION LIST");
    if keys.is_empty() && libraries.is_empty() {
        String::new()
    } else {
        format!("keys {keys:?}, {} function libraries", libraries.len())
    }
}

#[tokio::test]
async fn every_bad_setting_is_refused_by_name_before_anything_is_written() {
    let redis = RedisServer::start().await;
    let rows = rows();
    let mut failures = Vec::new();
    for row in &rows {
        let (ended, stderr) = launch(row.run, &row.env, &redis.url(), "cfg").await;
        let what = format!("{:?} with {:?}", row.run, row.env);
        match ended {
            Ended::Exited(Some(code)) if code != 0 => {}
            other => failures.push(format!("{what}: {other:?}, not a refusal:\n{stderr}")),
        }
        if !stderr.contains(row.variable) {
            failures.push(format!(
                "{what}: the error does not name {}:\n{stderr}",
                row.variable
            ));
        }
        for (name, value) in &row.env {
            if let Some(value) = value
                && SECRETS.contains(name)
                && let Some(secret) = value.split([':', '@', '/']).find(|p| p.contains("cfg-"))
                && stderr.contains(secret)
            {
                failures.push(format!("{what}: the error repeats the secret:\n{stderr}"));
            }
        }
        if row.run.uses_redis() {
            let left = contents(&redis.url()).await;
            if !left.is_empty() {
                failures.push(format!("{what}: wrote to Redis before refusing: {left}"));
                let client = redis::Client::open(redis.url()).expect("url");
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connect");
                let _: () = redis::cmd("FLUSHALL")
                    .query_async(&mut conn)
                    .await
                    .expect("FLUSHALL");
                let _: () = redis::cmd("FUNCTION")
                    .arg("FLUSH")
                    .query_async(&mut conn)
                    .await
                    .expect("FUNCTION FLUSH");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}

/// The table covers every variable docs/configuration.md documents: a setting added to the docs
/// without a row here fails this test.
#[test]
fn the_table_covers_every_documented_variable() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .expect("read docs/configuration.md");
    // A variable: `NAME_WITH_UNDERSCORES` in backticks (Redis commands such as `WAIT` have none).
    let documented: std::collections::BTreeSet<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| {
            t.contains('_')
                && t.starts_with(|c: char| c.is_ascii_uppercase())
                && t.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    let tested: std::collections::BTreeSet<&str> = rows().iter().map(|r| r.variable).collect();
    let missing: Vec<_> = documented.difference(&tested).collect();
    assert!(
        missing.is_empty(),
        "documented but not in the table: {missing:?}"
    );
    assert!(documented.len() > 60, "read {} variables", documented.len());
}

/// The rows' base settings are good: each run starts (servers) or succeeds (one-shot commands),
/// so every refusal above is the bad value's doing.
#[tokio::test]
async fn the_base_settings_start() {
    let url = redis_url();
    let prefix = unique_prefix("config-errors");
    for run in Run::ALL {
        let (ended, stderr) = launch(run, &[], &url, &prefix).await;
        let started = matches!(
            (run.ready(), &ended),
            (Some(_), Ended::Serving) | (None, Ended::Exited(Some(0)))
        );
        assert!(started, "{run:?} did not start: {ended:?}\n{stderr}");
        if run == Run::Worker {
            // Named after the system's host name, though (as from a shell) no HOSTNAME is set.
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host name");
            let name = format!("{}-", host.trim());
            assert!(stderr.contains(&name), "no {name}<pid> in:\n{stderr}");
        }
    }
    cleanup(&url, &prefix).await;
}

/// Each binary's `--help` opens with what it is for, in an operator's words: its own name and
/// no developer notes (rustdoc links, `Debug`).
#[test]
fn help_opens_with_what_the_binary_does() {
    for name in [
        "paywatch-producer",
        "paywatch-worker",
        "paywatch-sandbox",
        "paywatch-demo",
    ] {
        let output = std::process::Command::new(binaries().join(name))
            .arg("--help")
            .env_clear()
            .output()
            .expect("run --help");
        assert!(output.status.success(), "{name} --help failed");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.starts_with(&format!("{name}: ")), "{name}:\n{text}");
        for note in ["[`", "`Debug`", "derive"] {
            assert!(
                !text.contains(note),
                "{name} --help shows {note:?}:\n{text}"
            );
        }
    }
}
