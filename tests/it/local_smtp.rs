//! `paywatch-demo smtp`, the sandbox's SMTP server on its own, as README and
//! docs/notifications.md tell a newcomer to run it for trying `notify-email` locally: a real
//! notify-email worker delivers a paid order's email to it, it prints the message as a JSON
//! line, and Ctrl-C (SIGINT) stops it cleanly.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use paywatch_tests::stack::Stack;
use paywatch_tests::{free_port, wait_for};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// `paywatch-demo`, as operators run it.
fn demo_binary() -> PathBuf {
    paywatch_tests::product_binaries().join("paywatch-demo")
}

#[tokio::test]
async fn the_sandbox_smtp_server_runs_alone_and_prints_what_a_notifier_sends() {
    let port = free_port();
    let mut smtp = tokio::process::Command::new(demo_binary())
        .args(["smtp", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn paywatch-demo smtp");
    let mut lines = BufReader::new(smtp.stdout.take().expect("stdout")).lines();
    wait_for(
        "the SMTP server to listen",
        Duration::from_secs(30),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;

    let stack = Stack::start("local-smtp").await;
    let mut args = stack.worker_args(0.01);
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    args.extend(
        [
            "--queues",
            "check-payment,notify-email",
            "--smtp-url",
            &smtp_url,
            "--email-from",
            "shop@example.com",
        ]
        .map(String::from),
    );
    let worker = stack.worker(&args).await;
    let bill = stack.bill_paid_after(100);
    let (code, _) = stack
        .submit(
            &json!({"order_id": "smtp-1", "provider": "cashless", "payment_id": bill,
                        "notify": {"email": "buyer@example.com"}}),
        )
        .await;
    assert_eq!(code, 202);
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the email arrives within a minute")
        .expect("read stdout")
        .expect("a line");
    let mail: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(mail["rcpt_tos"], json!(["buyer@example.com"]), "{mail}");
    assert_eq!(mail["mail_from"], "shop@example.com", "{mail}");
    assert!(
        mail["headers"]["subject"]
            .as_str()
            .is_some_and(|s| s.contains("smtp-1")),
        "{mail}"
    );
    worker.stop().await;
    stack.finish().await;

    let pid = smtp
        .id()
        .and_then(|id| Pid::from_raw(id as i32))
        .expect("pid");
    kill_process(pid, Signal::INT).expect("SIGINT");
    let status = tokio::time::timeout(Duration::from_secs(10), smtp.wait())
        .await
        .expect("Ctrl-C stops it")
        .expect("wait");
    assert!(status.success(), "{status}");
}
