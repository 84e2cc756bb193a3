//! The real binaries on the topologies operators run, in the order they happen to start:
//! a fleet started before its Redis, and a Sentinel-watched primary that is `kill -9`'d and
//! replaced while the fleet runs (nothing restarted by hand).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paywatch_sandbox::{Sandbox, SandboxConfig};
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

/// A sentinel on `port` watching the primary on `primary` as `pw`, quick to fail over.
fn sentinel_on(port: u16, primary: u16) -> Proc {
    let dir = std::env::temp_dir().join(format!("paywatch-sentinel-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("sentinel dir");
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor pw 127.0.0.1 {primary} 1\n\
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

async fn query<T: redis::FromRedisValue>(port: u16, cmd: &mut redis::Cmd) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
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
        let sandbox = Sandbox::start(
            SandboxConfig {
                webhook_target: Some(api.clone()),
                ..SandboxConfig::default()
            },
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("start sandbox");
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
    let mut primary = redis_on(primary_port_0, &[]);
    let replica_of = primary_port_0.to_string();
    let _replica = redis_on(replica_port, &["--replicaof", "127.0.0.1", &replica_of]);
    let _sentinel = sentinel_on(sentinel_port, primary_port_0);
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

    let url = format!("redis+sentinel://127.0.0.1:{sentinel_port}/pw");
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
            let p: String = query(primary_port_0, redis::cmd("INFO").arg("replication")).await?;
            let r: String = query(replica_port, redis::cmd("INFO").arg("replication")).await?;
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
    let library: Vec<redis::Value> = query(
        replica_port,
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
