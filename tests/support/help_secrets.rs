//! Shared by every crate's `tests/help.rs` (included with `#[path]`, so the list of secret
//! variables lives in one place): run a binary's `--help` with every secret variable set and
//! assert none of the values is printed.

/// Secret environment variables of every paywatch binary, each with a recognizable value.
const SECRET_ENV: &[(&str, &str)] = &[
    (
        "REDIS_URL",
        "redis://default:env-redis-pw-8106@127.0.0.1:6379",
    ),
    ("SMTP_URL", "smtps://mailer:env-smtp-pw-7215@mail.example"),
    ("TELEGRAM_BOT_TOKEN", "123:env-tg-token-6324"),
    (
        "PAYWATCH_WEBHOOK_SECRET",
        "whsec_ZW52LXdlYmhvb2stc2VjcmV0LTU0MzM=",
    ),
    (
        "PAYWATCH_WEBHOOK_EXTRA_SECRETS",
        "whsec_ZW52LWV4dHJhLXNlY3JldC00NTQy",
    ),
    ("CASHLESS_API_KEY", "env-cl-key-3651"),
    ("CASHLESS_API_SECRET", "env-cl-secret-2760"),
    ("HANDCASH_APP_ID", "env-hc-app-1879"),
    ("HANDCASH_APP_SECRET", "env-hc-secret-0988"),
    ("MIRACLECASH_CLIENT_ID", "env-mc-client-9097"),
    ("MIRACLECASH_API_KEY", "env-mc-key-8106"),
    ("FOXRELOAD_API_KEY", "env-fr-key-7215"),
    ("SANDBOX_CASHLESS_API_KEY", "env-sb-cl-key-6324"),
    ("SANDBOX_CASHLESS_API_SECRET", "env-sb-cl-secret-5433"),
    ("SANDBOX_HANDCASH_APP_ID", "env-sb-hc-app-4542"),
    ("SANDBOX_HANDCASH_APP_SECRET", "env-sb-hc-secret-3651"),
    ("SANDBOX_MIRACLECASH_CLIENT_ID", "env-sb-mc-client-2760"),
    ("SANDBOX_MIRACLECASH_API_KEY", "env-sb-mc-key-1879"),
    ("SANDBOX_FOXRELOAD_API_KEY", "env-sb-fr-key-0988"),
    ("SANDBOX_TELEGRAM_BOT_TOKEN", "123:env-sb-tg-token-9097"),
];

/// The distinctive part of each value (what must not appear): no URL scheme, host or port.
fn needles() -> Vec<&'static str> {
    SECRET_ENV
        .iter()
        .map(|(_, value)| {
            let value = value.split('@').next().unwrap_or(value);
            value.rsplit([':', '_']).next().unwrap_or(value)
        })
        .collect()
}

/// Runs `bin ARGS --help` with every secret variable set (and `PAYWATCH_PREFIX`, which is not
/// secret, as a control) and asserts that no secret value is printed. Returns the help text.
pub fn assert_help_hides_secrets(bin: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(bin)
        .args(args)
        .arg("--help")
        .envs(SECRET_ENV.iter().copied())
        .env("PAYWATCH_PREFIX", "visible-prefix-5150")
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    assert!(output.status.success(), "{bin} {args:?} --help failed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for needle in needles() {
        assert!(
            !text.contains(needle),
            "{bin} {args:?} --help shows {needle}:\n{text}"
        );
    }
    text
}
