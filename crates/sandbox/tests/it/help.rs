//! `paywatch-sandbox --help` and `paywatch-demo run --help` print no secret from the environment.

#[path = "../../../../tests/support/help_secrets.rs"]
mod help_secrets;

use help_secrets::assert_help_hides_secrets;

#[test]
fn sandbox_and_demo_help_show_no_secret_env_value() {
    let text = assert_help_hides_secrets(env!("CARGO_BIN_EXE_paywatch-sandbox"), &[]);
    assert!(text.contains("SANDBOX_CASHLESS_API_KEY"), "{text}");
    let demo = assert_help_hides_secrets(env!("CARGO_BIN_EXE_paywatch-demo"), &["run"]);
    assert!(demo.contains("PAYWATCH_WEBHOOK_SECRET"), "{demo}");
}
