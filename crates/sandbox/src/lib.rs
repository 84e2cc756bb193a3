//! A local HTTP server imitating the Cashless, HandCash, MiracleCash and FoxReload payment APIs
//! and the Telegram Bot API, so paywatch's demo, tests and benchmarks never need the real ones;
//! and a local SMTP server ([`smtp`]) for the email channel.
//!
//! Each provider lives under its own prefix at its real API path (for example
//! `GET /cashless/api/v3/bills/{id}`), checks that provider's credentials and answers in its
//! shapes. Payments are scripted through the admin API under `/_admin` (or the matching
//! [`SandboxState`] helpers): a timeline of raw provider statuses, optional faults (error
//! statuses, latency, malformed bodies, dropped connections) and optional webhooks.
//!
//! ```no_run
//! # async fn demo() -> Result<(), paywatch_sandbox::SandboxError> {
//! use paywatch_sandbox::{NewPayment, Provider, Sandbox, SandboxConfig};
//!
//! let sandbox = Sandbox::start(SandboxConfig::default(), "127.0.0.1:0".parse().expect("addr")).await?;
//! let created = sandbox.state().create_payment(
//!     NewPayment::new(Provider::Cashless).step(0, "NOT_PAID").step(5_000, "FULLY_PAID"),
//! )?;
//! println!("{}/cashless/api/v3/bills/{}", sandbox.base_url(), created.id);
//! sandbox.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod admin;
mod config;
pub mod declared;
mod error;
mod faults;
mod listener;
mod payment;
mod providers;
mod ratelimit;
pub mod smtp;
mod state;
mod telegram;
mod timeline;
mod webhooks;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{Credentials, SandboxConfig};
pub use error::SandboxError;
pub use faults::{Fault, FaultKind, FaultScope};
pub use payment::{CreatedPayment, NewPayment, PaymentStats};
pub use providers::Provider;
pub use ratelimit::RateLimit;
pub use state::{SandboxState, SandboxStats, StatusCallStats};
pub use telegram::{CHAT_BLOCKED, CHAT_NOT_FOUND, ChatId, TelegramMessage, TelegramStats};
pub use timeline::TimelineStep;
pub use webhooks::WebhookDelivery;

use listener::{ConnControl, SandboxListener};

/// How long a graceful shutdown waits for in-flight requests (say, a long latency fault).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Entry points for running the sandbox.
#[derive(Debug)]
pub struct Sandbox;

impl Sandbox {
    /// Binds `addr` (port 0 picks a free one) and serves the sandbox in a background task.
    pub async fn start(
        config: SandboxConfig,
        addr: SocketAddr,
    ) -> Result<SandboxHandle, SandboxError> {
        Self::start_with(config, addr, &[]).await
    }

    /// [`Sandbox::start`], also serving the providers of `definitions` (files declaring
    /// providers, docs/providers.md) as [`declared`] describes.
    pub async fn start_with(
        config: SandboxConfig,
        addr: SocketAddr,
        definitions: &[std::sync::Arc<paywatch_core::declared::Definition>],
    ) -> Result<SandboxHandle, SandboxError> {
        config.validate()?;
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SandboxError::Bind { addr, source })?;
        let local = tcp
            .local_addr()
            .map_err(|source| SandboxError::Bind { addr, source })?;
        let declared = declared::DeclaredProviders::new(
            definitions,
            config.webhook_target.clone(),
            config.time_scale,
        );
        let (router, state) = Self::router(config);
        let router = router.merge(declared.routes());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = router.into_make_service_with_connect_info::<ConnControl>();
        let server = tokio::spawn(async move {
            axum::serve(SandboxListener::new(tcp), app)
                .with_graceful_shutdown(async {
                    // A dropped sender also means "stop": the handle is gone.
                    let _ = stop_rx.await;
                })
                .await
        });
        tracing::info!(addr = %local, "sandbox listening");
        Ok(SandboxHandle {
            addr: local,
            state,
            declared,
            stop: Some(stop_tx),
            server: Some(server),
        })
    }

    /// The sandbox's routes and their state, for callers that serve it themselves.
    ///
    /// Served by plain `axum::serve`, a "drop" fault still fails the response before its first
    /// byte, but [`Sandbox::start`] is the tested way to get a clean connection reset.
    /// A negative or non-finite `time_scale` falls back to 1.0.
    pub fn router(mut config: SandboxConfig) -> (Router, SandboxState) {
        if !config.time_scale.is_finite() || config.time_scale < 0.0 {
            tracing::warn!(
                time_scale = config.time_scale,
                "invalid time_scale, using 1.0"
            );
            config.time_scale = 1.0;
        }
        let state = SandboxState::new(config);
        let router = Router::new()
            .merge(providers::routes())
            .merge(telegram::routes())
            .merge(admin::routes())
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(serde_json::json!({ "error": "no such sandbox route" })),
                )
                    .into_response()
            })
            .with_state(state.clone());
        (router, state)
    }
}

/// A running sandbox; dropping it aborts the server, [`SandboxHandle::shutdown`] stops it gently.
#[derive(Debug)]
pub struct SandboxHandle {
    addr: SocketAddr,
    state: SandboxState,
    declared: declared::DeclaredProviders,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl SandboxHandle {
    /// The base URL to prefix provider paths with, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the sandbox listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The sandbox's state, for the in-process admin helpers.
    pub fn state(&self) -> &SandboxState {
        &self.state
    }

    /// The declared providers it serves, to script their payments in-process.
    pub fn declared(&self) -> &declared::DeclaredProviders {
        &self.declared
    }

    /// Stops accepting connections, lets in-flight requests finish (up to a few seconds) and
    /// stops webhook delivery.
    pub async fn shutdown(mut self) -> Result<(), SandboxError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.state.stop_background();
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(err))) => Err(SandboxError::Server(err.to_string())),
            Ok(Err(join)) => Err(SandboxError::Server(join.to_string())),
            Err(_elapsed) => {
                server.abort();
                tracing::warn!("sandbox shutdown timed out; in-flight requests were aborted");
                Ok(())
            }
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        self.state.stop_background();
    }
}
