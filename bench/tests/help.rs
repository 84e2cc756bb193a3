//! `paywatch-bench --help` prints no secret from the environment (REDIS_URL may carry one).

#[path = "../../tests/support/help_secrets.rs"]
mod help_secrets;

use help_secrets::assert_help_hides_secrets;

#[test]
fn bench_help_shows_no_secret_env_value() {
    let bin = env!("CARGO_BIN_EXE_paywatch-bench");
    let text = assert_help_hides_secrets(bin, &[]);
    assert!(text.contains("REDIS_URL"), "{text}");
    assert_help_hides_secrets(bin, &["compare"]);
}
