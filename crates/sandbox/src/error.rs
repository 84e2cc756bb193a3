//! The sandbox's error type.

use std::net::SocketAddr;

use crate::providers::Provider;

/// Everything that can go wrong starting the sandbox or driving it through its helpers.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// Why the OS refused.
        source: std::io::Error,
    },
    /// The HTTP server failed while running or shutting down.
    #[error("sandbox server failed: {0}")]
    Server(String),
    /// The configuration is unusable.
    #[error("invalid sandbox configuration: {0}")]
    InvalidConfig(String),
    /// A request to the admin API (or the matching helper) was malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// A payment with this provider and id already exists.
    #[error("payment {provider}/{id} already exists")]
    DuplicatePayment {
        /// The provider the payment belongs to.
        provider: Provider,
        /// The duplicated id.
        id: String,
    },
    /// No payment with this provider and id exists.
    #[error("payment {provider}/{id} not found")]
    UnknownPayment {
        /// The provider that was asked.
        provider: Provider,
        /// The id that was asked for.
        id: String,
    },
    /// Webhooks need a Tokio runtime to run in, and none was current.
    #[error("webhook delivery needs a Tokio runtime; call this from inside one")]
    NoRuntime,
}
