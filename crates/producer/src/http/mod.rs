//! The producer's HTTP API.
//!
//! - `POST /v1/orders` → 202 (new), 200 (same order again, whatever became of it), 409 (same id,
//!   other body), 400 (not JSON), 415 (not `application/json`), 422 (invalid field, named),
//!   503 (Redis unreachable). The body goes to the `paywatch_submit` Redis Function unchanged:
//!   it is the one judge of every door.
//! - `GET /v1/orders/{order_id}` → the order as it stands. Order ids may hold any printable ASCII;
//!   `links.self` percent-encodes them, so every accepted id is reachable through its link.
//! - `GET /v1/orders/{order_id}/events` → Server-Sent Events: the order as it stands, then every
//!   change, closing once paywatch has stopped watching it (see [`crate::events`]).
//! - `GET /healthz` (the process is up), `GET /readyz` (Redis answers).
//! - `/v1/admin/*`: the operator's API (see [`crate::admin::http`]); `GET /board`: the web board
//!   on top of it (see [`crate::board`]).
//!
//! `/v1/*` needs an API token (`Authorization: Bearer …`, see [`crate::auth`]); the events stream
//! also takes the per-order signature a shop's backend can hand to its front end.
//! - `POST /webhooks/cashless`, `POST /webhooks/handcash`: provider webhooks (see
//!   [`crate::webhooks`]).
//!
//! The layer, top to bottom (each imports only the ones below it): [`router`] (the routes),
//! [`doc`] (the OpenAPI document of the handlers), the handlers ([`orders`], [`health`], and
//! [`crate::events`], [`crate::webhooks`], [`crate::admin::http`]), then what handlers share:
//! [`state`] (the router's state), [`crate::views`] (how an order is shown), `reply` (refusals)
//! and [`crate::openapi`] (the wire types).

pub mod doc;
pub mod health;
pub mod orders;
pub(crate) mod reply;
pub mod router;
pub mod state;

pub use orders::CONFLICT;
pub use router::{MAX_BODY, router};
pub use state::Api;
