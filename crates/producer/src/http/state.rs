//! What the API's handlers share: [`Api`], the router's state, and the count of open events
//! streams it keeps ([`OpenStreams`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::reply::error;
use crate::Producer;
use crate::auth::ApiAuth;

/// Streams one producer serves at once; more get 503 (each costs a Redis read per poll).
pub const MAX_STREAMS: usize = 10_000;

/// What the API's handlers share.
#[derive(Debug, Clone)]
pub struct Api {
    /// Orders.
    pub producer: Producer,
    /// Credentials.
    pub auth: ApiAuth,
    /// The operator's view (`/v1/admin/*`).
    pub admin: crate::admin::Admin,
    /// The events streams open, per order and in all.
    pub streams: OpenStreams,
}

/// The events streams open on this producer: at most [`MAX_STREAMS`] in all (a semaphore of
/// this router's, not a process global), and at most a limit per order.
#[derive(Debug, Clone)]
pub struct OpenStreams {
    per_order: Arc<Mutex<HashMap<String, usize>>>,
    all: Arc<Semaphore>,
}

impl Default for OpenStreams {
    fn default() -> Self {
        Self {
            per_order: Arc::default(),
            all: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }
}

impl OpenStreams {
    /// Takes a slot for `order_id` unless it has `limit` already (429) or the producer is full
    /// (503); the refusal is the answer to send.
    pub(crate) fn take(&self, order_id: &str, limit: usize) -> Result<Slot, Box<Response>> {
        let mut open = self.per_order.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(order_id.to_owned()).or_insert(0);
        if *count >= limit {
            drop(open);
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                format!("this order has {limit} event streams open already; close one first"),
                Some("order_id"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return Err(Box::new(response));
        }
        let Ok(permit) = self.all.clone().try_acquire_owned() else {
            if *count == 0 {
                open.remove(order_id);
            }
            return Err(Box::new(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many open event streams; retry later",
                None,
            )));
        };
        *count += 1;
        Ok(Slot {
            streams: self.clone(),
            order_id: order_id.to_owned(),
            _permit: permit,
        })
    }
}

/// Counts a stream as open, for the producer and for its order, until dropped.
#[derive(Debug)]
pub struct Slot {
    streams: OpenStreams,
    order_id: String,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .per_order
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.order_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.order_id);
            }
        }
    }
}
