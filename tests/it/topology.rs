//! The real binaries on the topologies operators run, in the order they happen to start:
//! a fleet started before its Redis or while it loads a large data set, a Sentinel-watched
//! primary (with passwords) that is `kill -9`'d and replaced while the fleet runs (nothing
//! restarted by hand), and a Redis that speaks only TLS.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paywatch_tests::stack::{API_TOKEN, EVENTS_SECRET, WEBHOOK_SECRET, WebhookReceiver};
use paywatch_tests::{free_port, free_ports, product_binaries, unique_prefix, wait_for};
use serde_json::{Value, json};

/// A child process killed when dropped.
struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn spawn(name: &str, command: &mut Command) -> Self {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child,
        }
    }

    /// Panics if the process has exited: every process here must wait for Redis, not die.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}) instead of waiting for Redis",
                self.name
            );
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server` on `port` (no persistence), with `extra` arguments.
fn redis_on(port: u16, extra: &[&str]) -> Proc {
    let dir = std::env::temp_dir().join(format!("paywatch-topology-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("redis dir");
    Proc::spawn(
        &format!("redis-server :{port}"),
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra),
    )
}

/// A sentinel on `port` watching the primary on `primary` as `pw` (whose password is
/// `password`), quick to fail over.
fn sentinel_on(port: u16, primary: u16, password: &str) -> Proc {
    let dir = std::env::temp_dir().join(format!("paywatch-sentinel-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("sentinel dir");
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor pw 127.0.0.1 {primary} 1\n\
             sentinel auth-pass pw {password}\n\
             sentinel down-after-milliseconds pw 1000\n\
             sentinel failover-timeout pw 5000\n",
            dir.display()
        ),
    )
    .expect("write sentinel.conf");
    Proc::spawn(
        &format!("sentinel :{port}"),
        Command::new("redis-server").arg(&conf).arg("--sentinel"),
    )
}

/// The data nodes' password in the Sentinel test: the fleet must authenticate after a failover.
const PASSWORD: &str = "s3cret-data-node";

async fn query<T: redis::FromRedisValue>(port: u16, cmd: &mut redis::Cmd) -> Option<T> {
    query_as(&format!("redis://127.0.0.1:{port}"), cmd).await
}

async fn query_as<T: redis::FromRedisValue>(url: &str, cmd: &mut redis::Cmd) -> Option<T> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    cmd.query_async(&mut conn).await.ok()
}

/// The port the sentinel names as `pw`'s primary.
async fn primary_port(sentinel: u16) -> Option<u16> {
    let (_, port): (String, String) = query(
        sentinel,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("pw"),
    )
    .await?;
    port.parse().ok()
}

/// The producer (`serve`) and one worker (checks and webhooks) as operators run them, and the
/// sandbox providers they poll.
struct Fleet {
    api: String,
    producer: Proc,
    worker: Proc,
    hooks: WebhookReceiver,
    sandbox: paywatch_sandbox::SandboxHandle,
    http: reqwest::Client,
}

impl Fleet {
    async fn start(test: &str, redis_url: &str) -> Self {
        let bins: PathBuf = product_binaries();
        let prefix = unique_prefix(test);
        let port = free_port();
        let api = format!("http://127.0.0.1:{port}");
        let sandbox = paywatch_tests::stack::sandbox_for(&api).await;
        let hooks = WebhookReceiver::start().await;
        let producer = Proc::spawn(
            "paywatch-producer serve",
            Command::new(bins.join("paywatch-producer"))
                .arg("serve")
                .env_clear()
                .env("RUST_LOG", "warn")
                .env("REDIS_URL", redis_url)
                .env("PAYWATCH_PREFIX", &prefix)
                .env("PAYWATCH_PRODUCER_LISTEN", format!("127.0.0.1:{port}"))
                .env("PAYWATCH_API_TOKENS", API_TOKEN)
                .env("PAYWATCH_EVENTS_SECRET", EVENTS_SECRET),
        );
        let worker = Proc::spawn(
            "paywatch-worker",
            Command::new(bins.join("paywatch-worker"))
                .env_clear()
                .env("RUST_LOG", "warn")
                .env("REDIS_URL", redis_url)
                .env("PAYWATCH_PREFIX", &prefix)
                .env("PAYWATCH_SANDBOX_URL", sandbox.base_url())
                .env("PAYWATCH_QUEUES", "check-payment,notify-webhook")
                .env("PAYWATCH_TIME_SCALE", "0.01")
                .env("PAYWATCH_LEASE", "2s")
                .env("PAYWATCH_WEBHOOK_SECRET", WEBHOOK_SECRET)
                .env("PAYWATCH_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")
                .env("PAYWATCH_WEBHOOK_SCHEDULE_SCALE", "0.001"),
        );
        let http = paywatch_tests::stack::authorized_client();
        Self {
            api,
            producer,
            worker,
            hooks,
            sandbox,
            http,
        }
    }

    fn assert_running(&mut self) {
        self.producer.assert_running();
        self.worker.assert_running();
    }

    async fn readyz(&self) -> Option<u16> {
        let r = self.http.get(format!("{}/readyz", self.api)).send().await;
        r.ok().map(|r| r.status().as_u16())
    }

    /// A Cashless bill paid after 100 ms, as an order with a webhook to the receiver.
    fn order(&self, id: &str) -> Value {
        let payment = self
            .sandbox
            .state()
            .create_payment(
                paywatch_sandbox::NewPayment::new(paywatch_sandbox::Provider::Cashless)
                    .step(0, "NOT_PAID")
                    .step(100, "FULLY_PAID"),
            )
            .expect("sandbox payment")
            .id;
        json!({"order_id": id, "provider": "cashless", "payment_id": payment,
               "notify": {"webhook_url": self.hooks.path("/hook")}})
    }

    async fn submit(&self, order: &Value) -> Option<u16> {
        let r = self
            .http
            .post(format!("{}/v1/orders", self.api))
            .json(order)
            .send()
            .await;
        r.ok().map(|r| r.status().as_u16())
    }

    /// Waits until the order is final and its webhook arrived; returns the order.
    async fn wait_notified(&mut self, id: &str, deadline: Duration) -> Value {
        let url = format!("{}/v1/orders/{id}", self.api);
        let view: Value = wait_for(&format!("order {id} to be final"), deadline, || {
            let r = self.http.get(&url).send();
            async move {
                let v: Value = r.await.ok()?.json().await.ok()?;
                (v["phase"] == "final").then_some(v)
            }
        })
        .await;
        let hooks = self.hooks.clone();
        let id = id.to_owned();
        wait_for("its webhook", deadline, || {
            let sent = hooks
                .received()
                .iter()
                .filter(|(_, body)| body.contains(&format!("\"{id}\"")))
                .count();
            async move { (sent > 0).then_some(()) }
        })
        .await;
        self.assert_running();
        view
    }
}

#[tokio::test]
async fn a_fleet_started_before_redis_waits_and_serves_once_it_comes() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut fleet = Fleet::start("before-redis", &url).await;
    // The producer listens at once but is not ready; nobody exits while Redis is away.
    wait_for("the producer to listen", Duration::from_secs(30), || {
        let ready = fleet.readyz();
        async move { ready.await.filter(|s| *s == 503) }
    })
    .await;
    let away = Instant::now();
    while away.elapsed() < Duration::from_secs(5) {
        fleet.assert_running();
        assert_eq!(fleet.readyz().await, Some(503), "ready without Redis");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let order = fleet.order("late-redis-0");
    assert_eq!(
        fleet.submit(&order).await,
        Some(503),
        "accepted without Redis"
    );

    let _redis = redis_on(port, &[]);
    wait_for("the producer to be ready", Duration::from_secs(30), || {
        let ready = fleet.readyz();
        async move { ready.await.filter(|s| *s == 200) }
    })
    .await;
    assert_eq!(fleet.submit(&order).await, Some(202));
    fleet
        .wait_notified("late-redis-0", Duration::from_secs(30))
        .await;
}

#[tokio::test]
async fn a_sentinel_failover_is_followed_without_a_restart() {
    let [primary_port_0, replica_port, sentinel_port] = free_ports();
    let auth = ["--requirepass", PASSWORD, "--masterauth", PASSWORD];
    let mut primary = redis_on(primary_port_0, &auth);
    let replica_of = primary_port_0.to_string();
    let _replica = redis_on(
        replica_port,
        &[&auth[..], &["--replicaof", "127.0.0.1", &replica_of]].concat(),
    );
    let _sentinel = sentinel_on(sentinel_port, primary_port_0, PASSWORD);
    let node = |port: u16| format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    // The sentinel must know the replica before it can promote it.
    wait_for(
        "the sentinel to see the replica",
        Duration::from_secs(30),
        || async {
            let replicas: Vec<Value> = query::<Vec<redis::Value>>(
                sentinel_port,
                redis::cmd("SENTINEL").arg("REPLICAS").arg("pw"),
            )
            .await?
            .into_iter()
            .map(|_| Value::Null)
            .collect();
            (!replicas.is_empty()).then_some(())
        },
    )
    .await;

    let url = format!("redis+sentinel://:{PASSWORD}@127.0.0.1:{sentinel_port}/pw");
    let mut fleet = Fleet::start("sentinel", &url).await;
    wait_for("the producer to be ready", Duration::from_secs(30), || {
        let ready = fleet.readyz();
        async move { ready.await.filter(|s| *s == 200) }
    })
    .await;
    assert_eq!(fleet.submit(&fleet.order("sent-0")).await, Some(202));
    fleet.wait_notified("sent-0", Duration::from_secs(30)).await;
    // Let the replica catch up, so the failover loses nothing this test looks for.
    wait_for(
        "the replica to catch up",
        Duration::from_secs(10),
        || async {
            let p: String =
                query_as(&node(primary_port_0), redis::cmd("INFO").arg("replication")).await?;
            let r: String =
                query_as(&node(replica_port), redis::cmd("INFO").arg("replication")).await?;
            let offset = |info: &str, key: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_owned())
            };
            (offset(&p, "master_repl_offset:") == offset(&r, "master_repl_offset:")).then_some(())
        },
    )
    .await;

    primary.kill();
    let killed = Instant::now();
    wait_for(
        "the sentinel to promote the replica",
        Duration::from_secs(30),
        || async { (primary_port(sentinel_port).await? == replica_port).then_some(()) },
    )
    .await;
    // Submissions resume through the same processes, on the new primary.
    let order = fleet.order("sent-1");
    wait_for("submissions to resume", Duration::from_secs(30), || {
        let submitted = fleet.submit(&order);
        async move { submitted.await.filter(|s| *s == 202) }
    })
    .await;
    eprintln!("submissions resumed {:?} after the kill", killed.elapsed());
    fleet.wait_notified("sent-1", Duration::from_secs(30)).await;
    // The first order is still there, read through the new primary.
    let first = fleet
        .http
        .get(format!("{}/v1/orders/sent-0", fleet.api))
        .send()
        .await
        .expect("GET");
    assert_eq!(first.status().as_u16(), 200);
    let library: Vec<redis::Value> = query_as(
        &node(replica_port),
        redis::cmd("FUNCTION")
            .arg("LIST")
            .arg("LIBRARYNAME")
            .arg("paywatch"),
    )
    .await
    .expect("FUNCTION LIST on the new primary");
    assert!(
        !library.is_empty(),
        "the new primary has no paywatch library"
    );
}

#[tokio::test]
async fn processes_started_while_redis_loads_its_data_wait_for_it() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("paywatch-loading-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    // Loading is slowed down on purpose (`key-load-delay`, µs per key), so the fleet is sure
    // to meet it; `DEBUG` (to fill the data set) is allowed from loopback only.
    let durable = |dir: &std::path::Path, extra: &[&str]| {
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(dir)
            .args(extra);
        command
    };
    let url = format!("redis://127.0.0.1:{port}");
    {
        let _redis = Proc::spawn("redis-server", &mut durable(&dir, &[]));
        // A data set to load: 50,000 keys, written to the AOF.
        wait_for("redis to answer", Duration::from_secs(10), || async {
            query::<String>(port, &mut redis::cmd("PING")).await
        })
        .await;
        let _: Option<String> = query(
            port,
            redis::cmd("DEBUG")
                .arg("POPULATE")
                .arg(50_000)
                .arg("bulk")
                .arg(64),
        )
        .await;
        let _: Option<String> = query(port, &mut redis::cmd("BGREWRITEAOF")).await;
        wait_for("the AOF rewrite", Duration::from_secs(60), || async {
            let info: String = query(port, redis::cmd("INFO").arg("persistence")).await?;
            (info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0"))
                .then_some(())
        })
        .await;
    }
    // Built before Redis starts loading, so the fleet starts while it loads.
    product_binaries();
    let _redis = Proc::spawn(
        "redis-server (loading)",
        // Slow (20 µs a key), and answering clients (with LOADING) every KiB loaded rather than
        // every 2 MiB, so the fleet does meet a loading Redis.
        &mut durable(
            &dir,
            &[
                "--key-load-delay",
                "20",
                "--loading-process-events-interval-bytes",
                "1024",
            ],
        ),
    );
    // Started while Redis is LOADING (or not yet listening): nobody exits, nobody is ready
    // before the data is there.
    let mut fleet = Fleet::start("loading", &url).await;
    let mut seen_loading = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        fleet.assert_running();
        let loading = query::<String>(port, redis::cmd("INFO").arg("persistence"))
            .await
            .is_some_and(|i| i.contains("loading:1"));
        let ready = fleet.readyz().await;
        if loading {
            seen_loading = true;
            assert_ne!(ready, Some(200), "ready while Redis is loading");
        }
        if ready == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "the fleet never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen_loading,
        "the fleet never met Redis loading: the test proves nothing"
    );
    assert_eq!(fleet.submit(&fleet.order("loaded-0")).await, Some(202));
    fleet
        .wait_notified("loaded-0", Duration::from_secs(30))
        .await;
    drop(fleet);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn rediss_urls_speak_tls_verified_against_the_system_trust_store() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("paywatch-tls-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ca = [
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=paywatch test CA",
    ];
    openssl(
        &[
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ][..],
            &ca,
        ]
        .concat(),
    );
    let csr = [
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ];
    openssl(&[&["req", "-newkey", "rsa:2048", "-nodes"][..], &csr].concat());
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let _redis = Proc::spawn(
        "redis-server (TLS only)",
        Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args([
                "--tls-cert-file",
                "server.pem",
                "--tls-key-file",
                "server.key",
            ])
            .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(&dir),
    );
    let producer = product_binaries().join("paywatch-producer");
    let ca_file = dir.join("ca.pem");
    let prefix = unique_prefix("tls");
    let enqueued = wait_for("an order over TLS", Duration::from_secs(60), || {
        let run = tokio::process::Command::new(&producer)
            .args(["enqueue", "--order-id", "tls-0", "--provider", "cashless"])
            .args(["--payment-id", "p-tls-0"])
            .env_clear()
            .env("REDIS_URL", format!("rediss://127.0.0.1:{port}"))
            .env("PAYWATCH_PREFIX", &prefix)
            .env("SSL_CERT_FILE", &ca_file)
            .output();
        async move { run.await.ok().filter(|out| out.status.success()) }
    })
    .await;
    assert!(
        String::from_utf8_lossy(&enqueued.stdout).contains("tls-0"),
        "{}",
        String::from_utf8_lossy(&enqueued.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_request_that_meets_a_dead_pooled_connection_is_not_failed() {
    let port = free_port();
    let _redis = redis_on(port, &[]);
    let mut fleet = Fleet::start("dead-conn", &format!("redis://127.0.0.1:{port}")).await;
    wait_for("the producer to be ready", Duration::from_secs(30), || {
        let ready = fleet.readyz();
        async move { ready.await.filter(|s| *s == 200) }
    })
    .await;
    assert_eq!(fleet.submit(&fleet.order("dead-0")).await, Some(202));
    for round in 0..5 {
        // What a failover behind a proxy, or an idle timeout, does to every pooled connection.
        let killed: Option<i64> = query(
            port,
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal"),
        )
        .await;
        assert!(killed.is_some_and(|n| n > 0), "nothing to kill");
        let read = fleet
            .http
            .get(format!("{}/v1/orders/dead-0", fleet.api))
            .send()
            .await
            .expect("GET");
        assert_eq!(
            read.status().as_u16(),
            200,
            "round {round}: the first read after the kill"
        );
        let id = format!("dead-{}", round + 1);
        let killed: Option<i64> = query(
            port,
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal"),
        )
        .await;
        assert!(killed.is_some_and(|n| n > 0), "nothing to kill");
        assert_eq!(
            fleet.submit(&fleet.order(&id)).await,
            Some(202),
            "round {round}: the first submit after the kill"
        );
    }
    fleet.wait_notified("dead-5", Duration::from_secs(30)).await;
}
