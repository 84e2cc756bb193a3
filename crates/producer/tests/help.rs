//! `paywatch-producer --help` (and its commands' help) prints no secret from the environment.

#[path = "../../../tests/support/help_secrets.rs"]
mod help_secrets;

use help_secrets::assert_help_hides_secrets;

#[test]
fn producer_help_shows_no_secret_env_value() {
    let bin = env!("CARGO_BIN_EXE_paywatch-producer");
    let text = assert_help_hides_secrets(bin, &[]);
    // Control: clap does print environment values, so their absence above means something.
    assert!(text.contains("visible-prefix-5150"), "{text}");
    assert!(text.contains("REDIS_URL"), "{text}");
    let serve = assert_help_hides_secrets(bin, &["serve"]);
    assert!(serve.contains("HANDCASH_APP_SECRET"), "{serve}");
    assert_help_hides_secrets(bin, &["enqueue"]);
}
