//! Least privilege on a shared Redis: the users of deploy/redis/acl.conf, applied exactly as
//! docs/operations.md says (`grep -v '^#' … | envsubst | redis-cli`), on every supported server
//! and on every node of a Redis Cluster.
//! The shop's user submits and reads through the functions and can do nothing else; the real
//! `paywatch-producer` and `paywatch-worker` binaries run end to end with their own users, and
//! Redis logs not one refused command of theirs (`ACL LOG`).

use std::process::Stdio;
use std::time::Duration;

use paywatch_core::store::{ShardKeys, shard_of};
use paywatch_sandbox::{NewPayment, Provider as SandboxProvider};
use paywatch_tests::stack::{API_TOKEN, WEBHOOK_SECRET, WebhookReceiver, authorized_client};
use paywatch_tests::{
    RedisServer, ServerKind, free_port, product_binaries, repo_root, server_binary, wait_for,
};
use serde_json::{Value, json};

/// (user, password, the variable acl.conf takes its SHA-256 from).
const USERS: [(&str, &str, &str); 3] = [
    (
        "paywatch-shop",
        "shop-password-0123456789",
        "PAYWATCH_SHOP_PASSWORD_SHA256",
    ),
    (
        "paywatch-producer",
        "producer-password-0123456789",
        "PAYWATCH_PRODUCER_PASSWORD_SHA256",
    ),
    (
        "paywatch-worker",
        "worker-password-0123456789",
        "PAYWATCH_WORKER_PASSWORD_SHA256",
    ),
];

/// The key every order of a one-shard deployment with the default prefix goes to.
const SHARD: &str = "paywatch:{check-payment.0}";

fn user_url(server: &RedisServer, user: &str) -> String {
    let (_, password, _) = USERS
        .iter()
        .find(|(name, _, _)| *name == user)
        .expect("a user of acl.conf");
    format!("redis://{user}:{password}@127.0.0.1:{}", server.port())
}

/// Applies deploy/redis/acl.conf with the documented command; returns redis-cli's replies, one
/// per `ACL SETUSER` line.
fn apply_acl_conf(server: &RedisServer) -> Vec<String> {
    let mut script = String::new();
    for (_, password, variable) in USERS {
        script.push_str(&format!(
            "export {variable}=\"$(printf %s '{password}' | sha256sum | cut -d' ' -f1)\"\n"
        ));
    }
    script.push_str(&format!(
        "grep -v '^#' deploy/redis/acl.conf | envsubst | redis-cli -u redis://127.0.0.1:{}\n",
        server.port()
    ));
    let output = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(repo_root())
        .output()
        .expect("run bash (with envsubst and redis-cli)");
    assert!(
        output.status.success(),
        "applying acl.conf failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Refused commands Redis logged (`ACL LOG`), as (username, reason, object) lines.
async fn acl_log(admin: &str) -> Vec<String> {
    let mut conn = connect(admin).await;
    let entries: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .arg(1000)
        .query_async(&mut conn)
        .await
        .expect("ACL LOG");
    entries.iter().map(|e| format!("{e:?}")).collect()
}

/// Starts a real binary with `REDIS_URL`; it is killed when the handle is dropped.
fn spawn(binary: &str, args: &[&str], redis: &str) -> tokio::process::Child {
    tokio::process::Command::new(product_binaries().join(binary))
        .args(args)
        .env("REDIS_URL", redis)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start a paywatch binary")
}

/// What the shop's user may and may not do.
async fn shop_user(server: &RedisServer) {
    let mut shop = connect(&user_url(server, "paywatch-shop")).await;
    let order = json!({"order_id": "acl-shop-probe", "provider": "cashless",
        "payment_id": "bill-probe"})
    .to_string();
    let created: Vec<String> = redis::cmd("FCALL")
        .arg("paywatch_submit")
        .arg(1)
        .arg(SHARD)
        .arg(&order)
        .query_async(&mut shop)
        .await
        .expect("the shop submits");
    assert_eq!(created, ["created", "pending", "watching"]);
    let view: Option<Vec<redis::Value>> = redis::cmd("FCALL_RO")
        .arg("paywatch_get")
        .arg(1)
        .arg(SHARD)
        .arg("acl-shop-probe")
        .query_async(&mut shop)
        .await
        .expect("the shop reads its order");
    assert!(view.is_some());
    let shard: i64 = redis::cmd("FCALL_RO")
        .arg("paywatch_shard")
        .arg(0)
        .arg("acl-shop-probe")
        .arg(1)
        .query_async(&mut shop)
        .await
        .expect("the shop asks for a shard");
    assert_eq!(shard, 0);
    // A bad order still gets the door's verdict, not a permission error.
    let refused = redis::cmd("FCALL")
        .arg("paywatch_submit")
        .arg(1)
        .arg(SHARD)
        .arg(r#"{"order_id":"x","provider":"paypal","payment_id":"p"}"#)
        .query_async::<Vec<String>>(&mut shop)
        .await
        .expect_err("a bad order");
    assert!(
        refused.to_string().contains("paywatch: provider: "),
        "{refused}"
    );

    let mut admin = connect(&server.url()).await;
    let _: () = redis::cmd("SET")
        .arg("other-app:secret")
        .arg("s3cret")
        .query_async(&mut admin)
        .await
        .expect("another application's key");
    let forbidden: Vec<(&str, redis::Cmd)> = vec![
        ("KEYS", redis::cmd("KEYS").arg("*").clone()),
        ("SCAN", redis::cmd("SCAN").arg(0).clone()),
        ("FLUSHALL", redis::cmd("FLUSHALL").clone()),
        ("FLUSHDB", redis::cmd("FLUSHDB").clone()),
        (
            "GET another key",
            redis::cmd("GET").arg("other-app:secret").clone(),
        ),
        (
            "HGET of a key outside the shards",
            redis::cmd("HGET")
                .arg("other-app:hash")
                .arg("field")
                .clone(),
        ),
        (
            "HGET of paywatch's provider breaker",
            redis::cmd("HGET")
                .arg("paywatch:{provider:cashless:x}:breaker")
                .arg("state")
                .clone(),
        ),
        (
            "DEL of an order's keys",
            redis::cmd("DEL").arg(format!("{SHARD}:jobs")).clone(),
        ),
        (
            "FUNCTION LOAD",
            redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg("#!lua name=paywatch\nredis.register_function('x', function() return 1 end)")
                .clone(),
        ),
        (
            "FUNCTION DELETE",
            redis::cmd("FUNCTION").arg("DELETE").arg("paywatch").clone(),
        ),
        (
            "FCALL paywatch_finalize",
            redis::cmd("FCALL")
                .arg("paywatch_finalize")
                .arg(1)
                .arg(SHARD)
                .arg("acl-shop-probe")
                .clone(),
        ),
        (
            "FCALL paywatch_check_now",
            redis::cmd("FCALL")
                .arg("paywatch_check_now")
                .arg(1)
                .arg(SHARD)
                .arg("cashless")
                .arg("bill-probe")
                .clone(),
        ),
        (
            "FCALL paywatch_get (a read function through the writing door)",
            redis::cmd("FCALL")
                .arg("paywatch_get")
                .arg(1)
                .arg(SHARD)
                .arg("acl-shop-probe")
                .clone(),
        ),
        (
            "FCALL_RO paywatch_get on another prefix",
            redis::cmd("FCALL_RO")
                .arg("paywatch_get")
                .arg(1)
                .arg("other-app:{check-payment.0}")
                .arg("acl-shop-probe")
                .clone(),
        ),
        ("EVAL", redis::cmd("EVAL").arg("return 1").arg(0).clone()),
        (
            "CONFIG GET",
            redis::cmd("CONFIG").arg("GET").arg("*").clone(),
        ),
        (
            "PUBLISH to a channel",
            redis::cmd("PUBLISH").arg("paywatch").arg("x").clone(),
        ),
    ];
    let mut allowed = Vec::new();
    for (what, cmd) in forbidden {
        match cmd.query_async::<redis::Value>(&mut shop).await {
            Err(e) if e.code() == Some("NOPERM") => {}
            other => allowed.push(format!("{what}: {other:?}")),
        }
    }
    assert!(
        allowed.is_empty(),
        "the shop's user could do more than submit and read:\n{}",
        allowed.join("\n")
    );
}

async fn least_privilege(kind: ServerKind) {
    let Some(binary) = server_binary(kind) else {
        return;
    };
    eprintln!("ACL users on {}: {}", kind.label(), binary.version);
    let server = RedisServer::start_of(&binary, false, &[]).await;
    let replies = apply_acl_conf(&server);
    let mut admin = connect(&server.url()).await;
    let waitaof: Vec<redis::Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("WAITAOF")
        .query_async(&mut admin)
        .await
        .expect("COMMAND INFO");
    let has_waitaof = !matches!(waitaof.first(), None | Some(redis::Value::Nil));
    // The 7.2+ lines (CLIENT SETINFO, WAITAOF) are refused whole by a server without them.
    let newer_only = |r: &String| {
        (r.contains("'+waitaof'") || r.contains("'+client|setinfo'"))
            && r.contains("Unknown command")
    };
    let lines = std::fs::read_to_string(repo_root().join("deploy/redis/acl.conf"))
        .expect("read acl.conf")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    assert_eq!(replies.len(), lines, "one reply per line: {replies:?}");
    for reply in &replies {
        assert!(
            reply == "OK" || (!has_waitaof && newer_only(reply)),
            "{}: {reply}",
            binary.version
        );
    }

    // The producer starts first on an empty Redis: it loads the library with its own user.
    let producer_url = user_url(&server, "paywatch-producer");
    let (_producer, api) = start_producer(&producer_url, 1).await;
    shop_user(&server).await;
    let mut shop = connect(&user_url(&server, "paywatch-shop")).await;
    let fleet = Fleet {
        api,
        producer_url,
        worker_url: user_url(&server, "paywatch-worker"),
        shards: 1,
        admins: vec![server.url()],
        version: binary.version.clone(),
    };
    fleet.end_to_end(&mut shop).await;
}

/// Starts `paywatch-producer serve` with `redis` and waits until it serves; returns the process
/// (killed when dropped) and the API's base URL.
async fn start_producer(redis: &str, shards: u32) -> (tokio::process::Child, String) {
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let producer = spawn(
        "paywatch-producer",
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--api-tokens",
            API_TOKEN,
            "--shards",
            &shards.to_string(),
        ],
        redis,
    );
    let http = authorized_client();
    wait_for("the producer to serve", Duration::from_secs(30), || {
        let request = http.get(format!("{api}/v1/orders/none")).send();
        async move { request.await.ok().filter(|r| r.status() == 404) }
    })
    .await;
    (producer, api)
}

/// paywatch's processes, each with its own user.
struct Fleet {
    /// The running producer's API.
    api: String,
    producer_url: String,
    worker_url: String,
    shards: u32,
    /// Admin URLs of every node, for `ACL LOG`.
    admins: Vec<String>,
    version: String,
}

impl Fleet {
    /// A check worker and a webhook notifier (the real binary, the worker's user) check one
    /// order the shop submitted through `FCALL` and one that came over HTTP until both are paid
    /// and notified; `paywatch-producer admin` works with the producer's user; and no node
    /// logged a refused command.
    async fn end_to_end<C: redis::aio::ConnectionLike>(&self, shop: &mut C) {
        let api = &self.api;
        for admin in &self.admins {
            let _: () = redis::cmd("ACL")
                .arg("LOG")
                .arg("RESET")
                .query_async(&mut connect(admin).await)
                .await
                .expect("ACL LOG RESET");
        }
        let sandbox = paywatch_tests::stack::sandbox_for(api).await;
        let receiver = WebhookReceiver::start().await;
        let sandbox_url = sandbox.base_url();
        let shards = self.shards.to_string();
        let _worker = spawn(
            "paywatch-worker",
            &[
                "--queues",
                "check-payment,notify-webhook",
                "--shards",
                &shards,
                "--sandbox-url",
                &sandbox_url,
                "--time-scale",
                "0.01",
                "--webhook-secret",
                WEBHOOK_SECRET,
                "--webhook-allow-hosts",
                "127.0.0.1",
                "--webhook-schedule-scale",
                "0.001",
            ],
            &self.worker_url,
        );
        let bill = |ms| {
            sandbox
                .state()
                .create_payment(
                    NewPayment::new(SandboxProvider::Cashless)
                        .step(0, "NOT_PAID")
                        .step(ms, "FULLY_PAID"),
                )
                .expect("sandbox payment")
                .id
        };
        let by_fcall = json!({"order_id": "acl-fcall", "provider": "cashless",
            "payment_id": bill(300), "notify": {"webhook_url": receiver.url}});
        let key = ShardKeys::new("paywatch", shard_of("acl-fcall", self.shards)).base;
        let created: Vec<String> = redis::cmd("FCALL")
            .arg("paywatch_submit")
            .arg(1)
            .arg(key)
            .arg(by_fcall.to_string())
            .query_async(shop)
            .await
            .expect("the shop submits");
        assert_eq!(created[0], "created");
        let http = authorized_client();
        let response = http
            .post(format!("{api}/v1/orders"))
            .json(&json!({"order_id": "acl-http", "provider": "cashless",
                "payment_id": bill(300), "notify": {"webhook_url": receiver.url}}))
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), 202);
        for id in ["acl-fcall", "acl-http"] {
            wait_for(
                &format!("{id} to be paid"),
                Duration::from_secs(30),
                || async {
                    let view: Value = http
                        .get(format!("{api}/v1/orders/{id}"))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    (view["status"] == "paid").then_some(())
                },
            )
            .await;
        }
        wait_for("both webhooks", Duration::from_secs(30), || async {
            let got = receiver.received();
            let ids: Vec<bool> = ["acl-fcall", "acl-http"]
                .iter()
                .map(|id| got.iter().any(|(_, body)| body.contains(id)))
                .collect();
            (ids == [true, true]).then_some(())
        })
        .await;
        let stats = tokio::process::Command::new(product_binaries().join("paywatch-producer"))
            .args(["admin", "--json", "stats", "--shards", &shards])
            .env("REDIS_URL", &self.producer_url)
            .output()
            .await
            .expect("run paywatch-producer admin");
        assert!(
            stats.status.success(),
            "admin stats: {}",
            String::from_utf8_lossy(&stats.stderr)
        );
        let mut refused = Vec::new();
        for admin in &self.admins {
            refused.extend(acl_log(admin).await);
        }
        assert!(
            refused.is_empty(),
            "{}: Redis refused commands of paywatch's own processes:\n{}",
            self.version,
            refused.join("\n")
        );
        let _ = sandbox.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_users_on_redis_7() {
    least_privilege(ServerKind::Redis7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_users_on_valkey_8() {
    least_privilege(ServerKind::Valkey8).await;
}

/// A three-master Redis Cluster whose nodes each got the users: the shop submits with a Cluster
/// client, the producer and the worker take a seed list of user URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_users_on_a_cluster() {
    let Some(binary) = server_binary(ServerKind::Redis7) else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let bus = free_port().to_string();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            &bus,
        ];
        nodes.push(RedisServer::start_of(&binary, false, &args).await);
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.port()).collect();
    if let Err(e) = paywatch_tests::cluster::form(&ports, 0).await {
        panic!("{e}");
    }
    for node in &nodes {
        for reply in apply_acl_conf(node) {
            assert!(
                reply == "OK" || reply.contains("Unknown command"),
                "{reply}"
            );
        }
    }
    let seeds = |user: &str| -> Vec<String> { nodes.iter().map(|n| user_url(n, user)).collect() };
    let producer_url = seeds("paywatch-producer").join(",");
    let (_producer, api) = start_producer(&producer_url, 4).await;
    let mut shop = redis::cluster::ClusterClient::new(seeds("paywatch-shop"))
        .expect("cluster client")
        .get_async_connection()
        .await
        .expect("the shop connects to the Cluster");
    let fleet = Fleet {
        api,
        producer_url,
        worker_url: seeds("paywatch-worker").join(","),
        shards: 4,
        admins: nodes.iter().map(|n| n.url()).collect(),
        version: format!("a Cluster of {}", binary.version),
    };
    fleet.end_to_end(&mut shop).await;
}

/// A sentinel on a free port watching `primary` as `paywatch`, killed (and its directory
/// removed) when dropped.
struct Sentinel {
    port: u16,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Sentinel {
    fn start(server: &std::path::Path, primary: &RedisServer) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("paywatch-acl-sentinel-{port}"));
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        // Sentinel rewrites its configuration file, so it must have one of its own.
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor paywatch 127.0.0.1 {} 1\n",
                dir.display(),
                primary.port()
            ),
        )
        .expect("write sentinel.conf");
        let child = std::process::Command::new(server)
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a sentinel");
        Self { port, child, dir }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The producer and the worker find the primary through Sentinel (`redis+sentinel://user:…`)
/// and work with their users; redis-rs checks the primary's `ROLE` before it uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_users_through_sentinel() {
    let Some(binary) = server_binary(ServerKind::Redis7) else {
        return;
    };
    let primary = RedisServer::start_of(&binary, false, &[]).await;
    for reply in apply_acl_conf(&primary) {
        assert!(
            reply == "OK" || reply.contains("Unknown command"),
            "{reply}"
        );
    }
    let sentinel = Sentinel::start(&binary.path, &primary);
    let ask = format!("redis://127.0.0.1:{}", sentinel.port);
    wait_for(
        "the sentinel to know the primary",
        Duration::from_secs(20),
        || {
            let ask = ask.clone();
            async move {
                let mut conn = redis::Client::open(ask)
                    .ok()?
                    .get_multiplexed_async_connection()
                    .await
                    .ok()?;
                let addr: Option<Vec<String>> = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg("paywatch")
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                addr.map(|_| ())
            }
        },
    )
    .await;
    let through_sentinel = |user: &str| {
        let (_, password, _) = USERS
            .iter()
            .find(|(name, _, _)| *name == user)
            .expect("a user of acl.conf");
        format!(
            "redis+sentinel://{user}:{password}@127.0.0.1:{}/paywatch",
            sentinel.port
        )
    };
    let producer_url = through_sentinel("paywatch-producer");
    let (_producer, api) = start_producer(&producer_url, 1).await;
    let mut shop = connect(&user_url(&primary, "paywatch-shop")).await;
    let fleet = Fleet {
        api,
        producer_url,
        worker_url: through_sentinel("paywatch-worker"),
        shards: 1,
        admins: vec![primary.url()],
        version: format!("Sentinel and {}", binary.version),
    };
    fleet.end_to_end(&mut shop).await;
}
