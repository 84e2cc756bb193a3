//! `paywatch-worker --help` prints no secret taken from the environment.

#[path = "../../../tests/support/help_secrets.rs"]
mod help_secrets;

use help_secrets::assert_help_hides_secrets;

#[test]
fn worker_help_shows_no_secret_env_value() {
    let text = assert_help_hides_secrets(env!("CARGO_BIN_EXE_paywatch-worker"), &[]);
    // Control: clap does print environment values, so their absence above means something.
    assert!(text.contains("visible-prefix-5150"), "{text}");
    assert!(
        text.contains("REDIS_URL") && text.contains("CASHLESS_API_KEY"),
        "{text}"
    );
}
