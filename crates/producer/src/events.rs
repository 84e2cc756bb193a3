//! Live status for front ends: `GET /v1/orders/{order_id}/events` as Server-Sent Events.
//!
//! The stream sends the order as it stands (`event: status`), then a new `status` event each time
//! it changes, and ends after the event that shows paywatch stopped watching (a final status, or
//! given up). Comments keep idle connections alive through proxies.
//!
//! Two callers, two views. With the API token (the shop's backend) each event is the
//! `GET /v1/orders/{id}` view. With a signed link (`links.events`: `?exp=…&sig=…`, what a shop
//! hands to a buyer's browser, see [`ApiAuth::link_query`]) each event is the [`browser_view`]:
//! status, phase and times, never the notify targets, the metadata or the provider's error text.
//! A signed link works until its `exp` (the signature covers it, so it cannot be moved), and a
//! stream opened with it ends with an `event: expired` at that time. At most
//! [`LinkRules::streams_per_order`] streams of one order are open at once on one producer, so a
//! leaked link cannot take the producer's [`crate::http::state::MAX_STREAMS`].
//!
//! It is fed from Redis, not from this process's memory: each stream reads its order through the
//! same function as `GET` every [`POLL`], so it works whichever producer replica the browser
//! reaches and whichever worker made the change. A stream costs one read every half second.
//!
//! Every refusal is `{"error", "field"}` JSON, as everywhere else in the API: a repeated or
//! unknown query parameter is a 400 naming it.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use paywatch_core::OrderId;
use paywatch_core::store::{OrderView, Phase};
use serde_json::{Value, json};

use crate::auth::{ApiAuth, unix_now};
pub use crate::auth::{
    DEFAULT_LINK_TTL, DEFAULT_STREAMS_PER_ORDER, LinkRules, MAX_LINK_TTL, MAX_STREAMS_PER_ORDER,
};
use crate::http::reply::{error, internal};
use crate::http::state::{Api, Slot};
use crate::views::{OrderJson, links, order_view};

/// How often a stream reads its order.
pub const POLL: Duration = Duration::from_millis(500);

/// How often an idle stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Reads `PAYWATCH_EVENTS_LINK_TTL`: a duration from 1s to 30d.
pub fn parse_link_ttl(text: &str) -> Result<Duration, String> {
    let problem = || "must be a duration from 1s to 30d, such as 15m or 1h".to_string();
    let ttl = paywatch_core::durations::parse_duration(text).map_err(|_| problem())?;
    if ttl < Duration::from_secs(1) || ttl > MAX_LINK_TTL {
        return Err(problem());
    }
    Ok(ttl)
}

/// What a buyer's browser is shown: where the payment stands and when, nothing about who is
/// notified, the shop's metadata, or the provider's error text.
pub fn browser_view(view: &OrderView) -> Value {
    let record = &view.record;
    let state = record.state.as_ref();
    json!({
        "order_id": view.order_id,
        "status": record.status(),
        "phase": view.phase,
        "watching": view.phase == Phase::Watching,
        "created_at": record.created_at(),
        "next_check_at": view.next_check_at,
        "terminal_at": state.and_then(|s| s.final_at),
        "stopped_at": view.stopped.as_ref().and_then(|s| s.at),
    })
}

/// What decides whether a new event is worth sending.
fn fingerprint(view: &Value) -> Value {
    json!([
        view["status"],
        view["phase"],
        view["raw_status"],
        view["last_error"],
        view["notified"]
    ])
}

/// Who opened a stream, which decides what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// The shop, with its API token: the full view.
    Shop,
    /// A browser with a signed link, until `exp` (Unix seconds): the [`browser_view`].
    Browser { exp: u64 },
}

/// A refusal, boxed: a `Response` is large and refusals are rare.
type Refusal = Box<Response>;

/// The credentials a request's query carries.
#[derive(Debug, Default)]
struct LinkQuery {
    exp: Option<String>,
    sig: Option<String>,
}

/// Reads the query: `exp` and `sig`, each at most once, nothing else.
fn link_params(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<LinkQuery, Refusal> {
    let Query(pairs) = query.map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("query: {}", e.body_text()),
            Some("query"),
        )
    })?;
    let mut params = LinkQuery::default();
    for (key, value) in pairs {
        let slot = match key.as_str() {
            "exp" => &mut params.exp,
            "sig" => &mut params.sig,
            other => {
                let name: String = other.chars().take(64).collect();
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    format!("{name}: unknown parameter (known: exp, sig)"),
                    Some(&name),
                )));
            }
        };
        if slot.replace(value).is_some() {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("{key}: given twice"),
                Some(&key),
            )));
        }
    }
    Ok(params)
}

/// A 401 naming the part of a signed link that is wrong.
fn bad_link(message: &str, field: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, message, Some(field));
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"paywatch\""),
    );
    response
}

/// Who the request comes from: the token first, then the signed link.
fn caller(
    auth: &ApiAuth,
    headers: &HeaderMap,
    order_id: &str,
    params: &LinkQuery,
) -> Result<Caller, Refusal> {
    if auth.allows(headers) {
        return Ok(Caller::Shop);
    }
    let Some(sig) = params.sig.as_deref() else {
        return Err(Box::new(crate::auth::unauthorized()));
    };
    let Some(exp) = params.exp.as_deref() else {
        return Err(Box::new(bad_link(
            "exp: missing; a signed link carries exp and sig, ask the shop for a new one",
            "exp",
        )));
    };
    let Ok(exp) = exp.parse::<u64>() else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "exp: must be a Unix time in whole seconds",
            Some("exp"),
        )));
    };
    if !auth.verifies(order_id, exp, sig) {
        return Err(Box::new(bad_link(
            "sig: does not sign this order and expiry; ask the shop for a new link",
            "sig",
        )));
    }
    if exp <= unix_now() {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "exp: this link has expired; ask the shop for a new one",
            Some("exp"),
        )));
    }
    Ok(Caller::Browser { exp })
}

/// `GET /v1/orders/{order_id}/events`.
#[utoipa::path(get, path = "/v1/orders/{order_id}/events", tag = "orders",
    params(
        ("order_id" = String, Path, description = "The order id, percent-encoded"),
        ("exp" = Option<u64>, Query, description = "When the signed link stops working, Unix seconds (from links.events; the signature covers it)"),
        ("sig" = Option<String>, Query, description = "The link's signature (from links.events), instead of a token"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `status` events, the first at once, then one per change; the stream ends after paywatch stops watching. With the token each carries the order's view; with a signed link only status, phase and times, and an `expired` event ends the stream when the link expires", content_type = "text/event-stream", body = String),
        (status = 400, description = "Not an order id, or a query parameter repeated, unknown or malformed; `field` names it", body = crate::openapi::ErrorBody),
        (status = 401, description = "Neither a valid token nor a valid signature; `field` names what is wrong", body = crate::openapi::ErrorBody),
        (status = 403, description = "The signed link has expired (`field`: `exp`)", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such order", body = crate::openapi::ErrorBody),
        (status = 429, description = "The order has its most streams open on this producer (`PAYWATCH_EVENTS_STREAMS_PER_ORDER`)", body = crate::openapi::ErrorBody),
        (status = 503, description = "Redis is unreachable, or too many open streams", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []), ()))]
pub async fn order_events(
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(order_id)) = path else {
        return error(StatusCode::BAD_REQUEST, "not an order id", Some("order_id"));
    };
    let params = match link_params(query) {
        Ok(params) => params,
        Err(refusal) => return *refusal,
    };
    let caller = match caller(&api.auth, &headers, &order_id, &params) {
        Ok(caller) => caller,
        Err(refusal) => return *refusal,
    };
    let Ok(id) = order_id.parse::<OrderId>() else {
        return error(StatusCode::BAD_REQUEST, "not an order id", Some("order_id"));
    };
    let first = match api.producer.order(&id).await {
        Ok(Some(view)) => view,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no order {id}"), None),
        Err(e) => return internal(&e),
    };
    let slot = match api
        .streams
        .take(id.as_str(), api.auth.link_rules().streams_per_order)
    {
        Ok(slot) => slot,
        Err(refusal) => return *refusal,
    };
    let body = render(&api.auth, caller, &first);
    let stream = updates(api, id, caller, body, first.phase, slot);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// An event's data: the shop's view (metadata as submitted), or a browser's (none at all).
enum Shown {
    Shop(OrderJson),
    Browser(Value),
}

impl Shown {
    fn fields(&self) -> &Value {
        match self {
            Shown::Shop(view) => view,
            Shown::Browser(view) => view,
        }
    }
}

/// An event's data for `caller`.
fn render(auth: &ApiAuth, caller: Caller, view: &OrderView) -> Shown {
    match caller {
        Caller::Shop => {
            let mut body = order_view(view);
            body["links"] = links(auth, view.order_id.as_str());
            Shown::Shop(body)
        }
        Caller::Browser { .. } => Shown::Browser(browser_view(view)),
    }
}

struct Cursor {
    api: Api,
    id: OrderId,
    caller: Caller,
    /// The event to send next, if any.
    pending: Option<Event>,
    last: Value,
    sent: u64,
    done: bool,
    _slot: Slot,
}

impl Cursor {
    fn status_event(&mut self, view: &Shown) -> Event {
        self.sent += 1;
        let event = Event::default().event("status").id(self.sent.to_string());
        match view {
            Shown::Shop(view) => event.json_data(view),
            Shown::Browser(view) => event.json_data(view),
        }
        .unwrap_or_else(|_| Event::default().event("status"))
    }

    /// Whether a browser's link has run out.
    fn expired(&self) -> bool {
        matches!(self.caller, Caller::Browser { exp } if exp <= unix_now())
    }
}

fn updates(
    api: Api,
    id: OrderId,
    caller: Caller,
    first: Shown,
    phase: Phase,
    slot: Slot,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut cursor = Cursor {
        api,
        id,
        caller,
        last: fingerprint(first.fields()),
        pending: None,
        sent: 0,
        done: phase != Phase::Watching,
        _slot: slot,
    };
    cursor.pending = Some(cursor.status_event(&first));
    futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(event) = c.pending.take() {
                return Some((Ok(event), c));
            }
            if c.done {
                return None;
            }
            if c.expired() {
                // Said once, so the front end knows to ask the shop for a new link rather than
                // reconnect (which would get 403).
                c.done = true;
                c.pending = Some(
                    Event::default()
                        .event("expired")
                        .data(r#"{"error":"exp: this link has expired; ask the shop for a new one","field":"exp"}"#),
                );
                continue;
            }
            tokio::time::sleep(POLL).await;
            // A failed read (Redis away) is retried at the next poll; the browser keeps waiting.
            let Ok(Some(view)) = c.api.producer.order(&c.id).await else {
                continue;
            };
            let body = render(&c.api.auth, c.caller, &view);
            let print = fingerprint(body.fields());
            if print != c.last {
                c.last = print;
                c.done = view.phase != Phase::Watching;
                c.pending = Some(c.status_event(&body));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_lifetimes_are_bounded() {
        assert_eq!(parse_link_ttl("1h"), Ok(DEFAULT_LINK_TTL));
        assert_eq!(parse_link_ttl("30d"), Ok(MAX_LINK_TTL));
        for bad in ["0", "0s", "500ms", "31d", "forever", "", "-1h"] {
            assert!(parse_link_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_link_carries_its_expiry_inside_the_signature() {
        let auth = ApiAuth::new(
            ["token-aaaaaaaaaaaaaaaaaaaaaaaa".to_string()],
            Some("events-bbbbbbbbbbbbbbbbbbbbbbbb".to_string()),
        )
        .expect("auth")
        .with_link_rules(LinkRules {
            ttl: Duration::from_secs(60),
            streams_per_order: 2,
        });
        let query = auth.link_query("o-1").expect("signed");
        let (exp, sig) = query
            .strip_prefix("exp=")
            .and_then(|rest| rest.split_once("&sig="))
            .expect("exp=…&sig=…");
        let exp: u64 = exp.parse().expect("seconds");
        let now = unix_now();
        assert!((now + 59..=now + 61).contains(&exp), "{exp} vs {now}");
        assert!(auth.verifies("o-1", exp, sig));
        assert!(!auth.verifies("o-1", exp + 1, sig), "a moved expiry");
        assert!(!auth.verifies("o-2", exp, sig), "another order");
    }
}
