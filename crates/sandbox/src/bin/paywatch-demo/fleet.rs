//! The processes `paywatch-demo` starts (the demo's and the foreground stack's): a Redis when none
//! answers, the binaries cargo builds, each process's log, and an orderly stop — SIGTERM to all
//! (workers drain and hand back their leases), the keys of the run deleted, Redis last.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::{Child, Command};

/// How long a process gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A demo-only webhook signing key (the Standard Webhooks spec's example key).
pub const DEMO_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Demo-speed polling: 0.5 s first delay ×1.5 up to 2 s; HandCash gives up after 12 s.
pub const POLICIES: &str = concat!(
    r#"{"cashless":{"first_delay":"500ms","multiplier":1.5,"max_delay":"2s","fast_window":"30s","grace_interval":"2s","deadline":"45s","not_found_retries":3},"#,
    r#""handcash":{"first_delay":"500ms","multiplier":1.5,"max_delay":"2s","fast_window":"30s","grace_interval":"2s","deadline":"12s"},"#,
    r#""miraclecash":{"first_delay":"500ms","multiplier":1.5,"max_delay":"2s","fast_window":"30s","grace_interval":"2s","deadline":"45s","not_found_retries":3},"#,
    r#""foxreload":{"first_delay":"500ms","multiplier":1.5,"max_delay":"2s","fast_window":"30s","grace_interval":"2s","deadline":"45s","not_found_retries":3}}"#
);

/// A new API token for one run: the API never runs without one.
pub fn fresh_token(label: &str) -> String {
    format!(
        "{label}-{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Everything a run started.
#[derive(Default)]
pub struct Fleet {
    children: Vec<(String, Child)>,
    /// The Redis and key prefix to clean up.
    pub cleanup: Option<(String, String)>,
}

impl Fleet {
    /// The Redis to use: `REDIS_URL` (default local port) when it answers, else a private one.
    pub async fn redis(&mut self, logs: &Path) -> anyhow::Result<String> {
        let wanted =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let url = reqwest::Url::parse(&wanted).context("REDIS_URL is not a URL")?;
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = url.port().unwrap_or(6379);
        if answers(&host, port) {
            return Ok(wanted);
        }
        let [own] = free_ports::<1>()?;
        let dir = logs.join("redis");
        std::fs::create_dir_all(&dir)?;
        println!(
            "demo: no Redis answers at {host}:{port}; starting redis-server on 127.0.0.1:{own}"
        );
        let child = Command::new("redis-server")
            .args(["--port", &own.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context(
                "no Redis answers at REDIS_URL and redis-server could not start: install it \
                 (Debian: apt-get install redis-server) or set REDIS_URL",
            )?;
        self.children.push((REDIS_CHILD.to_owned(), child));
        let started = Instant::now();
        while !answers("127.0.0.1", own) {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("redis-server on port {own} did not answer within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(format!("redis://127.0.0.1:{own}"))
    }

    /// Starts `bin` with `args`, its output in `logs/<name>.log`.
    pub fn spawn(
        &mut self,
        logs: &Path,
        name: &str,
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a terminal's ctrl-c reaches paywatch-demo alone, which then
            // stops everything in order (see `stop`).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    /// Starts a check worker (`worker` is `paywatch-worker`) named `name`, polling the sandbox at
    /// demo speed and serving metrics on `metrics_port`.
    pub fn spawn_checker(
        &mut self,
        logs: &Path,
        worker: &Path,
        name: &str,
        sandbox: &str,
        metrics_port: u16,
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let metrics = format!("127.0.0.1:{metrics_port}");
        let args = [
            "--name",
            name,
            "--sandbox-url",
            sandbox,
            "--policies",
            POLICIES,
            "--queues",
            "check-payment",
            "--metrics-listen",
            &metrics,
        ];
        self.spawn(logs, name, worker, &args, env)
    }

    /// Starts a notifier serving every channel: email to the SMTP server on `smtp_port`,
    /// Telegram to the sandbox, webhooks signed with [`DEMO_SECRET`] to loopback, the ops digest
    /// to chat 42; `extra` adds arguments (`--name` is `name`).
    pub fn spawn_notifier(
        &mut self,
        logs: &Path,
        worker: &Path,
        (name, sandbox): (&str, &str),
        smtp_port: u16,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> anyhow::Result<()> {
        let smtp = format!("smtp://127.0.0.1:{smtp_port}");
        let mut args = vec![
            "--name",
            name,
            "--sandbox-url",
            sandbox,
            "--queues",
            "notify-email,notify-telegram,notify-webhook,notify-ops",
            "--smtp-url",
            &smtp,
            "--webhook-allow-hosts",
            "127.0.0.1",
            "--ops-telegram-chat-id",
            "42",
        ];
        args.extend_from_slice(extra);
        let mut env = env.to_vec();
        env.push(("PAYWATCH_WEBHOOK_SECRET", DEMO_SECRET));
        self.spawn(logs, name, worker, &args, &env)
    }

    /// The processes still running, by name; the name of the first that exited, if any.
    pub fn exited(&mut self) -> Option<String> {
        self.children
            .iter_mut()
            .find_map(|(name, child)| (!matches!(child.try_wait(), Ok(None))).then(|| name.clone()))
    }

    /// Stops everything in order: SIGTERM to every process but Redis at once (workers drain and
    /// hand back their leases; a process still running after [`STOP_GRACE`] is killed), then
    /// the run's keys are deleted, then Redis (if this run started it) is stopped.
    pub async fn stop(&mut self) {
        let (redis, others): (Vec<_>, Vec<_>) = self
            .children
            .drain(..)
            .partition(|(name, _)| name == REDIS_CHILD);
        for (_, child) in &others {
            terminate(child);
        }
        for (name, mut child) in others {
            if tokio::time::timeout(STOP_GRACE, child.wait())
                .await
                .is_err()
            {
                eprintln!("{name} did not stop within {STOP_GRACE:?} of SIGTERM; killing it");
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        if let Some((url, prefix)) = self.cleanup.take() {
            let _ = delete_keys(&url, &prefix).await;
        }
        for (_, mut child) in redis {
            terminate(&child);
            if tokio::time::timeout(STOP_GRACE, child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

/// The name under which a Redis this run started is kept.
const REDIS_CHILD: &str = "redis-server";

/// Asks a child to stop (SIGTERM).
fn terminate(child: &Child) {
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

async fn delete_keys(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await?;
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
    }
    Ok(())
}

/// Whether something answers a Redis PING at host:port (a password-protected server counts).
fn answers(host: &str, port: u16) -> bool {
    let Some(addr) = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 16];
    let n = stream.read(&mut reply).unwrap_or(0);
    reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH")
}

/// N distinct free loopback ports (all listeners are held until every port is chosen).
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// Executables cargo built, by target name.
pub struct Binaries(HashMap<String, PathBuf>);

impl Binaries {
    /// Binaries already built into `dir` (cargo's output directory).
    pub fn in_dir(dir: &Path) -> Self {
        let names = ["paywatch-sandbox", "paywatch-producer", "paywatch-worker"];
        Self(names.iter().map(|n| (n.to_string(), dir.join(n))).collect())
    }

    pub fn get(&self, name: &str) -> anyhow::Result<PathBuf> {
        self.0
            .get(name)
            .cloned()
            .with_context(|| format!("cargo built no {name}"))
    }
}

/// Whether cargo sets `name` for the program it runs (rather than the user for cargo).
pub fn is_package_variable(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
        ]
        .contains(&name)
}

/// Has cargo build the demo's binaries and reads their paths from its JSON messages.
pub async fn build_binaries() -> anyhow::Result<Binaries> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    println!("demo: building the sandbox, producer and worker (cargo build)");
    let mut build = Command::new(cargo);
    // `cargo run` gives this program its package's variables; a build script that watches one
    // (ring watches CARGO_MANIFEST_DIR) would then rebuild half the tree on every switch
    // between `cargo build` and the demo.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_package_variable) {
            build.env_remove(name);
        }
    }
    let output = build
        .args([
            "build",
            "--quiet",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", "paywatch-sandbox", "-p", "paywatch-producer"])
        .args(["-p", "paywatch-worker", "--bins"])
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("running cargo build")?;
    if !output.status.success() {
        bail!("cargo build failed ({})", output.status);
    }
    let mut bins = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let (Some(name), Some(exe)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            bins.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    Ok(Binaries(bins))
}
