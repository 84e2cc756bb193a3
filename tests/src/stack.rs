//! The whole product on random ports: sandbox providers, the producer's HTTP API and workers,
//! all on a real Redis under a unique prefix.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use paywatch_core::{PaymentStatus, queues};
use paywatch_producer::Producer;
use paywatch_queue::{DeadLetter, QueueConfig, QueueStats, RedisQueue};
use paywatch_sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use paywatch_worker::app::App;
use paywatch_worker::config::WorkerConfig;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{cleanup, redis_url, unique_prefix, wait_for};

/// The API token of test stacks (their HTTP client sends it).
pub const API_TOKEN: &str = "test-token-0123456789abcdefghij";

/// The events-link secret of test stacks.
pub const EVENTS_SECRET: &str = "test-events-secret-0123456789abcdef";

/// The webhook signing secret of test stacks.
pub const WEBHOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A loopback HTTP endpoint recording the webhooks it receives: (webhook-id, body).
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    /// Its URL.
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl WebhookReceiver {
    /// Starts one on a random port: `/hook` answers 200, `/flaky` 500 to its first request and
    /// 200 after, `/gone` 410.
    pub async fn start() -> Self {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode, Uri};
        type Log = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;
        async fn record(
            State(log): State<Log>,
            uri: Uri,
            headers: HeaderMap,
            body: String,
        ) -> StatusCode {
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            let earlier = log.iter().filter(|(i, _)| *i == id).count();
            log.push((id, body));
            match uri.path() {
                "/gone" => StatusCode::GONE,
                "/flaky" if earlier == 0 => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::OK,
            }
        }
        let received: Log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .fallback(axum::routing::post(record))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, received }
    }

    /// The URL of one of its other paths (`flaky`, `gone`).
    pub fn path(&self, path: &str) -> String {
        self.url.replace("/hook", &format!("/{path}"))
    }

    /// What it received so far.
    pub fn received(&self) -> Vec<(String, String)> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The sandbox on a free loopback port, sending provider webhooks to the producer API at `api`
/// (for tests that run the producer as a binary).
pub async fn sandbox_for(api: &str) -> SandboxHandle {
    let config = SandboxConfig {
        webhook_target: Some(api.to_owned()),
        ..SandboxConfig::default()
    };
    Sandbox::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start the sandbox")
}

/// A running paywatch: sandbox, producer API and any number of workers.
#[derive(Debug)]
pub struct Stack {
    /// Key prefix of this stack.
    pub prefix: String,
    /// The Redis it uses.
    pub redis: String,
    /// The sandbox imitating the providers.
    pub sandbox: SandboxHandle,
    /// Base URL of the producer API.
    pub api: String,
    /// HTTP client for the API.
    pub http: reqwest::Client,
    /// Shards the orders are spread over.
    pub shards: u32,
    producer_task: JoinHandle<()>,
}

/// A worker running inside the test process.
#[derive(Debug)]
pub struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningWorker {
    /// Asks it to shut down gracefully and waits.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
    }

    /// Kills it the hard way: its in-flight runs vanish with their leases still held.
    pub fn crash(self) {
        self.task.abort();
    }
}

impl Stack {
    /// Starts the sandbox and the producer API (no worker yet).
    pub async fn start(test: &str) -> Self {
        Self::start_with(test, SandboxConfig::default()).await
    }

    /// Same, with orders spread over `shards` shards.
    pub async fn start_sharded(test: &str, shards: u32) -> Self {
        Self::start_full(test, SandboxConfig::default(), shards, redis_url()).await
    }

    /// Same, on the Redis (or Redis Cluster, seed URLs comma-separated) at `redis`.
    pub async fn start_on(test: &str, redis: String, shards: u32) -> Self {
        Self::start_full(test, SandboxConfig::default(), shards, redis).await
    }

    /// Same, with a custom sandbox configuration.
    pub async fn start_with(test: &str, sandbox: SandboxConfig) -> Self {
        Self::start_full(test, sandbox, 1, redis_url()).await
    }

    /// Same, with a custom sandbox configuration, `shards` shards, on the Redis at `redis`.
    pub async fn start_full(
        test: &str,
        mut sandbox: SandboxConfig,
        shards: u32,
        redis: String,
    ) -> Self {
        let prefix = unique_prefix(test);
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        // The API's address comes first: the sandbox sends provider webhooks to it.
        let listener = tokio::net::TcpListener::bind(any).await.expect("bind api");
        let api = format!("http://{}", listener.local_addr().expect("addr"));
        sandbox.webhook_target.get_or_insert_with(|| api.clone());
        let sandbox = Sandbox::start(sandbox, any).await.expect("start sandbox");
        let producer = Producer::connect_sharded(&redis, &prefix, shards)
            .await
            .expect("producer");
        let handcash = Some(paywatch_core::Secret::new(
            sandbox
                .state()
                .config()
                .credentials
                .handcash_app_secret
                .clone(),
        ));
        let router = paywatch_producer::http::router(producer, handcash, test_auth());
        let producer_task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            prefix,
            redis,
            sandbox,
            api,
            http: authorized_client(),
            shards,
            producer_task,
        }
    }

    /// Worker arguments pointing at this stack (sandbox providers, fast policies).
    pub fn worker_args(&self, time_scale: f64) -> Vec<String> {
        [
            "paywatch-worker",
            "--redis-url",
            &self.redis,
            "--prefix",
            &self.prefix,
            "--sandbox-url",
            &self.sandbox.base_url(),
            "--time-scale",
            &time_scale.to_string(),
            "--lease",
            "2s",
            "--grace-period",
            "5s",
            "--concurrency",
            "16",
            "--shards",
            &self.shards.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Arguments for a worker delivering Telegram (to the sandbox) and webhooks (to loopback
    /// receivers, allow-listed), with a fast webhook retry schedule.
    pub fn notifier_args(&self) -> Vec<String> {
        self.notifier_args_for("notify-telegram,notify-webhook")
    }

    /// [`Stack::notifier_args`] serving only `queues` (comma-separated).
    pub fn notifier_args_for(&self, queues: &str) -> Vec<String> {
        let mut args = self.worker_args(1.0);
        args.extend(
            [
                "--queues",
                queues,
                "--webhook-secret",
                WEBHOOK_SECRET,
                "--webhook-allow-hosts",
                "127.0.0.1",
                "--webhook-schedule-scale",
                "0.001",
                "--telegram-chat-interval",
                "5ms",
            ]
            .map(String::from),
        );
        args
    }

    /// Scripts a payment in the sandbox and returns its provider id.
    pub fn payment(&self, payment: paywatch_sandbox::NewPayment) -> String {
        self.sandbox
            .state()
            .create_payment(payment)
            .expect("sandbox payment")
            .id
    }

    /// A Cashless bill that is unpaid at first and fully paid after `ms`.
    pub fn bill_paid_after(&self, ms: u64) -> String {
        self.payment(
            paywatch_sandbox::NewPayment::new(paywatch_sandbox::Provider::Cashless)
                .step(0, "NOT_PAID")
                .step(ms, "FULLY_PAID"),
        )
    }

    /// Telegram messages the sandbox received for `chat`.
    pub fn telegram_texts(&self, chat: i64) -> Vec<String> {
        self.sandbox
            .state()
            .telegram_messages()
            .into_iter()
            .filter(|m| m.chat_id == paywatch_sandbox::ChatId::Id(chat))
            .map(|m| m.text)
            .collect()
    }

    /// Starts a worker with `args` (from [`Stack::worker_args`], possibly extended).
    pub async fn worker(&self, args: &[String]) -> RunningWorker {
        let config = WorkerConfig::try_parse_from(args).expect("worker args");
        let app = App::build(config).await.expect("build worker");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        RunningWorker {
            stop: Some(stop),
            task,
        }
    }

    /// POSTs an order; returns the HTTP status and the JSON body.
    pub async fn submit(&self, order: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v1/orders", self.api))
            .json(order)
            .send()
            .await
            .expect("POST /v1/orders");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GETs an order's view.
    pub async fn order(&self, order_id: &str) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}/v1/orders/{order_id}", self.api))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Waits until the order's status is `status`, returning its view.
    pub async fn wait_status(
        &self,
        order_id: &str,
        status: PaymentStatus,
        within: Duration,
    ) -> Value {
        let want = status.to_string();
        wait_for(
            &format!("order {order_id} to be {want}"),
            within,
            || async {
                self.order(order_id)
                    .await
                    .filter(|o| o["status"].as_str() == Some(want.as_str()))
            },
        )
        .await
    }

    /// A handle on one of this stack's queues; `check-payment` means its one shard's queue.
    pub async fn queue(&self, name: &str) -> RedisQueue<Value> {
        let name = if name == queues::CHECK_PAYMENT {
            paywatch_core::store::check_queue(0)
        } else {
            name.to_string()
        };
        RedisQueue::connect(
            &self.redis,
            QueueConfig::new(name).with_prefix(&self.prefix),
        )
        .await
        .expect("queue")
    }

    /// Counts of one queue.
    pub async fn stats(&self, name: &str) -> QueueStats {
        self.queue(name).await.stats().await.expect("stats")
    }

    /// Dead letters of the check-payment queue.
    pub async fn dead_checks(&self) -> Vec<DeadLetter> {
        self.queue(queues::CHECK_PAYMENT)
            .await
            .dead_letters(100)
            .await
            .expect("dead letters")
    }

    /// Stops the API and deletes this stack's keys.
    pub async fn finish(self) {
        self.producer_task.abort();
        cleanup(&self.redis, &self.prefix).await;
    }
}

/// The credentials of test stacks: [`API_TOKEN`] and [`EVENTS_SECRET`].
pub fn test_auth() -> paywatch_producer::auth::ApiAuth {
    paywatch_producer::auth::ApiAuth::new([API_TOKEN.to_string()], Some(EVENTS_SECRET.to_string()))
        .expect("auth")
}

/// An HTTP client that sends the test stacks' API token with every request.
pub fn authorized_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static("Bearer test-token-0123456789abcdefghij"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("http client")
}
