//! Live status for front ends: `GET /v1/orders/{order_id}/events` as Server-Sent Events.
//!
//! The stream sends the order as it stands (`event: status`, data = the `GET /v1/orders/{id}`
//! view), then a new `status` event each time its status, phase, raw status or last error
//! changes, and ends after the event that shows paywatch stopped watching (a final status, or
//! given up). Comments keep idle connections alive through proxies.
//!
//! It is fed from Redis, not from this process's memory: each stream reads its order through the
//! same function as `GET` every [`POLL`], so it works whichever producer replica the browser
//! reaches and whichever worker made the change. A stream costs one read every half second; the
//! streams of one replica are bounded by [`MAX_STREAMS`].

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use paywatch_core::OrderId;
use paywatch_core::store::Phase;
use serde::Deserialize;
use serde_json::Value;

use crate::http::{Api, OrderJson, error, internal, links, order_view};

/// How often a stream reads its order.
pub const POLL: Duration = Duration::from_millis(500);

/// How often an idle stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Streams one producer serves at once; more get 503 (each costs a Redis read per [`POLL`]).
pub const MAX_STREAMS: usize = 10_000;

static OPEN: AtomicUsize = AtomicUsize::new(0);

/// The query of an events request.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// The order's events signature (`links.events` carries it), for callers without a token.
    pub sig: Option<String>,
}

/// What decides whether a new event is worth sending.
fn fingerprint(view: &Value) -> Value {
    serde_json::json!([
        view["status"],
        view["phase"],
        view["raw_status"],
        view["last_error"],
        view["notified"]
    ])
}

/// Counts a stream as open until dropped.
struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /v1/orders/{order_id}/events`.
#[utoipa::path(get, path = "/v1/orders/{order_id}/events", tag = "orders",
    params(
        ("order_id" = String, Path, description = "The order id, percent-encoded"),
        ("sig" = Option<String>, Query, description = "The order's events signature (from links.events), instead of a token"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `status` events carrying the order's view, the first at once, then one per change; the stream ends after paywatch stops watching", content_type = "text/event-stream", body = String),
        (status = 400, description = "Not an order id", body = crate::openapi::ErrorBody),
        (status = 401, description = "Neither a valid token nor a valid signature", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such order", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable, or too many open streams", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []), ()))]
pub async fn order_events(
    State(api): State<Api>,
    Path(order_id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let signed = query
        .sig
        .as_deref()
        .is_some_and(|sig| api.auth.verifies(&order_id, sig));
    if !signed && !api.auth.allows(&headers) {
        return crate::auth::unauthorized();
    }
    let Ok(id) = order_id.parse::<OrderId>() else {
        return error(StatusCode::BAD_REQUEST, "not an order id", Some("order_id"));
    };
    let first = match api.producer.order(&id).await {
        Ok(Some(view)) => view,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no order {id}"), None),
        Err(e) => return internal(&e),
    };
    if OPEN.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        OPEN.fetch_sub(1, Ordering::Relaxed);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open event streams; retry later",
            None,
        );
    }
    let slot = Slot;
    let mut body = order_view(&first);
    body["links"] = links(&api.auth, id.as_str());
    let stream = updates(api, id, body, first.phase, slot);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

struct Cursor {
    api: Api,
    id: OrderId,
    /// The view to send next, if any.
    pending: Option<OrderJson>,
    last: Value,
    sent: u64,
    done: bool,
    _slot: Slot,
}

fn updates(
    api: Api,
    id: OrderId,
    first: OrderJson,
    phase: Phase,
    slot: Slot,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let cursor = Cursor {
        api,
        id,
        last: fingerprint(&first),
        pending: Some(first),
        sent: 0,
        done: phase != Phase::Watching,
        _slot: slot,
    };
    futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(view) = c.pending.take() {
                c.sent += 1;
                let event = Event::default()
                    .event("status")
                    .id(c.sent.to_string())
                    .json_data(&view)
                    .unwrap_or_else(|_| Event::default().event("status"));
                return Some((Ok(event), c));
            }
            if c.done {
                return None;
            }
            tokio::time::sleep(POLL).await;
            // A failed read (Redis away) is retried at the next poll; the browser keeps waiting.
            let Ok(Some(view)) = c.api.producer.order(&c.id).await else {
                continue;
            };
            let mut body = order_view(&view);
            body["links"] = links(&c.api.auth, c.id.as_str());
            let print = fingerprint(&body);
            if print != c.last {
                c.last = print;
                c.done = view.phase != Phase::Watching;
                c.pending = Some(body);
            }
        }
    })
}
