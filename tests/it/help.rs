//! The test harness's worker binary (`pw-worker`, the real worker with fail points) prints no
//! secret from the environment in `--help`.

#[path = "../support/help_secrets.rs"]
mod help_secrets;

use help_secrets::assert_help_hides_secrets;

#[test]
fn failpoint_worker_help_shows_no_secret_env_value() {
    let text = assert_help_hides_secrets(env!("CARGO_BIN_EXE_pw-worker"), &[]);
    assert!(text.contains("visible-prefix-5150"), "{text}");
}
